"""What the commands share: option declarations, the parsing of option values, and the terminal (progress and
messages on stderr; stdout carries data only)."""

from __future__ import annotations

import importlib.util
import json
import os
import sys
from collections.abc import Iterable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from pathlib import Path
from typing import Annotated, BinaryIO, NoReturn, Optional, TextIO

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from anoncli.anonymizers import METHODS
from anoncli.api import Anonymizer
from anoncli.attributes import ATTRIBUTE_NAMES, ESTIMATORS
from anoncli.composites.mesh import FACE_PARTS
from anoncli.detectors import DETECTORS
from anoncli.device import DEVICES
from anoncli.io.objects import object_url
from anoncli.io.report import FAILED, FileResult
from anoncli.io.sink import remove_stale_temporaries
from anoncli.io.sources import STREAM, UsageError, default_output, is_stream, output_places, read_path_list
from anoncli.pipeline.on_ray import RayBackend

# 128 + SIGPIPE: what a shell reports for a program whose reader went away.
CLOSED_PIPE_EXIT = 141

errors = Console(stderr=True, highlight=False, soft_wrap=True)


def say(message: str) -> None:
    """A message for the user on stderr; `message` is rich markup, so user text in it must be escaped."""
    errors.print(message)


def fail_usage(message: str) -> NoReturn:
    errors.print(f"[bold red]error:[/] {escape(message)}")
    raise typer.Exit(2)


def report_failure(result: FileResult) -> None:
    if result.status == FAILED:
        errors.print(f"[red]error:[/] {escape(result.path)}: {escape(result.error or '')}")


def remove_leftovers(inputs: list[Path] | None, output: Path | None, extensions: frozenset[str], quiet: bool) -> None:
    """Remove the half-written files interrupted runs left where this run writes, and say so."""
    removed = [
        path
        for folder, names in output_places(inputs or [], output, extensions).items()
        for path in remove_stale_temporaries(folder, names)
    ]
    if removed and not quiet:
        say(f"removed {len(removed)} half-written file(s) an interrupted run left, such as {escape(str(removed[0]))}")


def jsonl_line(result: FileResult) -> str:
    """One finished file for `--jsonl`: what a pipeline needs to route it and to resume."""
    record = {
        "path": result.path,
        "output": result.output,
        "status": result.status,
        "faces": result.faces,
        "fallback_faces": result.fallback_faces,
        "stand_in_faces": result.stand_in_faces,
        "error": result.error,
    }
    return json.dumps(record, ensure_ascii=False)


@contextmanager
def stdout_for_data() -> Iterator[None]:
    """Stdout carries data; when its reader goes away (`| head -1`), the run ends quietly with 141."""
    try:
        yield
    except BrokenPipeError:
        # Later flushes (at exit, too) would fail again: point stdout at nothing.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        raise typer.Exit(CLOSED_PIPE_EXIT) from None


def one_kind_of_data_on_stdout(image: bool, jsonl: bool, report: Path | None) -> None:
    """Stdout carries one stream of data: an image, JSON lines or the report, never two mixed."""
    kinds = [
        name for name, used in (("the image", image), ("--jsonl", jsonl), ("--report -", is_stream(report))) if used
    ]
    if len(kinds) > 1:
        raise UsageError(f"{' and '.join(kinds)} would both go to stdout; send one of them to a file")


def one_reader_of_stdin(inputs: list[Path] | None, files_from: Path | None) -> None:
    if is_stream(files_from) and any(map(is_stream, inputs or [])):
        raise UsageError("`-` (an image) and --files-from - cannot both read stdin")


def text_output(output: Path | None, inputs: list[Path] | None) -> AbstractContextManager[TextIO]:
    """Where `detect` and `track` write their records: stdout (no -o, or `-`), else a file that is none of the
    inputs; UsageError when it cannot be opened."""
    if output is None or is_stream(output):
        return nullcontext(sys.stdout)
    if any(
        not is_stream(path) and path.exists() and output.exists() and output.samefile(path) for path in inputs or []
    ):
        raise UsageError(f"-o {output} is one of the inputs; write the records elsewhere")
    try:
        return output.open("w", encoding="utf-8", newline="")
    except OSError as error:
        raise UsageError(f"cannot write -o {output}: {error.strerror}") from None


