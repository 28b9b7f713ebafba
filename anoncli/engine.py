"""The image pipeline: source → batch → detect → anonymize → paste → sink.

Decoding and encoding run in worker threads so the detector and the method stay busy; faces from every image
of a batch go to the method in one call. Every file ends as one FileResult, whatever goes wrong with it.
"""

from __future__ import annotations

import time
import zlib
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TypeVar

import numpy as np

from anoncli.anonymizers import Anonymizer
from anoncli.attributes import Attributes, Describer
from anoncli.faces import Face
from anoncli.frames import FrameJob, anonymize_frames
from anoncli.images import ImageReadError, Picture, encode_picture, read_picture, rgb8, write_atomically
from anoncli.report import FAILED, OK, SKIPPED, FileResult, Report
from anoncli.sources import Task

# (task, frame index, RGB uint8 frame) → faces. A detector, or the user's own detections.
FaceFinder = Callable[[Task, int, np.ndarray], list[Face]]
MIN_FACE_SIDE = 2.0
Item = TypeVar("Item")


@dataclass
class ImageSettings:
    mask_scale: float = 1.3
    batch_size: int = 8
    keep_metadata: bool = False
    overwrite: bool = False
    max_megapixels: float = 150.0
    read_threads: int = 2
    seed: int = 0  # another seed draws other fake faces from a generative method


@dataclass
class LoadedImage:
    """An input on its way through the pipeline: decoded picture and faces per frame, or why it failed."""

    task: Task
    picture: Picture | None = None
    error: str | None = None
    faces: list[list[Face]] = field(default_factory=list)  # per frame
    attributes: list[list[Attributes]] = field(default_factory=list)  # per frame and face, with --preserve


def _read(task: Task, settings: ImageSettings) -> LoadedImage:
    try:
        return LoadedImage(task, read_picture(task.source, settings.max_megapixels, settings.keep_metadata))
    except ImageReadError as error:
        return LoadedImage(task, error=str(error))


def _prefetched(pool: ThreadPoolExecutor, tasks: list[Task], settings: ImageSettings) -> Iterator[LoadedImage]:
    """Decode ahead in the pool, at most a few batches, so memory stays bounded on large folders."""
    ahead = max(2 * settings.batch_size, 4)
    queue: deque[Future[LoadedImage]] = deque()
    pending = iter(tasks)
    for task in pending:
        queue.append(pool.submit(_read, task, settings))
        if len(queue) >= ahead:
            break
    while queue:
        loaded = queue.popleft().result()
        next_task = next(pending, None)
        if next_task is not None:
            queue.append(pool.submit(_read, next_task, settings))
        yield loaded


def batched(items: Iterable[Item], size: int) -> Iterator[list[Item]]:
    """Consecutive lists of `size` items (the last may be shorter)."""
    batch: list[Item] = []
    for item in items:
        batch.append(item)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


def face_seed(name: str, frame: int, index: int, seed: int = 0) -> int:
    """A stable per-face seed, so re-running gives the same output (and another `seed` another face)."""
    return zlib.crc32(f"{seed}\0{name}\0{frame}\0{index}".encode())


def anonymize_images(
    tasks: list[Task],
    find_faces: FaceFinder,
    method: Anonymizer,
    settings: ImageSettings,
    report: Report,
    on_result: Callable[[FileResult], None] = lambda result: None,
    describe: Describer | None = None,
) -> Report:
    """Anonymize every task's image into its output file; results land in `report` in task order.

    With `describe`, each face's attributes are estimated on the original and handed to the method.
    """
    started = time.perf_counter()

    def record(result: FileResult) -> None:
        report.files.append(result)
        on_result(result)

    todo = []
    for task in tasks:
        if task.output is not None and task.output.exists() and not settings.overwrite:
            record(FileResult(task.label, SKIPPED, str(task.output), notes=["output exists; --overwrite to redo"]))
        else:
            todo.append(task)

    with ThreadPoolExecutor(settings.read_threads) as readers, ThreadPoolExecutor(1) as writer:
        writes: deque[Future[FileResult]] = deque()
        for batch in batched(_prefetched(readers, todo, settings), settings.batch_size):
            for loaded in batch:
                _find_all_faces(loaded, find_faces)
                if describe is not None:
                    _describe_all_faces(loaded, describe)
            for loaded, frames, fallbacks in _anonymize_batch(batch, method, settings):
                if loaded.error is not None:
                    writes.append(_done(FileResult(loaded.task.label, FAILED, error=loaded.error)))
                else:
                    writes.append(writer.submit(_write, loaded, frames, fallbacks))
            while writes and writes[0].done():
                record(writes.popleft().result())
        while writes:
            record(writes.popleft().result())
    report.seconds = time.perf_counter() - started
    return report


