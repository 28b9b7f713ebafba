"""Face tracks across video frames: SORT-style Kalman filtering with Hungarian assignment on IoU, plus a
lookahead buffer so no frame of a face goes uncovered.

`FaceTracker.push(frame, faces)` takes frames in order (faces = None on frames where the detector did not
run) and hands back frames `lookahead` frames later, each with the boxes of every live track: detected,
predicted while the detector misses the face (up to `max_missed` frames), or filled in backwards for the
frames before a face was first found. A track re-found after a gap has the gap interpolated.
"""

from __future__ import annotations

import zlib
from collections import deque
from dataclasses import dataclass, field
from typing import Generic, TypeVar

import numpy as np

from anoncli.faces import Box, Face, box_centre, box_iou, face_size

Payload = TypeVar("Payload")
MATCH_IOU = 0.15
# A detection that does not overlap a track's prediction still continues it when it lies within reach: at most
# this many face sizes away per frame since the track was last searched for, at a similar size (a face the
# detector looked for and missed stays covered by its own prediction instead). A face detected
# every few frames can move past its own width between detections; a new track there would leave the frames
# in between to a prediction that stands still.
MAX_SHIFT_PER_FRAME = 0.5
SIZE_RATIO = 1.5
# A predicted box grows by this fraction per frame without a detection (up to GROWTH_LIMIT), since the
# face's true position is less certain the longer it goes unseen.
GROWTH_PER_FRAME = 0.03
GROWTH_LIMIT = 0.5
VELOCITY_DAMPING = 0.7
# Filled backwards, a face's box also follows the path its first two detections point to, at most this many
# face sizes back: a face walking into view was already moving before the detector found it.
BACKFILL_MAX_SHIFT = 2.0


@dataclass
class TrackedFace:
    track_id: int
    face: Face
    detected: bool


@dataclass
class TrackedFrame(Generic[Payload]):
    index: int
    payload: Payload
    faces: dict[int, TrackedFace] = field(default_factory=dict)


