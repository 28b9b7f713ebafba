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

from anoncli.anonymizers import Method
from anoncli.attributes import Attributes, Describer
from anoncli.faces import Face
from anoncli.frames import FrameJob, anonymize_frames
from anoncli.io.images import (
    DEFAULT_MAX_MEGAPIXELS,
    ImageReadError,
    Picture,
    encode_picture,
    pixels_of,
    read_picture,
    rgb8,
)
from anoncli.io.records import image_record
from anoncli.io.report import FAILED, OK, SKIPPED, FileResult, Report
from anoncli.io.sink import write_atomically
from anoncli.io.sources import Task
from anoncli.pipeline.finder import FaceFinder

MIN_FACE_SIDE = 2.0
BATCH_SIZE = 8  # images whose faces go to the method together
# Decoded pixels each stage holds at most (decoded ahead, in the batch, waiting to be written), one image at
# least: with 8 small photos a batch, a folder of 50-megapixel photos still goes through one at a time.
STAGE_PIXELS = 25_000_000
Item = TypeVar("Item")


@dataclass
class ImageSettings:
    mask_scale: float = 1.3
    batch_size: int = BATCH_SIZE
    keep_metadata: bool = False
    overwrite: bool = False
    max_megapixels: float = DEFAULT_MAX_MEGAPIXELS
    read_threads: int = 2
    seed: int = 0  # another seed draws other fake faces from a generative method


@dataclass
class LoadedImage:
    """An input on its way through the pipeline: decoded picture and faces per frame, or why it failed."""

    task: Task
    picture: Picture | None = None
    error: str | None = None
    faces: list[list[Face]] | None = None  # per frame, once found
    skipped: str | None = None  # why there is nothing to do
    anonymized: list[np.ndarray] = field(default_factory=list)  # the frames with every face replaced
    fallback_faces: int = 0  # faces masked solid because the method failed on them
    stand_in_faces: int = 0  # faces the method drew by its own fallback (ksame: deepprivacy where no mesh fits)
    unconfirmed_faces: int = 0  # detections not confirmed as faces: blurred, not redrawn, by a generative method
    attributes: list[list[Attributes]] = field(default_factory=list)  # per frame and face, with --preserve


def _read(task: Task, settings: ImageSettings) -> LoadedImage:
    if skip := task.reason_to_skip(settings.overwrite):
        return LoadedImage(task, skipped=skip)  # nothing to do: not read
    try:
        return LoadedImage(task, read_picture(task.source, settings.max_megapixels, settings.keep_metadata))
    except ImageReadError as error:
        return LoadedImage(task, error=str(error))


def _prefetched(pool: ThreadPoolExecutor, tasks: Iterable[Task], settings: ImageSettings) -> Iterator[LoadedImage]:
    """Decode ahead in the pool: up to two batches of images, and up to STAGE_PIXELS of them (one image at
    least), counted from their headers before they are decoded."""
    ahead = max(2 * settings.batch_size, 4)
    queue: deque[tuple[Future[LoadedImage], int]] = deque()
    pending = ((task, _decoded_size(task, settings)) for task in tasks)
    waiting = next(pending, None)
    while waiting is not None or queue:
        while waiting is not None and len(queue) < ahead:
            if queue and sum(pixels for _, pixels in queue) + waiting[1] > STAGE_PIXELS:
                break
            queue.append((pool.submit(_read, waiting[0], settings), waiting[1]))
            waiting = next(pending, None)
        future, _ = queue.popleft()
        yield future.result()


def _over_budget(writes: deque[tuple[Future[FileResult], int]]) -> bool:
    return len(writes) > 1 and sum(pixels for _, pixels in writes) > STAGE_PIXELS


def _decoded_size(task: Task, settings: ImageSettings) -> int:
    return 0 if task.reason_to_skip(settings.overwrite) else pixels_of(task.source)


def pixels_held(loaded: LoadedImage) -> int:
    """Pixels of the decoded frames an image in the pipeline holds."""
    frames = loaded.picture.frames if loaded.picture is not None else []
    return sum(frame.shape[0] * frame.shape[1] for frame in frames)