def _done(result: FileResult) -> Future[FileResult]:
    future: Future[FileResult] = Future()
    future.set_result(result)
    return future


def _find_all_faces(loaded: LoadedImage, find_faces: FaceFinder) -> None:
    if loaded.picture is None:
        return
    try:
        for index, frame in enumerate(loaded.picture.frames):
            faces = find_faces(loaded.task, index, rgb8(frame))
            loaded.faces.append([f for f in faces if f.width >= MIN_FACE_SIDE and f.height >= MIN_FACE_SIDE])
    except Exception as error:  # a file whose faces cannot be found must not be written
        loaded.error = f"face detection failed: {error}"


def _describe_all_faces(loaded: LoadedImage, describe: Describer) -> None:
    if loaded.picture is None:
        return
    try:
        loaded.attributes = [describe(rgb8(frame), faces) for frame, faces in zip(loaded.picture.frames, loaded.faces)]
    except Exception as error:  # the faces are still anonymized, only without the attributes kept
        loaded.attributes = []
        loaded.picture.notes.append(f"attributes not kept: estimating them failed: {error}")


def _anonymize_batch(
    batch: list[LoadedImage], method: Anonymizer, settings: ImageSettings
) -> Iterator[tuple[LoadedImage, list[np.ndarray], int]]:
    """All faces of all images in the batch go through the method in one call, then back into copies."""
    jobs: list[FrameJob] = []
    owners: list[int] = []
    for image_index, loaded in enumerate(batch):
        if loaded.error is not None:
            continue
        for frame_index, (frame, faces) in enumerate(zip(loaded.picture.frames, loaded.faces)):
            name = loaded.task.relative
            seeds = [face_seed(name, frame_index, number, settings.seed) for number in range(len(faces))]
            attributes = loaded.attributes[frame_index] if loaded.attributes else None
            jobs.append(FrameJob(frame, faces, seeds, attributes))
            owners.append(image_index)
    results = anonymize_frames(jobs, method, settings.mask_scale)
    frames: dict[int, list[np.ndarray]] = {}
    fallbacks: dict[int, int] = {}
    for image_index, result in zip(owners, results):
        frames.setdefault(image_index, []).append(result.frame)
        fallbacks[image_index] = fallbacks.get(image_index, 0) + len(result.fallbacks)
        batch[image_index].picture.notes.extend(result.fallbacks)
    for image_index, loaded in enumerate(batch):
        yield loaded, frames.get(image_index, []), fallbacks.get(image_index, 0)


def _write(loaded: LoadedImage, frames: list[np.ndarray], fallbacks: int) -> FileResult:
    task, picture = loaded.task, loaded.picture
    faces = sum(len(per_frame) for per_frame in loaded.faces)
    notes = list(dict.fromkeys(picture.notes))
    try:
        write_atomically(task.output, encode_picture(picture, frames))
    except Exception as error:  # one unwritable file must not stop the batch
        return FileResult(task.label, FAILED, str(task.output), faces, len(frames), fallbacks, f"cannot write: {error}")
    return FileResult(task.label, OK, str(task.output), faces, len(frames), fallbacks, notes=notes)


def detect_images(tasks: list[Task], find_faces: FaceFinder, settings: ImageSettings) -> Iterator[LoadedImage]:
    """Decode and detect, yielding each image with its faces per frame (or its error), in task order."""
    with ThreadPoolExecutor(settings.read_threads) as readers:
        for loaded in _prefetched(readers, tasks, settings):
            _find_all_faces(loaded, find_faces)
            yield loaded
