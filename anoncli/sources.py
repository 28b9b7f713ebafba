"""Turn the user's paths into (input file, output file) pairs, mirroring folders under the output."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path


class UsageError(Exception):
    """Bad arguments: the command stops before touching any file (exit code 2)."""


@dataclass(frozen=True)
class Task:
    source: Path
    output: Path | None  # None when the command writes no file per input (e.g. `detect`)
    label: str  # the path as shown to the user and written to reports
    # The path below the output folder (below the input folder for commands that write no file per input):
    # it names the file the same wherever the folders are stored, so face seeds follow it and the same
    # photos get the same new faces on any machine.
    relative: str


def find_files(inputs: Iterable[Path], extensions: frozenset[str]) -> list[tuple[Path, Path]]:
    """(root, file) for every matching file under the inputs; files named directly are always taken."""
    found: list[tuple[Path, Path]] = []
    for root in inputs:
        if root.is_dir():
            # Broken links are kept so the user hears about them rather than losing a file silently.
            files = (
                p
                for p in sorted(root.rglob("*"))
                if p.suffix.lower() in extensions and (p.is_file() or (p.is_symlink() and not p.exists()))
            )
            found.extend((root, path) for path in files if not _hidden(path.relative_to(root)))
        elif root.exists() or root.is_symlink():
            found.append((root, root))
        else:
            raise UsageError(f"no such file or folder: {root}")
    return found


def _hidden(relative: Path) -> bool:
    # Our own half-written temporary files and dot-folders such as .git are not inputs.
    return any(part.startswith(".") for part in relative.parts)


def plan_outputs(inputs: list[Path], output: Path, extensions: frozenset[str]) -> list[Task]:
    """Map each input file to its place under `output`.

    One folder given: its tree is mirrored directly under `output`. Several inputs: each folder keeps its
    own name under `output`. Refuses outputs inside an input folder, and two inputs landing on one output.
    """
    output_resolved = output.resolve()
    for root in inputs:
        if root.is_dir() and output_resolved.is_relative_to(root.resolve()):
            raise UsageError(f"output folder {output} lies inside input folder {root}; choose another place")
    tasks: list[Task] = []
    seen: dict[Path, Path] = {}
    for root, path in find_files(inputs, extensions):
        if root == path:
            target = output / path.name
        elif len(inputs) == 1:
            target = output / path.relative_to(root)
        else:
            target = output / root.resolve().name / path.relative_to(root)
        resolved = target.resolve()
        if resolved == path.resolve():
            raise UsageError(f"output {target} would overwrite its input")
        if resolved in seen:
            raise UsageError(f"{seen[resolved]} and {path} would both be written to {target}")
        seen[resolved] = path
        tasks.append(Task(path, target, str(path), target.relative_to(output).as_posix()))
    return tasks


def plan_inputs(inputs: list[Path], extensions: frozenset[str]) -> list[Task]:
    return [
        Task(path, None, str(path), path.name if root == path else path.relative_to(root).as_posix())
        for root, path in find_files(inputs, extensions)
    ]
