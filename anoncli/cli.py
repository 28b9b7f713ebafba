"""The `anoncli` command line: parses options, builds the parts by name, hands them to the engine."""

from __future__ import annotations

import sys
from contextlib import contextmanager, nullcontext
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from anoncli import __version__
from anoncli.anonymizers import DEFAULT_METHOD, METHODS, create_method
from anoncli.detection_records import UserDetections, csv_rows, csv_writer, image_record, write_jsonl
from anoncli.detectors import DEFAULT_DETECTOR, DETECTORS, create_detector
from anoncli.device import DEVICES, resolve_device
from anoncli.engine import FaceFinder, ImageSettings, anonymize_images, detect_images
from anoncli.images import DEFAULT_MAX_MEGAPIXELS, IMAGE_EXTENSIONS
from anoncli.report import FAILED, OK, FileResult, Report
from anoncli.sources import UsageError, plan_inputs, plan_outputs

app = typer.Typer(
    help="Find faces in images and anonymize them, offline. Run `anoncli COMMAND --help` for details.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
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
MegapixelOption = Annotated[
    float,
    typer.Option("--max-megapixels", min=0, help="Refuse larger images (decompression-bomb guard); 0 = no limit."),
]


def _fail_usage(message: str) -> None:
    errors.print(f"[bold red]error:[/] {message}")
    raise typer.Exit(2)


def _build_detector(name: str, threshold: float | None, device: str) -> FaceFinder:
    options: dict = {"device": device}
    if threshold is not None:
        options["threshold"] = threshold
    detector = create_detector(name, **options)
    return lambda task, frame, image: detector.detect(image)


@contextmanager
def _progress(total: int, quiet: bool, what: str):
    """A rich progress bar with rate and ETA on a terminal; nothing when quiet or piped."""
    if quiet or not sys.stderr.isatty() or total == 0:
        yield lambda: None
        return
    columns = (
        TextColumn(f"[bold]{what}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("[cyan]{task.fields[rate]}"),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=errors, transient=True) as progress:
        bar = progress.add_task(what, total=total, rate="")

        def advance() -> None:
            progress.advance(bar)
            speed = progress.tasks[0].speed
            progress.update(bar, rate=f"{speed:.1f} images/s" if speed else "")

        yield advance


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
    output: Annotated[Path, typer.Option("--output", "-o", help="Output folder; input folders are mirrored inside.")],
    method: Annotated[
        str, typer.Option("--method", "-m", help=f"How faces are replaced: {', '.join(METHODS.names())}.")
    ] = DEFAULT_METHOD,
    mask_scale: Annotated[
        float, typer.Option("--mask-scale", min=0.5, max=4.0, help="Mask ellipse size relative to the face box.")
    ] = 1.3,
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
        anonymizer = create_method(method, device=resolved)
    except (UsageError, KeyError, ValueError) as error:
        _fail_usage(str(error).strip("'\""))
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
        },
    )
    with _progress(len(tasks), quiet, "anonymizing") as advance:

        def on_result(result: FileResult) -> None:
            advance()
            _report_failure(result)

        anonymize_images(tasks, find_faces, anonymizer, settings, report, on_result)
    if report_path is not None:
        report.write(report_path)
    if not quiet:
        errors.print(report.summary())
    raise typer.Exit(report.exit_code)


def run() -> None:
    app()


train_app = typer.Typer(help="Train the project's generative methods on your own face images.", no_args_is_help=True)
app.add_typer(train_app, name="train")

DEFAULT_RUNS = Path("runs")


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
    prepared: Annotated[
        Optional[Path], typer.Option("--prepared", help="Cache of prepared faces [default: runs/prepared/<data name>].")
    ] = None,
    device: DeviceOption = "auto",
    quiet: QuietOption = False,
) -> None:
    """Train the `deepprivacy` inpainting GAN; every few hundred steps it checkpoints and exports weights.

    Data are prepared once (faces detected, context squares cached, see --prepared). A killed run
    continues with --resume. Progress goes to --work-dir/log.jsonl and sample grids to --work-dir/samples/.
    """
    from anoncli.training.dataset import HELD_OUT_PERCENT, prepare_faces
    from anoncli.training.deepprivacy import TrainConfig, Trainer

    if not data.is_dir():
        _fail_usage(f"--data {data} is not a folder")
    resolved = resolve_device(device)
    config = TrainConfig(weights=out, work_dir=work_dir, steps=steps, batch_size=batch_size, device=resolved)
    trainer_exists = (work_dir / "checkpoint.pt").exists() or out.with_suffix(".train.pt").exists()
    if trainer_exists and not resume:
        _fail_usage(f"training state exists for {out}; pass --resume to continue it, or choose another --out")
    dataset = prepare_faces(
        data,
        prepared or DEFAULT_RUNS / "prepared" / data.resolve().name,
        create_detector(DEFAULT_DETECTOR, device=resolved),
        on_progress=lambda done, total: None if quiet or done % 1000 else errors.print(f"prepared {done}/{total}"),
    )
    config.data_description = {
        "folder": data.name,
        "faces": len(dataset.files),
        "held_out_percent": HELD_OUT_PERCENT,
        "licence": "UTKFace: non-commercial research only" if "utk" in data.name.lower() else "as given by the user",
    }
    trainer = Trainer(config, dataset)
    errors.print(trainer.resume())

    def report(record: dict) -> None:
        if not quiet and record["step"] % 25 == 0:
            errors.print(
                f"step {record['step']}: D {record['d_loss']:.3f} (real {record['d_real']:.2f}, fake "
                f"{record['d_fake']:.2f}) G {record['g_adversarial']:.3f} FM {record['g_feature_matching']:.3f} "
                f"L1 ctx {record['l1_context']:.3f} face {record['l1_face']:.3f} "
                f"{record['images_per_second']:.1f} img/s"
            )

    trainer.train(report)
    errors.print(f"weights written to {out} (manifest {out.with_suffix('.json').name})")