def listed_inputs(files_from: Path | None, null: bool) -> Iterator[Path]:
    """The paths of `--files-from` (`-`: stdin), read as the run goes; a file that cannot be opened is a usage
    error now, before any work."""
    if files_from is None:
        return iter(())
    if files_from == STREAM:
        return read_path_list(sys.stdin.buffer, null)
    try:
        stream = files_from.open("rb")
    except OSError as error:
        raise UsageError(f"cannot read --files-from {files_from}: {error.strerror}") from None
    return _read_and_close(stream, null)


def _read_and_close(stream: BinaryIO, null: bool) -> Iterator[Path]:
    with stream:
        yield from read_path_list(stream, null)


def build_anonymizer(
    method: str | None,
    preserve: str | None,
    skin_tone: str,
    detector: str,
    threshold: float | None,
    device: str,
    attribute_model: str,
    mask_scale: float | None,
    coverage: str,
    faces_from: Path | None = None,
    keep: str | None = None,
    flip: str | None = None,
    identity: int | None = None,
    weights: Path | None = None,
) -> Anonymizer:
    """The API's Anonymizer from the options `anonymize` and `video` share; UsageError or InputError when
    they cannot be used."""
    kept = parse_preserve(preserve)
    return Anonymizer(
        method,
        preserve=kept,
        keep=parse_keep(keep),
        flip=parse_flip(flip),
        identity=identity,
        weights=weights,
        skin_tone=parse_skin_tone(skin_tone),
        detector=detector,
        coverage=coverage,
        threshold=threshold,
        device=device,
        attribute_model=attribute_model,
        mask_scale=mask_scale,
        faces_from=faces_from,
    )


def announce(
    method: str | None, anonymizer: Anonymizer, output: Path | None, inputs: list[Path] | None, listed: bool
) -> None:
    """Say on stderr what the user did not choose: the method --preserve picked, and where outputs go."""
    if method is None and anonymizer.preserve:
        say(f"--preserve {','.join(anonymizer.preserve)}: using --method {anonymizer.method_name}, which can keep them")
    if output is not None:
        return
    for root in inputs or []:
        if not is_stream(root):
            say(f"writing {escape(str(root))} to {escape(str(default_output(root)))}")
    if listed:
        say("writing each listed file beside itself as NAME_anonymized.EXT")


def _parse_names(text: str | None, known: Iterable[str], option: str, kind: str) -> tuple[str, ...]:
    """Comma-separated names, lower-cased, each once; UsageError naming `option` for any not `known`."""
    if not text:
        return ()
    known = tuple(known)
    names = tuple(dict.fromkeys(part.strip().lower() for part in text.split(",") if part.strip()))
    unknown = [name for name in names if name not in known]
    if unknown:
        raise UsageError(f"{option}: unknown {kind} {', '.join(unknown)}; choose from {', '.join(known)}")
    return names


def parse_preserve(text: str | None) -> tuple[str, ...]:
    return _parse_names(text, ATTRIBUTE_NAMES, "--preserve", "attribute")


def parse_keep(text: str | None) -> tuple[str, ...]:
    return _parse_names(text, FACE_PARTS, "--keep", "face part")


def parse_flip(text: str | None) -> tuple[str, ...]:
    return _parse_names(text, ATTRIBUTE_NAMES, "--flip", "attribute")


def parse_skin_tone(text: str) -> tuple[int, int, int] | None:
    if text.strip().lower() == "keep":
        return None
    try:
        values = tuple(int(part) for part in text.split(","))
    except ValueError:
        values = ()
    if len(values) != 3 or not all(0 <= value <= 255 for value in values):
        raise UsageError(f"--skin-tone {text!r}: give `keep` or three numbers 0-255 such as 200,160,140")
    return values


