"""The video pipeline: decode → detect (every k-th frame) → track → anonymize → encode, in constant memory.

Frames leave the tracker `lookahead` frames after they enter it, so a face first detected now is also
covered in the frames just before; faces the detector misses for up to `max_missed` frames keep their
tracked boxes. Faces from a batch of frames go through the method together.

Detection is full (the whole frame, and the frame at native resolution for small faces) a few times a
second; in between, the native-resolution search looks only around the faces the tracks expect. A new small
face is thus found at the next full detection at the latest, which lies within the lookahead, so the
frames before it are covered too.
"""

from __future__ import annotations

import os
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from anoncli.anonymizers import Method
from anoncli.attributes import Describer, TrackVotes
from anoncli.faces import Face
from anoncli.frames import FrameJob, anonymize_frames
from anoncli.io.report import FAILED, OK, SKIPPED, FileResult, Report
from anoncli.io.sink import temporary_beside
from anoncli.io.sources import Task
from anoncli.io.video import (
    DecodedFrame,
    EncoderSettings,
    VideoInfo,
    VideoReadError,
    VideoWriter,
    decode_frames,
    probe_video,
)
from anoncli.pipeline.finder import FaceFinder
from anoncli.pipeline.images import batched, face_seed
from anoncli.tracking import FaceTracker, TrackedFace, TrackedFrame, track_seed

# Video detectors skip the upscaled pass (tracking across frames makes up for a single miss) and need the
# whole-frame pass only for faces too large for the native one.
VIDEO_DETECTOR_OPTIONS = {"max_upscale": 1.0, "global_side": 640}


CONFIRMED_DETECTIONS = 3


@dataclass
class Frame:
    """What a tracked video frame carries: the decoded frame (to re-encode untouched when it has no face) and
    its upright RGB pixels."""

    decoded: DecodedFrame
    rgb: np.ndarray


@dataclass
class VideoSettings:
    mask_scale: float = 1.3
    batch_size: int = 8  # frames whose faces go to the method together
    detect_every: int = 1
    max_missed_seconds: float = 1.0
    lookahead_seconds: float = 0.5
    full_detection_seconds: float = 0.2  # a full search at least this often; at most the lookahead
    identity_lock: bool = True
    overwrite: bool = False
    allow_truncated: bool = False  # write what decodes of a video shorter than its container says, flagged
    encoder: EncoderSettings = field(default_factory=EncoderSettings)


@dataclass
class VideoStats:
    frames: int = 0
    faces: int = 0
    tracks: int = 0
    detections_per_track: Counter = field(default_factory=Counter)
    predicted_frames: int = 0  # frames where some face was covered by a track's prediction, not a detection
    fallback_faces: int = 0
    stand_in_faces: int = 0
    unconfirmed_faces: int = 0
    audio_packets: int = 0
    decoded_span: DecodedSpan = field(default_factory=lambda: DecodedSpan())


@dataclass
class DecodedSpan:
    """How much of a video decoded: frames, and the times of the first and last of them."""

    frames: int = 0
    first: float | None = None
    last: float | None = None

    def add(self, decoded: DecodedFrame) -> None:
        self.frames += 1
        if decoded.frame.time is not None:
            self.first = decoded.frame.time if self.first is None else self.first
            self.last = decoded.frame.time

    def shortfall(self, info: VideoInfo) -> str | None:
        """Why the decoded frames fall short of what the container announces (a truncated or damaged file),
        or None when they do not. One frame interval of slack on the duration for a last frame's own length."""
        interval = 1 / float(info.fps) if info.fps else 0.04
        seconds = 0.0 if self.first is None or self.last is None else self.last - self.first + interval
        if self.frames >= info.frames and seconds >= info.duration - 2 * interval:
            return None
        return (
            f"truncated: the container announces {info.frames} frames ({info.duration:.2f} s), only "
            f"{self.frames} frames ({seconds:.2f} s) could be decoded"
        )


def tracker_for(info: VideoInfo, settings: VideoSettings) -> FaceTracker:
    fps = float(info.fps) if info.fps else 25.0
    max_missed = max(settings.detect_every, round(fps * settings.max_missed_seconds))
    lookahead = max(settings.detect_every, round(fps * settings.lookahead_seconds))
    return FaceTracker(max_missed=max_missed, lookahead=lookahead)


