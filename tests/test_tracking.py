"""The tracker on its own: frames before a face is first detected are covered where the face actually was."""

from __future__ import annotations

from anoncli.faces import Face
from anoncli.tracking import FaceTracker

SIDE = 60.0
SPEED = 12.0  # pixels per frame, to the right: a person walking across a 1080p frame in about 3 s


def true_box(index: int, speed: float = SPEED) -> tuple[float, float, float, float]:
    x = 100.0 + speed * index
    return (x, 200.0, x + SIDE, 200.0 + SIDE)


def covered_share(box: tuple[float, float, float, float], face: tuple[float, float, float, float]) -> float:
    width = max(0.0, min(box[2], face[2]) - max(box[0], face[0]))
    height = max(0.0, min(box[3], face[3]) - max(box[1], face[1]))
    return width * height / (SIDE * SIDE)


def tracked(first_detected: int, speed: float = SPEED, frames: int = 20) -> dict[int, list]:
    """Push a face that moves `speed` pixels every frame but is only detected from `first_detected` on."""
    tracker: FaceTracker[None] = FaceTracker(max_missed=25, lookahead=12)
    released = []
    for index in range(frames):
        faces = [Face(true_box(index, speed), 0.99)] if index >= first_detected else []
        released += tracker.push(None, faces)
    released += tracker.flush()
    return {frame.index: list(frame.faces.values()) for frame in released}


def test_a_moving_face_is_covered_before_its_first_detection():
    frames = tracked(first_detected=8)
    for index in range(8):
        (entry,) = frames[index]
        assert not entry.detected
        # Without following the face's path back, frame 0 would be covered 96 px (1.6 face sizes) off.
        assert covered_share(entry.face.box, true_box(index)) >= 0.95, index


def test_a_still_face_keeps_a_tight_box_before_its_first_detection():
    frames = tracked(first_detected=8, speed=0.0)
    for index in range(8):
        (entry,) = frames[index]
        x1, y1, x2, y2 = entry.face.box
        assert covered_share(entry.face.box, true_box(0, speed=0.0)) == 1.0
        assert x2 - x1 <= SIDE * 1.1 and y2 - y1 <= SIDE * 1.1


def walking(index: int) -> tuple[float, float, float, float]:
    """Standing for five frames, then walking right at 18 pixels a frame."""
    x = 100.0 + 18.0 * max(0, index - 5)
    return (x, 200.0, x + SIDE, 200.0 + SIDE)


def test_between_detections_the_box_leads_a_moving_face():
    """Detected every 5th frame, a face that starts walking (the filter has no speed yet, and smooths the
    detections behind it) is covered whole in every frame in between."""
    tracker: FaceTracker[None] = FaceTracker(max_missed=25, lookahead=12)
    frames = {}
    for index in range(31):
        detected = [Face(walking(index), 0.99)] if index % 5 == 0 else None
        frames.update((frame.index, frame) for frame in tracker.push(None, detected))
    frames.update((frame.index, frame) for frame in tracker.flush())
    shares = []
    for index in range(31):
        boxes = [entry.face.box for entry in frames[index].faces.values()]
        shares.append(max(covered_share(box, walking(index)) for box in boxes))
    assert min(shares) >= 0.99, [round(share, 2) for share in shares]


def test_a_face_the_detector_misses_keeps_its_own_track_beside_a_new_face():
    """Searched for and missed (a head turning away), a face stays covered by its prediction; a new face
    appearing a few face widths away starts its own track rather than taking the missed one's."""
    tracker: FaceTracker[None] = FaceTracker(max_missed=25, lookahead=12)
    frames = {}
    still, newcomer = true_box(0, speed=0.0), (330.0, 200.0, 330.0 + SIDE, 200.0 + SIDE)
    for index in range(20):
        faces = [Face(still, 0.99)] if index < 5 else []
        faces += [Face(newcomer, 0.99)] if index >= 12 else []
        frames.update((frame.index, frame) for frame in tracker.push(None, faces))
    frames.update((frame.index, frame) for frame in tracker.flush())
    for index in range(20):
        boxes = [entry.face.box for entry in frames[index].faces.values()]
        assert max(covered_share(box, still) for box in boxes) >= 0.99, index
        if index >= 2:  # within the lookahead before its first detection
            assert max(covered_share(box, newcomer) for box in boxes) >= 0.99, index