def parse_bitrate(text: str) -> int:
    multipliers = {"k": 1_000, "m": 1_000_000}
    number, unit = text.strip().lower(), 1
    if number and number[-1] in multipliers:
        number, unit = number[:-1], multipliers[number[-1]]
    try:
        value = float(number) * unit
    except ValueError:
        raise UsageError(f"--bitrate must look like 2M, 800k or 1500000, got {text!r}") from None
    if value <= 0:
        raise UsageError("--bitrate must be positive")
    return int(value)


class Bar:
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

    def set_total(self, total: int | None) -> None:
        if self.progress is not None:
            self.progress.update(self.task, total=total or None)

    def set(self, completed: int, total: int) -> None:
        if self.progress is not None:
            self.set_total(total)
            self(completed - int(self.progress.tasks[0].completed))


@contextmanager
def progress(total: int | None, quiet: bool, what: str, unit: str = "images") -> Iterator[Bar]:
    """A rich progress bar with rate and ETA on a terminal; nothing when quiet or piped."""
    if quiet or not sys.stderr.isatty():
        yield Bar(None, unit)
        return
    columns = (
        TextColumn(f"[bold]{escape(what)}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("[cyan]{task.fields[rate]}"),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=errors, transient=True) as shown:
        bar = Bar(shown, unit)
        bar.set_total(total)
        yield bar


InputsArgument = Annotated[
    Optional[list[Path]],
    typer.Argument(
        help="Image files and folders (searched recursively); `-` reads one image from stdin.", show_default=False
    ),
]
VideoInputsArgument = Annotated[
    Optional[list[Path]],
    typer.Argument(help="Video files and folders (searched recursively).", show_default=False),
]
FilesFromOption = Annotated[
    Optional[Path],
    typer.Option(
        "--files-from",
        help="Also take the input files listed in this file, one per line (`-`: stdin); with -o they keep their "
        "path below it (relative to here, or absolute without the leading /).",
        show_default=False,
    ),
]
NullOption = Annotated[
    bool, typer.Option("--null", "-0", help="--files-from's paths are separated by NUL bytes (`find -print0`).")
]
JsonlOption = Annotated[
    bool,
    typer.Option(
        "--jsonl",
        help="Print one JSON line per finished file on stdout (path, output, status, faces, fallback_faces, "
        "stand_in_faces, error) as it finishes.",
    ),
]
DetectorOption = Annotated[
    Optional[str],
    typer.Option(
        "--detector",
        help=f"Use this one detector instead of --coverage's: {', '.join(DETECTORS.names())}.",
        show_default=False,
    ),
]
CoverageOption = Annotated[
    str,
    typer.Option(
        "--coverage",
        help="How hard to look for faces: strict (RetinaFace and CenterFace at thresholds for recall, dark images "
        "also with raised contrast), balanced (both at their usual thresholds), fast (RetinaFace alone).",
    ),
]
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
OutputOption = Annotated[
    Optional[Path],
    typer.Option(
        "--output",
        "-o",
        help="Output folder (input folders are mirrored inside), or for one local file its output file in the "
        "same format; `-` for stdout (anonymize, one image). "
        "[default: beside each input: photos/ → photos_anonymized/, a.jpg → a_anonymized.jpg; `-` → stdout]",
        show_default=False,
    ),
]
MethodOption = Annotated[
    Optional[str],
    typer.Option(
        "--method",
        "-m",
        help=f"How faces are replaced: {', '.join(METHODS.names())}. stargan SEES THE FACE: it edits the face's "
        "gender and age (--flip), and the person may still be recognised. [default: blur; deepprivacy with "
        "--preserve]",
        show_default=False,
    ),
]
MaskScaleOption = Annotated[
    Optional[float],
    typer.Option(
        "--mask-scale",
        min=0.5,
        max=4.0,
        help="Mask ellipse size relative to the face box [default: 1.3; 1.1 for the methods that draw a face].",
        show_default=False,
    ),
]
PreserveOption = Annotated[
    Optional[str],
    typer.Option(
        "--preserve",
        help="Keep these attributes of each person in the new face, comma-separated: gender, age (age group "
        "0-19, 20-29, 30-39, 40+). Estimated on the original face (see --attribute-model); the generator gets "
        "only the labels. Generative methods only (deepprivacy, chosen when no --method is given, and ksame).",
        show_default=False,
    ),
]
KeepOption = Annotated[
    Optional[str],
    typer.Option(
        "--keep",
        help="Keep these parts of each face in the original's shape, comma-separated: eyes, eyebrows, nose, "
        "mouth, outline; the others take the shape of an average face. `--method shape` only.",
        show_default=False,
    ),
]
FlipOption = Annotated[
    Optional[str],
    typer.Option(
        "--flip",
        help="`--method stargan`: change these attributes of the face itself, comma-separated: gender, age "
        "[default: both]. stargan SEES THE FACE and edits it: the person may still be recognised.",
        show_default=False,
    ),
]
IdentityOption = Annotated[
    Optional[int],
    typer.Option(
        "--identity",
        min=0,
        help="`--method ciagan`: draw every face as this fake identity (0-99) [default: one per face, by its "
        "seed; in video one per person].",
        show_default=False,
    ),
]
WeightsOption = Annotated[
    Optional[Path],
    typer.Option(
        "--weights",
        help="A trained method's weights as `anoncli train METHOD --out FILE` wrote them (the manifest beside "
        "them is checked) [default: the shipped ones].",
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
ReportOption = Annotated[
    Optional[Path],
    typer.Option("--report", help="Write a JSON report of every file here (`-`: stdout).", show_default=False),
]
OverwriteOption = Annotated[
    bool, typer.Option("--overwrite", help="Redo outputs that already exist (default: skip, so re-runs resume).")
]
DetectEveryOption = Annotated[
    int, typer.Option("--detect-every", min=1, help="Detect on every k-th frame and track in between (faster).")
]
BackendOption = Annotated[
    str,
    typer.Option(
        "--backend",
        help="local: this process; ray: Ray workers (a local Ray, or --address's cluster; pip install anoncli[ray]).",
    ),
]
AddressOption = Annotated[
    Optional[str],
    typer.Option(
        "--address",
        help="With --backend ray: the cluster to join (auto, or ray://HOST:10001) [default: start Ray here].",
        show_default=False,
    ),
]
WorkersOption = Annotated[
    Optional[int],
    typer.Option(
        "--workers",
        min=1,
        help="With --backend ray: workers [default: one per CPU of the cluster].",
        show_default=False,
    ),
]
GpusPerWorkerOption = Annotated[
    float,
    typer.Option("--gpus-per-worker", min=0.0, help="With --backend ray: GPUs each worker takes (0.5 shares one)."),
]


def ray_backend(backend: str, address: str | None, workers: int | None, gpus_per_worker: float) -> RayBackend | None:
    """The Ray backend the options ask for, or None to run here; UsageError when they cannot be used."""
    if backend not in ("local", "ray"):
        raise UsageError(f"--backend {backend}: choose local or ray")
    if backend == "local":
        if address is not None or workers is not None or gpus_per_worker:
            raise UsageError("--address, --workers and --gpus-per-worker go with --backend ray")
        return None
    if importlib.util.find_spec("ray") is None:
        raise UsageError("--backend ray needs Ray: pip install 'anoncli[ray]'")
    return RayBackend(address, workers, gpus_per_worker)


def object_inputs(inputs: list[Path] | None, files_from: Path | None, output: Path | None) -> list[str] | None:
    """The s3:// URLs of the inputs when they are objects (None when they are files); UsageError for a mix."""
    urls = [object_url(path) for path in inputs or []]
    if not any(urls) and object_url(output) is None:
        return None
    if not inputs or not all(urls) or files_from is not None or object_url(output) is None:
        raise UsageError("s3:// inputs go to an s3:// -o, and do not mix with files or --files-from")
    return urls