def full_detection_every(info: VideoInfo, settings: VideoSettings, lookahead: int) -> int:
    """Every how many detections the search is full: often enough that a full one falls in every lookahead."""
    fps = float(info.fps) if info.fps else 25.0
    frames = min(max(1, round(fps * settings.full_detection_seconds)), lookahead)
    return max(1, frames // settings.detect_every)


def track_video(
    source: Path,
    info: VideoInfo,
    finder: FaceFinder,
    settings: VideoSettings,
    on_tracked: Callable[[TrackedFrame], None] = lambda frame: None,
) -> Iterator[TrackedFrame[Frame]]:
    """Every frame, in order, with its decoded frame and upright RGB as payload and its tracked faces.

    `on_tracked` sees each frame as soon as its faces are linked to tracks, a lookahead before it is yielded.
    """
    tracker: FaceTracker[Frame] = tracker_for(info, settings)
    full_every = full_detection_every(info, settings, tracker.lookahead)
    detections = 0
    for decoded in decode_frames(source):
        rgb = decoded.upright_rgb(info.rotation)
        faces = None
        if decoded.index % settings.detect_every == 0:
            expected = None if detections % full_every == 0 else tracker.expected_boxes()
            faces = finder.find(rgb, source, decoded.index, expected)
            detections += 1
        ready = tracker.push(Frame(decoded, rgb), faces)
        on_tracked(tracker.newest)
        yield from ready
    yield from tracker.flush()


def vote_attributes(describe: Describer, votes: TrackVotes) -> Callable[[TrackedFrame], None]:
    """Estimate the attributes of every detected face of a tracked frame and count them for its track."""

    def observe(tracked: TrackedFrame) -> None:
        detected = [entry for entry in tracked.faces.values() if entry.detected]
        if not detected:
            return
        try:
            estimates = describe(tracked.payload.rgb, [entry.face for entry in detected])
        except Exception:  # no vote from this frame; the faces are anonymized all the same
            return
        for entry, estimate in zip(detected, estimates):
            votes.add(entry.track_id, estimate)

    return observe


def replay_tracks(
    source: Path, info: VideoInfo, tracks: dict[int, list[tuple[int, Face, bool]]]
) -> Iterator[TrackedFrame[Frame]]:
    """Like `track_video`, with the faces taken from a tracks file; a frame the file lacks is an error,
    since passing it through could expose a face."""
    for decoded in decode_frames(source):
        if decoded.index not in tracks:
            raise VideoReadError(f"the tracks file has no record for frame {decoded.index}")
        faces = {tid: TrackedFace(tid, face, detected) for tid, face, detected in tracks[decoded.index]}
        yield TrackedFrame(decoded.index, Frame(decoded, decoded.upright_rgb(info.rotation)), faces)


def anonymize_videos(
    tasks: Iterable[Task],
    finder: FaceFinder,
    method: Method,
    settings: VideoSettings,
    report: Report,
    on_result: Callable[[FileResult], None] = lambda result: None,
    on_start: Callable[[Task], Callable[[int, int], None]] = lambda task: lambda done, total: None,
    tracks: dict[int, list[tuple[int, Face, bool]]] | None = None,
    describe: Describer | None = None,
) -> Report:
    """Anonymize each task's video in turn (skipping finished outputs unless `settings.overwrite`); results
    land in `report`. `on_start(task)` gives the progress callback for that video."""

    def results() -> Iterator[FileResult]:
        for task in tasks:
            if skip := task.reason_to_skip(settings.overwrite):
                yield FileResult(task.label, SKIPPED, str(task.output), notes=[skip])
            else:
                yield anonymize_video(task, finder, method, settings, on_start(task), tracks, describe)

    return report.collect(results(), on_result)


def anonymize_video(
    task: Task,
    finder: FaceFinder,
    method: Method,
    settings: VideoSettings,
    on_frame: Callable[[int, int], None] = lambda done, total: None,
    tracks: dict[int, list[tuple[int, Face, bool]]] | None = None,
    describe: Describer | None = None,
) -> FileResult:
    """Anonymize one video into task.output (written under a temporary name, then renamed).

    With `tracks` (from `anoncli track`), those faces are used and no detector runs. With `describe`, the
    attributes to keep are estimated on detected faces and voted per track.
    """
    started = time.perf_counter()
    try:
        info = probe_video(task.source)
    except VideoReadError as error:
        return FileResult(task.label, FAILED, str(task.output), error=str(error))
    temporary = temporary_beside(task.output)
    stats = VideoStats()
    truncation: str | None = None
    writer = None
    encoder = ThreadPoolExecutor(1)  # encoding overlaps with detecting and anonymizing the next frames
    in_flight: Future | None = None
    try:
        writer = VideoWriter(task.source, temporary, info, settings.encoder)
        votes = TrackVotes() if describe is not None else None
        observe = vote_attributes(describe, votes) if describe is not None else lambda frame: None
        if tracks is not None:
            frames = _observed(replay_tracks(task.source, info, tracks), observe)
        else:
            frames = track_video(task.source, info, finder, settings, observe)
        with method.following_tracks(float(info.fps)):
            for batch in batched(frames, settings.batch_size):
                writes = _anonymize_batch(batch, task.relative, method, settings, info, writer, stats, votes)
                if in_flight is not None:
                    in_flight.result()  # at most one batch waits for the encoder; its errors surface here
                in_flight = encoder.submit(_write_all, writes)
                on_frame(stats.frames, info.frames)
        if in_flight is not None:
            in_flight.result()
        truncation = stats.decoded_span.shortfall(info)
        if truncation and not settings.allow_truncated:
            raise VideoReadError(f"{truncation}; --allow-truncated writes them, flagged in the report")
        writer.close()
        stats.audio_packets = writer.audio_copied
        writer = None
        output_info = probe_video(temporary)  # before the rename: from here to the result, no work is left
        os.replace(temporary, task.output)
    except BaseException as error:  # one bad video must not stop the batch; none may leave half a file
        encoder.shutdown(wait=True)
        if writer is not None:
            writer.abort()
        temporary.unlink(missing_ok=True)
        if not isinstance(error, Exception):
            raise  # interrupted: the run stops here
        message = str(error) if isinstance(error, VideoReadError) else f"{type(error).__name__}: {error}"
        return FileResult(task.label, FAILED, str(task.output), stats.faces, stats.frames, error=message)
    encoder.shutdown()
    return FileResult(
        task.label,
        OK,
        str(task.output),
        stats.faces,
        stats.frames,
        stats.fallback_faces,
        unconfirmed_faces=stats.unconfirmed_faces,
        stand_in_faces=stats.stand_in_faces,
        notes=[truncation] if truncation else [],
        video={
            "truncated": truncation is not None,
            "tracks": stats.tracks,
            # Tracks detected on at least CONFIRMED_DETECTIONS frames: the people, without the one-off
            # detections that are covered all the same.
            "confirmed_tracks": sum(n >= CONFIRMED_DETECTIONS for n in stats.detections_per_track.values()),
            "frames_with_predicted_faces": stats.predicted_frames,
            "fps_in": str(info.fps),
            "fps_out": str(output_info.fps),
            "frames_in": info.frames,
            "frames_out": output_info.frames,
            "duration_in": round(info.duration, 3),
            "duration_out": round(output_info.duration, 3),
            "bitrate_in": info.bitrate,
            "bitrate_out": output_info.bitrate,
            "audio_packets_copied": stats.audio_packets,
            "seconds": round(time.perf_counter() - started, 2),
        },
    )


def _observed(frames: Iterator[TrackedFrame], observe: Callable[[TrackedFrame], None]) -> Iterator[TrackedFrame]:
    for frame in frames:
        observe(frame)
        yield frame


def _anonymize_batch(
    batch: list[TrackedFrame],
    name: str,
    method: Method,
    settings: VideoSettings,
    info: VideoInfo,
    writer: VideoWriter,
    stats: VideoStats,
    votes: TrackVotes | None,
) -> list[tuple[Callable, tuple]]:
    """Anonymize the faces of a batch of frames; return the encoder calls that write them, in order."""
    jobs = []
    for tracked in batch:
        rgb = tracked.payload.rgb
        entries = list(tracked.faces.values())
        if settings.identity_lock:
            seeds = [track_seed(name, entry.track_id) for entry in entries]
        else:
            seeds = [face_seed(name, tracked.index, number) for number in range(len(entries))]
        attributes = None if votes is None else [votes.decided(entry.track_id) for entry in entries]
        jobs.append(FrameJob(rgb, [entry.face for entry in entries], seeds, attributes))
        stats.faces += len(entries)
        stats.predicted_frames += any(not entry.detected for entry in entries)
        stats.tracks = max([stats.tracks, *tracked.faces.keys()])
        stats.detections_per_track.update(entry.track_id for entry in entries if entry.detected)
    writes: list[tuple[Callable, tuple]] = []
    for tracked, job, result in zip(batch, jobs, anonymize_frames(jobs, method, settings.mask_scale)):
        decoded = tracked.payload.decoded
        stats.fallback_faces += len(result.fallbacks)
        stats.stand_in_faces += len(result.stand_ins)
        stats.unconfirmed_faces += result.unconfirmed
        if job.faces:
            writes.append((writer.write_rgb, (result.frame, decoded.pts, info.rotation)))
        else:
            writes.append((writer.write, (decoded.frame, decoded.pts)))
        stats.frames += 1
        stats.decoded_span.add(decoded)
    return writes


def _write_all(writes: list[tuple[Callable, tuple]]) -> None:
    for write, arguments in writes:
        write(*arguments)
