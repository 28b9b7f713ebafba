"""Turn the user's paths into (input file, output file) pairs, mirroring folders under the output.

Inputs are files, folders (searched recursively), `-` (one image on stdin) or a list of paths read from a file
(`--files-from`). Without an output, each input gets a sibling: `photos/` → `photos_anonymized/`,
`in.mp4` → `in_anonymized.mp4`; `-` writes to stdout.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

# `-` as an input or output path: standard input or output.
STREAM = Path("-")
DEFAULT_SUFFIX = "_anonymized"
OUTPUT_EXISTS = "output exists; --overwrite to redo"  # why a re-run skips a file


class UsageError(Exception):
    """Bad arguments: the command stops before touching any file (exit code 2)."""


@dataclass(frozen=True)
class Task:
    source: Path  # STREAM: read from stdin
    output: Path | None  # None when the command writes no file per input (e.g. `detect`); STREAM: stdout
    label: str  # the path as shown to the user and written to reports
    # The path below the output folder (below the input folder for commands that write no file per input):
    # it names the file the same wherever the folders are stored, so face seeds follow it and the same
    # photos get the same new faces on any machine.
    relative: str
    # Set when the task is known to need no work (an input that is another input's default output).
    skip_reason: str | None = None

    def reason_to_skip(self, overwrite: bool) -> str | None:
        """Why the task needs no work (its output exists, so a re-run resumes), or None."""
        if self.skip_reason is not None:
            return self.skip_reason
        if not overwrite and self.output is not None and not is_stream(self.output) and self.output.exists():
            return OUTPUT_EXISTS
        return None


def is_stream(path: Path | None) -> bool:
    return path is not None and str(path) == "-"


def read_path_list(stream: BinaryIO, null_separated: bool) -> Iterator[Path]:
    """Paths from `--files-from`: one per line, or NUL-separated as `find -print0` writes them."""
    separator = b"\0" if null_separated else b"\n"
    pending = b""
    while chunk := stream.read1(1 << 16):  # what has arrived, without waiting for a full buffer
        pending += chunk
        *complete, pending = pending.split(separator)
        yield from _paths(complete, null_separated)
    yield from _paths([pending], null_separated)


def _paths(entries: list[bytes], null_separated: bool) -> Iterator[Path]:
    for entry in entries:
        if not null_separated:
            entry = entry.rstrip(b"\r")
        if entry:
            yield Path(os.fsdecode(entry))


def listed_relative(path: Path) -> Path:
    """Where a path from `--files-from` goes below the output folder: its path relative to the current
    folder, or for paths outside it the whole path without its root (as `cp --parents` does)."""
    absolute = Path(os.path.abspath(path))
    cwd = Path.cwd()
    if absolute.is_relative_to(cwd):
        return absolute.relative_to(cwd)
    return absolute.relative_to(absolute.anchor)


def find_files(inputs: Iterable[Path], extensions: frozenset[str]) -> Iterator[tuple[Path, Path]]:
    """(root, file) for every matching file under the inputs; files named directly are always taken."""
    for root in inputs:
        if is_stream(root):
            yield root, root
        elif root.is_dir():
            # Broken links are kept so the user hears about them rather than losing a file silently.
            files = (
                p
                for p in sorted(root.rglob("*"))
                if p.suffix.lower() in extensions and (p.is_file() or (p.is_symlink() and not p.exists()))
            )
            yield from ((root, path) for path in files if not _hidden(path.relative_to(root)))
        elif root.exists() or root.is_symlink():
            yield root, root
        else:
            raise UsageError(f"no such file or folder: {root}")


def _hidden(relative: Path) -> bool:
    # Our own half-written temporary files and dot-folders such as .git are not inputs.
    return any(part.startswith(".") for part in relative.parts)


def default_output(root: Path) -> Path:
    """The sibling an input is written to when no output is given: never inside the input."""
    if root.name in ("", ".", ".."):  # `.` or `..`: name the folder by its real name
        root = Path(os.path.abspath(root))
    if not root.name:
        raise UsageError(f"cannot name an output beside {root}; give one with -o")
    if root.is_dir():
        return root.with_name(f"{root.name}{DEFAULT_SUFFIX}")
    return root.with_name(f"{root.stem}{DEFAULT_SUFFIX}{root.suffix}")


# Suffixes that name one format: an output file may take any of them.
SAME_FORMAT = (
    frozenset({".jpg", ".jpeg", ".jpe", ".jfif"}),
    frozenset({".tif", ".tiff"}),
    frozenset({".mpg", ".mpeg"}),
)


def _format_of(path: Path) -> frozenset[str]:
    suffix = path.suffix.lower()
    return next((suffixes for suffixes in SAME_FORMAT if suffix in suffixes), frozenset({suffix}))


def output_file(
    inputs: list[Path], output: Path | None, extensions: frozenset[str], listed: bool = False
) -> Path | None:
    """The output file `output` names for the one input file given (`anoncli video in.mp4 -o out.mp4`, and no
    `listed` inputs from --files-from): an `output` ending in a suffix of the kind of file read (`extensions`)
    that is no folder. None when `output` is a folder (or stdout). Outputs keep their input's format, so a suffix
    of another format is refused."""
    if (
        output is None
        or listed
        or len(inputs) != 1
        or is_stream(inputs[0])
        or not inputs[0].is_file()
        or inputs[0].suffix.lower() not in extensions
        or output.suffix.lower() not in extensions
        or output.is_dir()
    ):
        return None
    if _format_of(output) != _format_of(inputs[0]):
        raise UsageError(
            f"{inputs[0].name} is written in its own format: name its output {output.stem}{inputs[0].suffix}, "
            "or give an output folder"
        )
    return output


def output_places(inputs: list[Path], output: Path | None, extensions: frozenset[str]) -> dict[Path, set[str] | None]:
    """Where the outputs of the given `inputs` land: folder → None when the folder's whole tree is this
    tool's output, or the names of this run's outputs in a folder that holds other files too."""
    if is_stream(output):
        return {}
    if (file := output_file(inputs, output, extensions)) is not None:
        return {file.parent: {file.name}}
    if output is not None:
        return {output: None}
    places: dict[Path, set[str] | None] = {}
    for root in inputs:
        if is_stream(root):
            continue
        target = default_output(root)
        if root.is_dir():
            places[target] = None
        else:
            names = places.setdefault(target.parent, set())
            if names is not None:
                names.add(target.name)
    return places


def plan_outputs(
    inputs: list[Path], output: Path | None, extensions: frozenset[str], listed: Iterable[Path] = ()
) -> list[Task]:
    """Map each input file to its output.

    With `output` a folder: one folder given has its tree mirrored directly under it; several inputs keep
    their own names under it; `listed` paths (from `--files-from`) keep their path (see `listed_relative`).
    One file given and `output` a file name of its format (see `output_file`): written to that file.
    Without `output`: every input is written beside itself (see `default_output`), `-` to stdout. `output`
    `-` (stdout) takes exactly one image. Refuses outputs inside an input folder, an output that is its own
    input, and two inputs landing on one output.
    """
    return list(iter_outputs(inputs, output, extensions, listed))


def iter_outputs(
    inputs: list[Path], output: Path | None, extensions: frozenset[str], listed: Iterable[Path] = ()
) -> Iterator[Task]:
    """`plan_outputs` as a stream: the inputs given are all planned now (so a usage error comes before any
    work), the `listed` paths one at a time as they are read (millions never sit in memory at once)."""
    if is_stream(output):
        return iter([_stream_task(inputs, listed)])
    if output is not None:
        output_resolved = output.resolve()
        for root in inputs:
            if root.is_dir() and output_resolved.is_relative_to(root.resolve()):
                raise UsageError(f"output folder {output} lies inside input folder {root}; choose another place")
    listed = iter(listed)
    first_listed = next(listed, None)
    if first_listed is not None:
        listed = itertools.chain([first_listed], listed)
    planner = _Planner(output, len(inputs), output_file(inputs, output, extensions, first_listed is not None))
    folders = [Path(os.path.abspath(root)) for root in inputs if not is_stream(root) and root.is_dir()]
    # A file given beside a folder that holds it is done once, as part of the folder.
    found = [(root, path) for root, path in find_files(inputs, extensions) if not _inside_another(root, path, folders)]
    given = [task for root, path in found if (task := planner.task(root, path))]
    listed_tasks = (task for path in listed if (task := planner.task(None, path)))
    return itertools.chain(given, listed_tasks)


def _inside_another(root: Path, path: Path, folders: list[Path]) -> bool:
    """Whether `path`, named directly, lies in one of the input `folders`."""
    return root == path and not is_stream(path) and any(Path(os.path.abspath(path)).is_relative_to(f) for f in folders)


class _Planner:
    """Plans one input file at a time, remembering what it has planned to refuse collisions."""

    def __init__(self, output: Path | None, input_count: int, output_file: Path | None = None) -> None:
        self.output, self.input_count, self.output_file = output, input_count, output_file
        self.sources: set[str] = set()
        self.targets: dict[str, Path] = {}

    def task(self, root: Path | None, path: Path) -> Task | None:
        """The task for `path` (found under `root`; None: listed), or None when it was planned already."""
        if is_stream(path):
            if self.output is not None:
                raise UsageError("`-` (an image on stdin) goes to stdout: leave out -o, or give -o -")
            return Task(STREAM, STREAM, "-", "-")
        source = os.path.abspath(path)
        if source in self.sources:
            return None  # given twice (say, a folder and a file inside it): done once
        self.sources.add(source)
        if self.output_file is not None and root == path:
            target, relative = self.output_file, path.name
        else:
            target, relative = _target(root, path, self.output, self.input_count)
        if os.path.abspath(target) == source or _same_file(target, path):
            raise UsageError(f"output {target} would overwrite its input")
        key = os.path.abspath(target)
        if key in self.targets:
            raise UsageError(f"{self.targets[key]} and {path} would both be written to {target}")
        self.targets[key] = path
        original = anonymized_copy_of(path) if self.output is None else None
        skip = None if original is None else f"this is the anonymized copy of {original}; give -o to redo it"
        return Task(path, target, str(path), relative, skip)


def _target(root: Path | None, path: Path, output: Path | None, input_count: int) -> tuple[Path, str]:
    """The output file and its name below the output folder (what face seeds follow)."""
    if root is None:  # listed by --files-from
        relative = listed_relative(path)
        return (default_output(path), path.name) if output is None else (output / relative, relative.as_posix())
    if root == path:
        return (default_output(path) if output is None else output / path.name), path.name
    inside = path.relative_to(root)
    if output is None:
        return default_output(root) / inside, inside.as_posix()
    if input_count > 1:
        inside = Path(root.resolve().name) / inside
    return output / inside, inside.as_posix()


def anonymized_copy_of(path: Path) -> Path | None:
    """The original whose default output `path` is (or lies in), when that original exists: a re-run
    without -o must not anonymize its own earlier outputs."""
    absolute = Path(os.path.abspath(path))
    names = [absolute.stem, *(parent.name for parent in absolute.parents)]
    places = [absolute, *absolute.parents]
    for name, place in zip(names, places):
        if name.endswith(DEFAULT_SUFFIX) and len(name) > len(DEFAULT_SUFFIX):
            original = place.with_name(name[: -len(DEFAULT_SUFFIX)] + (place.suffix if place == absolute else ""))
            if original.exists():
                return original
    return None


def _same_file(first: Path, second: Path) -> bool:
    try:
        return first.exists() and os.path.samefile(first, second)
    except OSError:
        return False


def _stream_task(inputs: list[Path], listed: Iterable[Path]) -> Task:
    if len(inputs) != 1 or inputs[0].is_dir() or next(iter(listed), None) is not None:
        raise UsageError("-o - (stdout) takes exactly one image: a file, or `-` for stdin")
    (_, source), *_ = find_files(inputs, frozenset())
    return Task(source, STREAM, str(source), "-" if is_stream(source) else source.name)


def plan_inputs(inputs: list[Path], extensions: frozenset[str], listed: Iterable[Path] = ()) -> Iterator[Task]:
    """Tasks for commands that write no file per input (`detect`): the inputs given are found now (a usage
    error comes before any work), the `listed` ones as they are read."""
    given = [_input_task(root, path) for root, path in find_files(inputs, extensions)]
    return itertools.chain(given, (_input_task(None, path) for path in listed))


def _input_task(root: Path | None, path: Path) -> Task:
    if root is None:
        relative = listed_relative(path).as_posix()
    elif root == path:
        relative = path.name
    else:
        relative = path.relative_to(root).as_posix()
    return Task(path, None, str(path), relative)