def batched(items: Iterable[Item], size: int, pixels: Callable[[Item], int] = lambda item: 0) -> Iterator[list[Item]]:
    """Consecutive lists of at most `size` items and, past their first item, at most STAGE_PIXELS `pixels`."""
    batch: list[Item] = []
    held = 0
    for item in items:
        cost = pixels(item)
        if batch and held + cost > STAGE_PIXELS:
            yield batch
            batch, held = [], 0
        batch.append(item)
        held += cost
        if len(batch) >= size:
            yield batch
            batch, held = [], 0
    if batch:
        yield batch


def face_seed(name: str, frame: int, index: int, seed: int = 0) -> int:
    """A stable per-face seed, so re-running gives the same output (and another `seed` another face)."""
    return zlib.crc32(f"{seed}\0{name}\0{frame}\0{index}".encode())


def anonymize_images(
    tasks: Iterable[Task],
    finder: FaceFinder,
    method: Method,
    settings: ImageSettings,
    report: Report,
    on_result: Callable[[FileResult], None] = lambda result: None,
    describe: Describer | None = None,
) -> Report:
    """Anonymize every task's image into its output file; results land in `report` in task order.

    Tasks may be a stream (read as the pipeline goes). With `describe`, each face's attributes are estimated
    on the original and handed to the method.
    """
    started = time.perf_counter()
    with ThreadPoolExecutor(settings.read_threads) as readers, ThreadPoolExecutor(1) as writer:
        writes: deque[tuple[Future[FileResult], int]] = deque()  # with the pixels each holds until written
        try:
            loaded_images = _prefetched(readers, tasks, settings)
            for batch in batched(loaded_images, settings.batch_size, pixels_held):
                for loaded in anonymize_loaded(batch, finder, method, settings, describe):
                    if loaded.skipped is not None:
                        notes = [loaded.skipped]
                        result = FileResult(loaded.task.label, SKIPPED, str(loaded.task.output), notes=notes)
                        writes.append((_done(result), 0))
                    elif loaded.error is not None:
                        writes.append((_done(FileResult(loaded.task.label, FAILED, error=loaded.error)), 0))
                    else:
                        writes.append((writer.submit(_write, loaded), 2 * pixels_held(loaded)))
                while writes and (writes[0][0].done() or _over_budget(writes)):
                    _record(report, on_result, writes.popleft()[0].result())
        finally:
            # Also when interrupted: what reached the writer is finished and reported; what was being read is not.
            readers.shutdown(wait=False, cancel_futures=True)
            while writes:
                _record(report, on_result, writes.popleft()[0].result())
            report.seconds = time.perf_counter() - started
    return report


def _record(report: Report, on_result: Callable[[FileResult], None], result: FileResult) -> None:
    report.files.append(result)
    on_result(result)


def anonymize_loaded(
    batch: list[LoadedImage],
    finder: FaceFinder,
    method: Method,
    settings: ImageSettings,
    describe: Describer | None = None,
) -> Iterator[LoadedImage]:
    """Find (where not given), describe and anonymize the faces of a batch of decoded images, each yielded
    with its anonymized frames and counts. Files and arrays go through here alike."""
    for loaded in batch:
        _find_all_faces(loaded, finder)
        if describe is not None:
            _describe_all_faces(loaded, describe)
    yield from _anonymize_batch(batch, method, settings)


def _done(result: FileResult) -> Future[FileResult]:
    future: Future[FileResult] = Future()
    future.set_result(result)
    return future


def _find_all_faces(loaded: LoadedImage, finder: FaceFinder) -> None:
    if loaded.picture is None or loaded.faces is not None:
        return
    try:
        found = [
            finder.find(rgb8(frame), loaded.task.source, index) for index, frame in enumerate(loaded.picture.frames)
        ]
        loaded.faces = [[f for f in faces if f.width >= MIN_FACE_SIDE and f.height >= MIN_FACE_SIDE] for faces in found]
    except Exception as error:  # a file whose faces cannot be found must not be written
        loaded.error = f"faces not found: {error}"


