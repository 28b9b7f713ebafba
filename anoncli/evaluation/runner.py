"""`anoncli evaluate --method ...`: anonymize the originals with each method (generative ones once per draw),
measure every draw, and lay the figures out as a table."""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path

from rich.table import Table

from anoncli.api import Anonymizer
from anoncli.attributes import DEFAULT_ESTIMATOR, AttributeEstimator
from anoncli.composites.mesh import FACE_PARTS
from anoncli.evaluation.coverage import MarkedFace, coverage_summary, measure_coverage
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
    ("verified", "verification_rate", "{:.1%}"),
    ("dlib dist", "mean_distance", "{:.3f}"),
    ("cos dist", "mean_cosine_distance", "{:.3f}"),
    ("still a face", "still_detected", "{:.1%}"),
    ("of seen", "still_detected_of_seen", "{:.1%}"),
    ("real? AUC", "c2st_auc", "{:.2f}"),
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
    """`deepprivacy+age+gender` → ("deepprivacy", ("age", "gender")); `shape+eyes` → ("shape", ("eyes",))."""
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
                # The first judge also estimates what is to be kept.
                judge = estimators[0] if estimators else DEFAULT_ESTIMATOR
                anonymizer = method_anonymizer(name, device=device, attribute_model=judge)
                samples = []
                for seed in range(GENERATIVE_DRAWS) if anonymizer.method.generative else (0,):
                    anonymizer.seed = seed
                    out = anonymize_into(anonymizer, originals, Path(scratch) / f"{name}-{seed}")
                    samples.append(pair_files(originals, out, IMAGE_EXTENSIONS))
            on_method(name)
            draws = [evaluator.evaluate(name, pairs) for pairs in samples]
            if len(draws) > 1:
                measure_diversity(draws)
            runs.append(draws)
    return runs


def method_anonymizer(name: str, **options: object) -> Anonymizer:
    """The anonymizer of a method as `evaluate` names it (`deepprivacy+age+gender` keeps age and gender,
    `shape+eyes+mouth` the shape of eyes and mouth)."""
    base, kept = parse_method(name)
    attributes, parts = split_kept(kept)
    return Anonymizer(base, preserve=attributes, keep=parts, **options)


def split_kept(kept: tuple[str, ...]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """What a method name asks to keep (`parse_method`), as attributes (`--preserve`) and face parts (`--keep`)."""
    return tuple(name for name in kept if name not in FACE_PARTS), tuple(name for name in kept if name in FACE_PARTS)


def anonymize_into(anonymizer: Anonymizer, originals: Path, out: Path) -> Path:
    """Anonymize the images under `originals` into `out` (mirrored) and return `out`."""
    anonymizer.anonymize_files(plan_outputs([originals], out, IMAGE_EXTENSIONS), Report("anonymize", {}))
    return out


def coverage_of_methods(
    originals: Path,
    names: list[str],
    marked: dict[str, list[MarkedFace]],
    device: str,
    on_method: Callable[[str], None] = lambda name: None,
) -> list[dict]:
    """Per method, exposed and fully covered shares of the marked faces (`none`: the originals as they are)."""
    summaries = []
    with tempfile.TemporaryDirectory(prefix="anoncli-coverage-") as scratch:
        for name in names:
            on_method(name)
            if name == REFERENCE:
                out = originals
            else:
                out = anonymize_into(method_anonymizer(name, device=device), originals, Path(scratch) / name)
            results, problems = measure_coverage(marked, originals, out)
            summaries.append({"method": name, **coverage_summary(results), "problems": problems})
    return summaries


def coverage_table(title: str, summaries: list[dict]) -> Table:
    table = Table(title=title, caption="exposed: under half of the inner face changed; fully covered: 90 % or more")
    views = sorted({view for summary in summaries for view in summary["by_view"]})
    for heading in ("method", "faces", "exposed", "fully covered", *(f"exposed, {view}" for view in views)):
        table.add_column(heading, justify="left" if heading == "method" else "right", no_wrap=True)
    for summary in summaries:
        per_view = [summary["by_view"].get(view) for view in views]
        table.add_row(
            summary["method"],
            str(summary["faces"]),
            f"{summary['exposed']:.1%}",
            f"{summary['fully_covered']:.1%}",
            *(f"{shares['exposed']:.0%} of {shares['faces']}" if shares else "" for shares in per_view),
        )
    return table


def summary_table(title: str, summaries: list[dict], judges: list[str], with_fid: bool) -> Table:
    """The figures of each method in a row; gender and age kept per attribute judge."""
    table = Table(title=title, caption=verified_caption(summaries[0]) if summaries else None)
    columns = [column for column in COLUMNS if with_fid or column[1] != "fid"]
    for heading, _, _ in columns:
        table.add_column(heading, justify="left" if heading == "method" else "right", no_wrap=True)
    if judges:
        table.add_column("gender kept", justify="right", no_wrap=True)
        table.add_column("age kept", justify="right", no_wrap=True)
        judged = f"gender / age group kept, as judged by: {' / '.join(judges)}"
        table.caption = f"{table.caption}\n{judged}" if table.caption else judged
    for summary in summaries:
        cells = [pattern.format(summary[key]) for _, key, pattern in columns]
        agreement = summary["attribute_agreement"]
        for attribute in ("gender", "age_group") if judges else ():
            cells.append(" / ".join(f"{agreement.get(n, {}).get(attribute, float('nan')):.0%}" for n in judges))
        table.add_row(*cells)
    return table


def verified_caption(summary: dict) -> str:
    """What "verified" counts, with the thresholds it was calibrated to: they depend on the originals alone, so
    one summary gives them for every method."""
    return (
        "verified: face unchanged, or found again and re-identified within its threshold, the least of dlib's 0.6, "
        "the distance to another person in the photo and to a blank patch of the face's size (median "
        f"{summary['reid_threshold']:.2f}; a blank patch lies within 0.6 of {summary['blank_within_dlib']:.0%} of "
        f"the faces, another person of {summary['others_within_dlib']:.0%})"
    )


def faces_json(runs: list[list[Evaluation]]) -> dict[str, list[dict]]:
    """Every face's figures per method, each with the draw it comes from."""
    return {
        draws[0].name: [
            {**record.figures(), "draw": number} for number, draw in enumerate(draws) for record in draw.records
        ]
        for draws in runs
    }
