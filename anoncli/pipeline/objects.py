"""Objects (s3://) through the file pipelines: download into a scratch folder, anonymize there, upload.

Used alike by the local path and by Ray workers, so an object is anonymized by exactly the code a file is,
and its faces follow its name below the input prefix as a file's follow its path below the input folder.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

from anoncli.io.objects import ObjectTask, download, existing_objects, upload
from anoncli.io.report import FAILED, OK, SKIPPED, FileResult
from anoncli.io.sources import OUTPUT_EXISTS, Task

# A file pipeline: local tasks in, one result per task out, in order.
FilePipeline = Callable[[list[Task]], list[FileResult]]


def stage(tasks: list[ObjectTask], pipeline: FilePipeline) -> list[FileResult]:
    """Anonymize `tasks` with `pipeline` in a scratch folder; one result per object, in order, naming URLs."""
    with tempfile.TemporaryDirectory(prefix="anoncli-objects-") as scratch:
        results: dict[int, FileResult] = {}
        local: list[tuple[int, Task]] = []
        for position, task in enumerate(tasks):
            source, output = Path(scratch, "in", task.relative), Path(scratch, "out", task.relative)
            try:
                download(task.source, source)
            except Exception as error:  # one unreadable object fails alone
                results[position] = FileResult(task.source, FAILED, task.output, error=f"cannot download: {error}")
                continue
            local.append((position, Task(source, output, task.source, task.relative)))
        done = pipeline([local_task for _, local_task in local]) if local else []
        for (position, local_task), result in zip(local, done, strict=True):
            task = tasks[position]
            if result.status == OK:
                try:
                    upload(local_task.output, task.output)
                except Exception as error:  # one unwritable object fails alone
                    result = replace(result, status=FAILED, error=f"cannot upload: {error}")
            results[position] = replace(result, path=task.source, output=task.output)
        return [results[position] for position in range(len(tasks))]


def finished_objects(tasks: list[ObjectTask], overwrite: bool) -> set[str]:
    """The outputs that exist already (listed once per output prefix), which a run without --overwrite skips."""
    if overwrite or not tasks:
        return set()
    prefixes = {task.output[: len(task.output) - len(task.relative)] for task in tasks}
    return set().union(*(existing_objects(prefix) for prefix in prefixes))


def split_finished(tasks: list, reason_to_skip: Callable[[Any], str | None]) -> tuple[dict[int, FileResult], list]:
    """The skipped results of the tasks there is a reason to skip (by position), and the tasks left to do."""
    known: dict[int, FileResult] = {}
    work = []
    for position, task in enumerate(tasks):
        if skip := reason_to_skip(task):
            known[position] = FileResult(task.label, SKIPPED, str(task.output), notes=[skip])
        else:
            work.append(task)
    return known, work


def unless_finished(finished: set[str]) -> Callable[[ObjectTask], str | None]:
    """An object task's reason to skip: its output is among the `finished` ones."""
    return lambda task: OUTPUT_EXISTS if task.output in finished else None


def merged(tasks: list, known: dict[int, FileResult], done: Iterable[FileResult]) -> Iterator[FileResult]:
    """Results in task order: the driver's own where it has one, the pipeline's in between."""
    from_pipeline = iter(done)
    for position in range(len(tasks)):
        yield known.get(position) or next(from_pipeline)
