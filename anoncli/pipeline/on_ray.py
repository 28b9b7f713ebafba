"""The image and video pipelines on a Ray cluster: the same code, run by actors that each load the detector and
the method once; the driver plans, skips finished outputs and merges the results into one report, in order.

Steps: start or join Ray → start the workers → hand each free worker the next batch of files (images) or the
next video → collect results in submission order → shut the workers down. A worker process that dies is
restarted by Ray and its call retried: the files it was doing are written again, whole (outputs are written
atomically, and the driver decided which outputs already existed before the run, so a retried file counts as
written, not as skipped). A batch whose worker dies on every retry fails alone.
"""

from __future__ import annotations

import functools
import logging
import os
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from anoncli.io.objects import ObjectTask
from anoncli.io.report import FAILED, FileResult, Report
from anoncli.io.sources import Task
from anoncli.pipeline.images import ImageSettings, anonymize_images, batched, detection_records
from anoncli.pipeline.objects import FilePipeline, finished_objects, merged, split_finished, stage, unless_finished
from anoncli.pipeline.video import VideoSettings, anonymize_video

if TYPE_CHECKING:
    from anoncli.api import Anonymizer

# Ray retries a call on a restarted worker this many times before the call's files fail.
RETRIES = 3


@dataclass(frozen=True)
class RayBackend:
    """Where and how wide to run. `address` None: a Ray already started in this process, else a local Ray
    started for the run; "auto" or "ray://host:10001": an existing cluster."""

    address: str | None = None
    workers: int | None = None  # None: one per CPU of the cluster
    gpus_per_worker: float = 0.0

    def describe(self) -> dict:
        return {"backend": "ray", "address": self.address or "local"}


class AnoncliWorker:
    """One Ray actor (its processes are titled ray::AnoncliWorker): the pipelines, with the models `make`
    loads here once (an Anonymizer, or a FaceFinder for `detect`)."""

    def __init__(self, make: Callable[[], Any]) -> None:
        self.tool = make()

    def pid(self) -> int:
        return os.getpid()

    def detect(self, tasks: list[Task], settings: ImageSettings) -> list[tuple[FileResult, list[dict]]]:
        return list(detection_records(tasks, self.tool, settings))

    def images(self, tasks: list[Task], settings: ImageSettings) -> list[FileResult]:
        return file_pipeline(self.tool, settings)(tasks)

    def video(self, task: Task, settings: VideoSettings, tracks: dict | None) -> FileResult:
        return file_pipeline(self.tool, settings, tracks)([task])[0]

    def objects(self, tasks: list[ObjectTask], settings: ImageSettings | VideoSettings) -> list[FileResult]:
        return stage(tasks, file_pipeline(self.tool, settings))


def file_pipeline(
    anonymizer: Anonymizer, settings: ImageSettings | VideoSettings, tracks: dict | None = None
) -> FilePipeline:
    """The image or the video pipeline (as `settings` says) of `anonymizer`, for a list of local tasks."""
    if isinstance(settings, VideoSettings):
        finder = anonymizer.finder(video=True)
        return lambda tasks: [
            anonymize_video(task, finder, anonymizer.method, settings, tracks=tracks, describe=anonymizer.describe)
            for task in tasks
        ]

    def images(tasks: list[Task]) -> list[FileResult]:
        report = Report("anonymize", {})
        anonymize_images(tasks, anonymizer.finder(), anonymizer.method, settings, report, describe=anonymizer.describe)
        return report.files

    return images


@dataclass
class _Call:
    """Work for one worker: the tasks it covers, in order, with the results the driver already knows."""

    tasks: list[Task] | list[ObjectTask]
    known: dict[int, FileResult]  # position in `tasks` → result decided by the driver (finished already)
    submit: Callable[[Any], Any] | None  # worker → Ray object ref; None when nothing is left to do


def anonymize_images_on_ray(
    tasks: Iterable[Task],
    anonymizer: Anonymizer,
    settings: ImageSettings,
    report: Report,
    backend: RayBackend,
    on_result: Callable[[FileResult], None] = lambda result: None,
) -> Report:
    """`anoncli.pipeline.images.anonymize_images` on Ray workers, a batch of files per call."""
    to_do = replace(settings, overwrite=True)  # what existed before the run is skipped here, by the driver

    def calls() -> Iterator[_Call]:
        for chunk in batched(tasks, settings.batch_size):
            known, work = split_finished(chunk, lambda task: task.reason_to_skip(settings.overwrite))
            submit = (lambda worker, work=work: worker.images.remote(work, to_do)) if work else None
            yield _Call(chunk, known, submit)

    return _run(calls(), anonymizer, report, backend, on_result)


def anonymize_videos_on_ray(
    tasks: Iterable[Task],
    anonymizer: Anonymizer,
    settings: VideoSettings,
    report: Report,
    backend: RayBackend,
    on_result: Callable[[FileResult], None] = lambda result: None,
    tracks: dict | None = None,
) -> Report:
    """`anoncli.pipeline.video.anonymize_videos` on Ray workers, a video per call."""
    to_do = replace(settings, overwrite=True)

    def calls() -> Iterator[_Call]:
        for task in tasks:
            known, work = split_finished([task], lambda task: task.reason_to_skip(settings.overwrite))
            submit = (lambda worker, task=task: worker.video.remote(task, to_do, tracks)) if work else None
            yield _Call([task], known, submit)

    return _run(calls(), anonymizer, report, backend, on_result)