class KalmanBox:
    """Constant-velocity Kalman filter on (centre x, centre y, width, height)."""

    def __init__(self, box: Box) -> None:
        x1, y1, x2, y2 = box
        self.state = np.array([(x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1, 0, 0, 0, 0], np.float64)
        size = face_size(box)
        self.covariance = np.diag([size**2 * 0.01] * 4 + [size**2 * 0.1] * 4)
        self.transition = np.eye(8)
        self.transition[:4, 4:] = np.eye(4)
        self.observation = np.eye(4, 8)

    def _noise(self) -> tuple[np.ndarray, np.ndarray]:
        size = max(self.state[2], self.state[3], 1.0)
        process = np.diag([(0.05 * size) ** 2] * 2 + [(0.02 * size) ** 2] * 2 + [(0.02 * size) ** 2] * 4)
        measurement = np.diag([(0.05 * size) ** 2] * 4)
        return process, measurement

    def predict(self) -> None:
        process, _ = self._noise()
        self.state = self.transition @ self.state
        self.state[2:4] = np.maximum(self.state[2:4], 1.0)
        self.covariance = self.transition @ self.covariance @ self.transition.T + process

    def update(self, box: Box) -> None:
        _, measurement = self._noise()
        x1, y1, x2, y2 = box
        observed = np.array([(x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1])
        innovation = observed - self.observation @ self.state
        gain_denominator = self.observation @ self.covariance @ self.observation.T + measurement
        gain = self.covariance @ self.observation.T @ np.linalg.inv(gain_denominator)
        self.state = self.state + gain @ innovation
        self.covariance = (np.eye(8) - gain @ self.observation) @ self.covariance

    def box(self, grow: float = 0.0) -> Box:
        return grown_box(_corners(self.state), grow)

    def leading_box(self, grow: float = 0.0) -> Box:
        """The predicted box, grown, and stretched one frame's motion ahead: a moving face is covered where it
        is going, not only where the filter, which lags a turn or a start, puts it."""
        x1, y1, x2, y2 = self.box(grow)
        velocity_x, velocity_y = self.state[4:6]
        return (
            x1 + min(velocity_x, 0.0),
            y1 + min(velocity_y, 0.0),
            x2 + max(velocity_x, 0.0),
            y2 + max(velocity_y, 0.0),
        )

    def expected_box(self) -> Box:
        """Where the box should be one frame on, without moving the filter."""
        return _corners(self.transition @ self.state)


def _corners(state: np.ndarray) -> Box:
    cx, cy, width, height = state[:4]
    return (cx - width / 2, cy - height / 2, cx + width / 2, cy + height / 2)


def grown_box(box: Box, grow: float) -> Box:
    x1, y1, x2, y2 = box
    dx, dy = (x2 - x1) * grow / 2, (y2 - y1) * grow / 2
    return (x1 - dx, y1 - dy, x2 + dx, y2 + dy)


@dataclass
class _Track:
    track_id: int
    filter: KalmanBox
    landmarks: tuple | None
    score: float
    first_seen: tuple[int, Box]  # frame index and box of the first detection
    missed: int = 0
    # Of the frames since the last detection, those on which no detector ran (`--detect-every`): only over
    # these may the face have moved out of reach of its prediction unnoticed.
    unsearched: int = 0
    detections: int = 1
    # Once a detection of the track was not confirmed as a face, its faces are covered but not redrawn.
    confirmed: bool = True


def track_seed(name: str, track_id: int) -> int:
    """One seed per person per video: a generative method draws one fake face for the whole track."""
    return zlib.crc32(f"{name}\0track\0{track_id}".encode())


class FaceTracker(Generic[Payload]):
    def __init__(self, max_missed: int, lookahead: int) -> None:
        self.max_missed = max_missed
        self.lookahead = lookahead
        self.tracks: list[_Track] = []
        self.next_id = 1
        self.buffer: deque[TrackedFrame[Payload]] = deque()
        self.index = 0
        # The frame pushed last, its faces already linked to tracks, before the lookahead lets it go.
        self.newest: TrackedFrame[Payload] | None = None

    def push(self, payload: Payload, faces: list[Face] | None) -> list[TrackedFrame[Payload]]:
        """Add the next frame (faces None: not detected on this frame); return frames now final."""
        frame = TrackedFrame(self.index, payload)
        self.newest = frame
        self.index += 1
        for track in self.tracks:
            if track.missed:
                # Unseen, a face more likely slows or stops than keeps its last speed: damp the drift.
                track.filter.state[4:] *= VELOCITY_DAMPING
            track.filter.predict()
        if faces is not None:
            self._associate(frame, faces)
        else:
            for track in self.tracks:
                track.missed += 1
                track.unsearched += 1
        self.tracks = [t for t in self.tracks if t.missed <= self.max_missed]
        for track in self.tracks:
            if track.track_id not in frame.faces:
                grow = min(GROWTH_LIMIT, GROWTH_PER_FRAME * track.missed)
                face = Face(track.filter.leading_box(grow), track.score, None, track.confirmed)
                frame.faces[track.track_id] = TrackedFace(track.track_id, face, detected=False)
        self.buffer.append(frame)
        ready = []
        while len(self.buffer) > self.lookahead:
            ready.append(self.buffer.popleft())
        return ready

    def expected_boxes(self) -> list[Box]:
        """Where the live tracks' faces should be in the next frame pushed."""
        return [track.filter.expected_box() for track in self.tracks]

    def flush(self) -> list[TrackedFrame[Payload]]:
        ready = list(self.buffer)
        self.buffer.clear()
        return ready

    def _associate(self, frame: TrackedFrame[Payload], faces: list[Face]) -> None:
        predicted = np.array([t.filter.box() for t in self.tracks]).reshape(-1, 4)
        detected = np.array([f.box for f in faces]).reshape(-1, 4)
        matches: list[tuple[int, int]] = []
        if len(predicted) and len(detected):
            # Imported here: SciPy's optimizer takes a quarter second to load, which photo runs do not need.
            from scipy.optimize import linear_sum_assignment

            score = self._match_scores(predicted, detected)
            rows, cols = linear_sum_assignment(-score)
            matches = [(r, c) for r, c in zip(rows, cols) if score[r, c] > 0]
        matched_tracks = {r for r, _ in matches}
        matched_faces = {c for _, c in matches}
        for row, col in matches:
            track, face = self.tracks[row], faces[col]
            gap = track.missed
            track.filter.update(face.box)
            track.landmarks, track.score, track.missed, track.unsearched = face.landmarks, face.score, 0, 0
            track.detections += 1
            track.confirmed = track.confirmed and face.confirmed
            # The smoothed box steadies the mask, the detection is where the face is: cover both.
            covered = Face(_union(track.filter.box(), face.box), face.score, face.landmarks, track.confirmed)
            frame.faces[track.track_id] = TrackedFace(track.track_id, covered, detected=True)
            if gap:
                self._interpolate_gap(track.track_id, covered.box)
            if track.detections == 2:
                self._follow_path_backwards(track, frame.index, face.box)
        for row, track in enumerate(self.tracks):
            if row not in matched_tracks:
                track.missed += 1
        for col, face in enumerate(faces):
            if col in matched_faces:
                continue
            first_seen = (frame.index, face.box)
            track = _Track(
                self.next_id, KalmanBox(face.box), face.landmarks, face.score, first_seen, confirmed=face.confirmed
            )
            self.next_id += 1
            self.tracks.append(track)
            frame.faces[track.track_id] = TrackedFace(track.track_id, face, detected=True)
            self._fill_backwards(track.track_id, face)

    def _match_scores(self, predicted: np.ndarray, detected: np.ndarray) -> np.ndarray:
        """Track × detection: the IoU where it reaches MATCH_IOU, else a small score for detections within
        reach (nearer, higher), else 0 (no match)."""
        overlap = box_iou(predicted, detected)
        centres = (predicted[:, None, :2] + predicted[:, None, 2:]) / 2 - (
            detected[None, :, :2] + detected[None, :, 2:]
        ) / 2
        distance = np.hypot(centres[..., 0], centres[..., 1])
        sizes = np.maximum(predicted[:, 2:] - predicted[:, :2], 1.0).max(axis=1)
        found = np.maximum(detected[:, 2:] - detected[:, :2], 1.0).max(axis=1)
        frames = np.array([track.unsearched + 1 for track in self.tracks], np.float64)
        reach = MAX_SHIFT_PER_FRAME * sizes * frames
        ratio = found[None, :] / sizes[:, None]
        within = (distance <= reach[:, None]) & (ratio <= SIZE_RATIO) & (ratio >= 1 / SIZE_RATIO)
        nearby = np.where(within, MATCH_IOU * (1 - distance / reach[:, None]) / 2, 0.0)
        return np.where(overlap >= MATCH_IOU, overlap, nearby)

    def _fill_backwards(self, track_id: int, face: Face) -> None:
        """A face first seen now was likely there in the buffered frames before: cover it there too."""
        for earlier in self.buffer:
            if track_id not in earlier.faces:
                grown = Face(grown_box(face.box, GROWTH_PER_FRAME * 2), face.score, None, face.confirmed)
                earlier.faces[track_id] = TrackedFace(track_id, grown, detected=False)

    def _follow_path_backwards(self, track: _Track, index: int, box: Box) -> None:
        """Widen the boxes filled in before the first detection to also cover where the face was on the path
        from the first detection to the second, followed backwards."""
        first_index, first_box = track.first_seen
        frames = index - first_index  # ≥ 1: a track takes at most one detection per frame
        (first_x, first_y), (x, y) = box_centre(first_box), box_centre(box)
        velocity_x, velocity_y = (x - first_x) / frames, (y - first_y) / frames
        limit = BACKFILL_MAX_SHIFT * face_size(first_box)
        for earlier in self.buffer:
            entry = earlier.faces.get(track.track_id)
            if earlier.index >= first_index or entry is None or entry.detected:
                continue
            frames_back = first_index - earlier.index
            dx = float(np.clip(velocity_x * frames_back, -limit, limit))
            dy = float(np.clip(velocity_y * frames_back, -limit, limit))
            path = (first_box[0] - dx, first_box[1] - dy, first_box[2] - dx, first_box[3] - dy)
            union = _union(entry.face.box, grown_box(path, GROWTH_PER_FRAME * 2))
            face = Face(union, entry.face.score, None, entry.face.confirmed)
            earlier.faces[track.track_id] = TrackedFace(track.track_id, face, False)

    def _interpolate_gap(self, track_id: int, box: Box) -> None:
        """Replace the predictions made during a gap, still in the buffer, by a straight path to `box`."""
        gap_frames = []
        anchor = None
        for earlier in reversed(self.buffer):
            entry = earlier.faces.get(track_id)
            if entry is None:
                return
            if entry.detected:
                anchor = entry.face.box
                break
            gap_frames.append(earlier)
        if anchor is None or not gap_frames:
            return
        steps = len(gap_frames) + 1
        for offset, earlier in enumerate(reversed(gap_frames), start=1):
            weight = offset / steps
            path = tuple(a + (b - a) * weight for a, b in zip(anchor, box))
            # Keep the union of the interpolated and the predicted box: both are guesses, cover both.
            guess = earlier.faces[track_id].face
            face = Face(_union(path, guess.box), guess.score, None, guess.confirmed)
            earlier.faces[track_id] = TrackedFace(track_id, face, False)


def _union(first: Box, second: Box) -> tuple:
    return (min(first[0], second[0]), min(first[1], second[1]), max(first[2], second[2]), max(first[3], second[3]))