def _describe_all_faces(loaded: LoadedImage, describe: Describer) -> None:
    if loaded.picture is None or loaded.faces is None:
        return
    try:
        loaded.attributes = [describe(rgb8(frame), faces) for frame, faces in zip(loaded.picture.frames, loaded.faces)]
    except Exception as error:  # the faces are still anonymized, only without the attributes kept
        loaded.attributes = []
        loaded.picture.notes.append(f"attributes not kept: estimating them failed: {error}")


def _anonymize_batch(batch: list[LoadedImage], method: Method, settings: ImageSettings) -> Iterator[LoadedImage]:
    """All faces of all images in the batch go through the method in one call, then back into copies."""
    jobs: list[FrameJob] = []
    owners: list[int] = []
    for image_index, loaded in enumerate(batch):
        if loaded.error is not None or loaded.picture is None:
            continue
        for frame_index, (frame, faces) in enumerate(zip(loaded.picture.frames, loaded.faces)):
            name = loaded.task.relative
            seeds = [face_seed(name, frame_index, number, settings.seed) for number in range(len(faces))]
            attributes = loaded.attributes[frame_index] if loaded.attributes else None
            jobs.append(FrameJob(frame, faces, seeds, attributes))
            owners.append(image_index)
    for image_index, result in zip(owners, anonymize_frames(jobs, method, settings.mask_scale)):
        loaded = batch[image_index]
        loaded.anonymized.append(result.frame)
        loaded.fallback_faces += len(result.fallbacks)
        loaded.stand_in_faces += len(result.stand_ins)
        loaded.unconfirmed_faces += result.unconfirmed
        loaded.picture.notes.extend(result.fallbacks + result.stand_ins)
    for loaded in batch:
        if loaded.unconfirmed_faces:
            loaded.picture.notes.append(
                f"{loaded.unconfirmed_faces} detections not confirmed as faces: blurred, no face drawn there"
            )
        yield loaded


def _write(loaded: LoadedImage) -> FileResult:
    task, picture, frames = loaded.task, loaded.picture, loaded.anonymized
    faces = sum(len(per_frame) for per_frame in loaded.faces)
    counts = {"faces": faces, "frames": len(frames), "fallback_faces": loaded.fallback_faces}
    counts["unconfirmed_faces"] = loaded.unconfirmed_faces
    counts["stand_in_faces"] = loaded.stand_in_faces
    try:
        write_atomically(task.output, encode_picture(picture, frames))
    except Exception as error:  # one unwritable file must not stop the batch
        return FileResult(task.label, FAILED, str(task.output), **counts, error=f"cannot write: {error}")
    return FileResult(task.label, OK, str(task.output), **counts, notes=list(dict.fromkeys(picture.notes)))


def detection_records(
    tasks: Iterable[Task], finder: FaceFinder, settings: ImageSettings
) -> Iterator[tuple[FileResult, list[dict]]]:
    """Each task's result and its records as `anoncli detect` writes them (one per frame), in task order."""
    for loaded in detect_images(tasks, finder, settings):
        if loaded.error is not None:
            yield FileResult(loaded.task.label, FAILED, error=loaded.error), []
            continue
        frames = loaded.picture.frames
        records = [
            image_record(loaded.task.label, index, len(frames), frame.shape[1], frame.shape[0], faces)
            for index, (frame, faces) in enumerate(zip(frames, loaded.faces))
        ]
        yield FileResult(loaded.task.label, OK, faces=sum(map(len, loaded.faces))), records


def detect_images(tasks: Iterable[Task], finder: FaceFinder, settings: ImageSettings) -> Iterator[LoadedImage]:
    """Decode and detect, yielding each image with its faces per frame (or its error), in task order."""
    with ThreadPoolExecutor(settings.read_threads) as readers:
        for loaded in _prefetched(readers, tasks, settings):
            _find_all_faces(loaded, finder)
            yield loaded