def anonymize_objects_on_ray(
    tasks: list[ObjectTask],
    anonymizer: Anonymizer,
    settings: ImageSettings | VideoSettings,
    report: Report,
    backend: RayBackend,
    on_result: Callable[[FileResult], None] = lambda result: None,
) -> Report:
    """Objects (s3://) on Ray workers, each worker downloading, anonymizing and uploading its own."""
    finished = finished_objects(tasks, settings.overwrite)
    to_do = replace(settings, overwrite=True)
    size = 1 if isinstance(settings, VideoSettings) else settings.batch_size

    def calls() -> Iterator[_Call]:
        for chunk in batched(tasks, size):
            known, work = split_finished(chunk, unless_finished(finished))
            submit = (lambda worker, work=work: worker.objects.remote(work, to_do)) if work else None
            yield _Call(chunk, known, submit)

    return _run(calls(), anonymizer, report, backend, on_result)


def _run(
    calls: Iterator[_Call],
    anonymizer: Anonymizer,
    report: Report,
    backend: RayBackend,
    on_result: Callable[[FileResult], None],
) -> Report:
    outcomes = _outcomes(calls, lambda: anonymizer, report, backend)
    return report.collect((result for call, outcome in outcomes for result in _results(call, outcome)), on_result)


def _outcomes(
    calls: Iterator[_Call], make: Callable[[], Any], report: Report, backend: RayBackend
) -> Iterator[tuple[_Call, Any]]:
    """Start Ray and the workers (each loading `make()`), run the calls on them, and stop what was started."""
    import ray

    own_ray = _start_ray(backend)
    workers = []
    try:
        workers = _start_workers(make, backend)
        report.settings.update(backend.describe(), workers=len(workers))
        yield from _in_order(calls, workers)
    finally:
        for worker in workers:
            ray.kill(worker)
        if own_ray:
            ray.shutdown()


def detection_records_on_ray(
    tasks: Iterable[Task],
    finder_settings: tuple,
    settings: ImageSettings,
    report: Report,
    backend: RayBackend,
) -> Iterator[tuple[FileResult, list[dict]]]:
    """`anoncli.pipeline.images.detection_records` on Ray workers: each task's result and records, in order.
    `finder_settings` are `anoncli.api.face_finder`'s arguments, for the workers to build their detectors."""
    from anoncli.api import face_finder

    def calls() -> Iterator[_Call]:
        for chunk in batched(tasks, settings.batch_size):
            yield _Call(chunk, {}, lambda worker, chunk=chunk: worker.detect.remote(chunk, settings))

    for call, outcome in _outcomes(calls(), functools.partial(face_finder, *finder_settings), report, backend):
        if isinstance(outcome, Exception):
            yield from ((result, []) for result in _results(call, outcome))
        else:
            yield from outcome


def _results(call: _Call, outcome: list[FileResult] | FileResult | Exception | None) -> list[FileResult]:
    """The call's results in task order: the driver's own, then the worker's (or its failure) in between."""
    if isinstance(outcome, Exception):
        reason = f"the Ray worker doing this file failed {RETRIES + 1} times ({type(outcome).__name__})"
        work = [task for position, task in enumerate(call.tasks) if position not in call.known]
        done = [FileResult(task.label, FAILED, str(task.output), error=reason) for task in work]
    else:
        done = outcome if isinstance(outcome, list) else [outcome] if outcome is not None else []
    return list(merged(call.tasks, call.known, done))


def _in_order(calls: Iterator[_Call], workers: list) -> Iterator[tuple[_Call, Any]]:
    """Each call with its outcome (the worker's return value, or the error that ended it), in the calls'
    order, keeping every worker busy and no more than one call per worker submitted."""
    import ray

    idle = deque(workers)
    running: dict[Any, tuple[int, Any, _Call]] = {}  # object ref → (call number, worker, call)
    finished: dict[int, tuple[_Call, Any]] = {}
    submitted = returned = 0
    pending = iter(calls)
    exhausted = False
    while True:
        while idle and not exhausted:
            call = next(pending, None)
            if call is None:
                exhausted = True
            elif call.submit is None:
                finished[submitted] = (call, None)
                submitted += 1
            else:
                worker = idle.popleft()
                running[call.submit(worker)] = (submitted, worker, call)
                submitted += 1
        while returned in finished:
            yield finished.pop(returned)
            returned += 1
        if not running:
            if exhausted and not finished:
                return
            continue
        (ref,), _ = ray.wait(list(running), num_returns=1)
        number, worker, call = running.pop(ref)
        try:
            outcome = ray.get(ref)
        except ray.exceptions.RayError as error:
            outcome = error
        finished[number] = (call, outcome)
        idle.append(worker)


def _start_ray(backend: RayBackend) -> bool:
    """Join or start Ray; True when this run started it (and so stops it)."""
    import ray

    if ray.is_initialized():
        return False
    # Ray's own progress lines would mix with anoncli's on stderr; its logs stay in its session folder.
    options = {"logging_level": logging.ERROR, "log_to_driver": False, "configure_logging": True}
    if backend.address is None:
        ray.init(num_cpus=os.cpu_count(), include_dashboard=False, **options)
    else:
        ray.init(address=backend.address, **options)
    return True


def _start_workers(make: Callable[[], Any], backend: RayBackend) -> list:
    import ray

    count = backend.workers or max(1, int(ray.cluster_resources().get("CPU", 1)))
    actor = ray.remote(AnoncliWorker).options(
        num_cpus=1,
        num_gpus=backend.gpus_per_worker,
        max_restarts=-1,
        max_task_retries=RETRIES,
    )
    workers = [actor.remote(make) for _ in range(count)]
    ray.get([worker.pid.remote() for worker in workers])  # models loaded everywhere, or the error now
    return workers
