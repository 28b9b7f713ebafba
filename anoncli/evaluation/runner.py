"""`anoncli evaluate --method ...`: anonymize the originals with each method (generative ones once per draw),
measure every draw, and lay the figures out as a table."""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path

from rich.table import Table

from anoncli.api import Anonymizer
from anoncli.attributes import DEFAULT_ESTIMATOR, AttributeEstimator
from anoncli.evaluation.faces import GENERATIVE_DRAWS, Evaluation, Evaluator, measure_diversity, pair_files
from anoncli.io.images import IMAGE_EXTENSIONS
from anoncli.io.report import Report
from anoncli.io.sources import plan_outputs

REFERENCE = "none"  # the originals themselves, measured as a method: the worst case for privacy

# Table columns: title, key of the summary, format.
COLUMNS = [
    ("method", "method", "{}"),
    ("faces", "faces", "{}"),
    ("changed", "changed_share", "{:.0%}"),
    ("re-id R@1", "recall_at_1", "{:.1%}"),
    ("verified <0.6", "verification_rate", "{:.1%}"),
    ("dlib dist", "mean_distance", "{:.3f}"),
    ("still a face", "still_detected", "{:.1%}"),
    ("of seen", "still_detected_of_seen", "{:.1%}"),
    ("FD-dlib", "fd_dlib", "{:.3f}"),
    ("FD ÷ strangers'", "fd_dlib_vs_strangers", "{:.2f}"),
    ("FID", "fid", "{:.1f}"),
    ("bg PSNR", "background_psnr", "{:.1f}"),
    ("bg SSIM", "background_ssim", "{:.3f}"),
    ("diversity", "diversity", "{:.3f}"),
    ("detail ×", "detail_ratio", "{:.2f}"),
    ("detail kept", "detail_kept", "{:.0%}"),
    ("seam ×", "seam_ratio", "{:.2f}"),
    ("expression kept", "emotion_agreement", "{:.0%}"),
    ("expression Δ", "emotion_change", "{:.2f}"),
    ("s/image", "seconds_per_image", "{:.2f}"),
]


def parse_method(name: str) -> tuple[str, tuple[str, ...]]:
    """`deepprivacy+age+gender` → ("deepprivacy", ("age", "gender"))."""
    base, *kept = name.split("+")
    return base, tuple(kept)


def evaluate_methods(
    originals: Path,
    names: list[str],
    evaluator: Evaluator,
    estimators: list[AttributeEstimator],
    device: str,
    on_method: Callable[[str], None] = lambda name: None,
) -> list[list[Evaluation]]:
    """Per method, one evaluation per draw: `none` is the originals; a generative method is drawn with seeds
    0 … GENERATIVE_DRAWS - 1, and its diversity compares the draws. Raises InputError for a method or
    attribute it cannot run."""
    runs: list[list[Evaluation]] = []
    with tempfile.TemporaryDirectory(prefix="anoncli-evaluate-") as scratch:
        for name in names:
            if name == REFERENCE:
                samples = [pair_files(originals, originals, IMAGE_EXTENSIONS)]
            else:
                base, kept = parse_method(name)
                # The first judge also estimates what is to be kept.
                judge = estimators[0] if estimators else DEFAULT_ESTIMATOR
                anonymizer = Anonymizer(base, preserve=kept, device=device, attribute_model=judge)
                samples = []
                for seed in range(GENERATIVE_DRAWS) if anonymizer.method.generative else (0,):
                    out = Path(scratch) / f"{name}-{seed}"
                    anonymizer.seed = seed
                    tasks = plan_outputs([originals], out, IMAGE_EXTENSIONS)
                    anonymizer.anonymize_files(tasks, Report("anonymize", {}))
                    samples.append(pair_files(originals, out, IMAGE_EXTENSIONS))
            on_method(name)
            draws = [evaluator.evaluate(name, pairs) for pairs in samples]
            if len(draws) > 1:
                measure_diversity(draws)
            runs.append(draws)
    return runs


def summary_table(title: str, summaries: list[dict], judges: list[str], with_fid: bool) -> Table:
    """The figures of each method in a row; gender and age kept per attribute judge."""
    table = Table(title=title)
    columns = [column for column in COLUMNS if with_fid or column[1] != "fid"]
    for heading, _, _ in columns:
        table.add_column(heading, justify="left" if heading == "method" else "right", no_wrap=True)
    if judges:
        table.add_column("gender kept", justify="right", no_wrap=True)
        table.add_column("age kept", justify="right", no_wrap=True)
        table.caption = f"gender / age group kept, as judged by: {' / '.join(judges)}"
    for summary in summaries:
        cells = [pattern.format(summary[key]) for _, key, pattern in columns]
        agreement = summary["attribute_agreement"]
        for attribute in ("gender", "age_group") if judges else ():
            cells.append(" / ".join(f"{agreement.get(n, {}).get(attribute, float('nan')):.0%}" for n in judges))
        table.add_row(*cells)
    return table


def faces_json(runs: list[list[Evaluation]]) -> dict[str, list[dict]]:
    """Every face's figures per method, each with the draw it comes from."""
    return {
        draws[0].name: [
            {**record.figures(), "draw": number} for number, draw in enumerate(draws) for record in draw.records
        ]
        for draws in runs
    }
