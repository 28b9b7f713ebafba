"""MediaPipe FaceMesh (468 points) fitted on a detector's crop, and the mesh geometry the composites use.

FaceMesh's own detector is short-range: it finds a face that fills its image. It is therefore run on a
square of FIT_CONTEXT × the detector's box, and the mesh is checked to lie on that box, so a neighbour's face
in the square is never taken for the one asked about.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import cv2
import numpy as np

from anoncli.faces import Box, centred_square, cut_square, face_size

MESH_POINTS = 468
# 0.10.21 is the last MediaPipe with FaceMesh inside the wheel; its metadata asks for a second OpenCV and jax,
# which FaceMesh does not use.
MEDIAPIPE_INSTALL = "pip install --no-deps mediapipe==0.10.21 absl-py"
FIT_CONTEXT = 1.8
# FaceMesh resizes to 192² itself; a larger square only costs time.
FIT_SIDE = 384
# A mesh whose centre lies further than this share of the box size from the box centre, or whose extent is
# not within these factors of the box size, belongs to another face or is no fit.
MAX_CENTRE_OFFSET = 0.35
EXTENT_RANGE = (0.6, 2.2)

# Indices of the mesh topology (MediaPipe's face_mesh_connections), left and right as the person's own.
FACE_OVAL = (10, 338, 297, 332, 284, 251, 389, 356, 454, 323, 361, 288, 397, 365, 379, 378, 400, 377, 152, 148,
             176, 149, 150, 136, 172, 58, 132, 93, 234, 127, 162, 21, 54, 103, 67, 109)  # fmt: skip
INNER_LIP_LOWER = (78, 95, 88, 178, 87, 14, 317, 402, 318, 324, 308)
OUTER_LIP_LOWER = (61, 146, 91, 181, 84, 17, 314, 405, 321, 375, 291)
RIGHT_EYE_UPPER = (246, 161, 160, 159, 158, 157, 173)
RIGHT_EYE_LOWER = (7, 163, 144, 145, 153, 154, 155)
LEFT_EYE_UPPER = (466, 388, 387, 386, 385, 384, 398)
LEFT_EYE_LOWER = (249, 390, 373, 374, 380, 381, 382)
# Points whose opening (lower minus upper, in the face's own frame) is an expression, not an identity.
MOUTH_GAP = (13, 14)
RIGHT_EYE_GAP = (159, 145)
LEFT_EYE_GAP = (386, 374)
# The parts of a face `--method shape --keep` names (MediaPipe's contour sets; the outline is FACE_OVAL).
FACE_PARTS = {
    "eyes": (7, 33, 133, 144, 145, 153, 154, 155, 157, 158, 159, 160, 161, 163, 173, 246, 249, 263, 362, 373, 374,
             380, 381, 382, 384, 385, 386, 387, 388, 390, 398, 466),
    "eyebrows": (46, 52, 53, 55, 63, 65, 66, 70, 105, 107, 276, 282, 283, 285, 293, 295, 296, 300, 334, 336),
    "nose": (1, 2, 4, 5, 6, 19, 45, 48, 64, 94, 97, 98, 115, 168, 195, 197, 220, 275, 278, 294, 326, 327, 344, 440),
    "mouth": (0, 13, 14, 17, 37, 39, 40, 61, 78, 80, 81, 82, 84, 87, 88, 91, 95, 146, 178, 181, 185, 191, 267, 269,
              270, 291, 308, 310, 311, 312, 314, 317, 318, 321, 324, 375, 402, 405, 409, 415),
    "outline": FACE_OVAL,
}  # fmt: skip
CHIN = 152
NOSE_TIP = 1
RIGHT_MOUTH_CORNER, LEFT_MOUTH_CORNER = 61, 291
RIGHT_EYE_OUTER = 33
LEFT_EYE_OUTER = 263
FOREHEAD = 10
# Triangles joining the face outline to the ring of points `with_margin_ring` appends after the mesh's own.
RING_TRIANGLES = np.array(
    [
        triangle
        for i in range(len(FACE_OVAL))
        for triangle in (
            (FACE_OVAL[i], FACE_OVAL[(i + 1) % len(FACE_OVAL)], MESH_POINTS + i),
            (FACE_OVAL[(i + 1) % len(FACE_OVAL)], MESH_POINTS + (i + 1) % len(FACE_OVAL), MESH_POINTS + i),
        )
    ]
)


class FaceMesher:
    """FaceMesh on one face at a time; `fit` returns (468, 3) points in the given image's pixels or None."""

    def __init__(self, min_confidence: float = 0.5) -> None:
        with _native_stderr_silenced():
            from mediapipe.python.solutions.face_mesh import FaceMesh

            self._mesh = FaceMesh(
                static_image_mode=True, max_num_faces=1, refine_landmarks=False, min_detection_confidence=min_confidence
            )
            # The graph loads its models on its own threads when it first runs: run it once here, silenced.
            self._mesh.process(np.zeros((FIT_SIDE, FIT_SIDE, 3), np.uint8))
        self._landmarks_seen = False

    def fit(self, image: np.ndarray, box: Box) -> np.ndarray | None:
        """The mesh of the face in `box` of `image` (RGB uint8): x, y in the image's pixels, z (depth, smaller
        is nearer) in the same units; None when FaceMesh finds no face there."""
        square = centred_square(box, FIT_CONTEXT * face_size(box))
        pixels, _ = cut_square(image, square)
        scale = min(1.0, FIT_SIDE / square.side)
        if scale < 1.0:
            pixels = cv2.resize(pixels, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        if self._landmarks_seen:
            result = self._mesh.process(np.ascontiguousarray(pixels))
        else:  # the native side warns once, the first time it projects landmarks
            with _native_stderr_silenced():
                result = self._mesh.process(np.ascontiguousarray(pixels))
            self._landmarks_seen = bool(result.multi_face_landmarks)
        if not result.multi_face_landmarks:
            return None
        side = pixels.shape[0] / scale
        points = np.array([(p.x, p.y, p.z) for p in result.multi_face_landmarks[0].landmark], np.float32)
        points *= side
        points[:, 0] += square.x
        points[:, 1] += square.y
        return points if lies_on(points, box) else None


@contextmanager
def _native_stderr_silenced() -> Iterator[None]:
    """MediaPipe's native side writes set-up chatter (TFLite delegates, absl warnings) straight to file
    descriptor 2 while it loads its graph; that is all it says there, so it is not passed on."""
    sys.stderr.flush()
    saved, sink = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(sink, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(sink)


def lies_on(points: np.ndarray, box: Box) -> bool:
    """Whether a mesh is the face of `box`: centred on it and of about its size."""
    size = face_size(box)
    centre = points[:, :2].mean(axis=0)
    offset = np.hypot(centre[0] - (box[0] + box[2]) / 2, centre[1] - (box[1] + box[3]) / 2)
    extent = float(np.ptp(points[:, :2], axis=0).max())
    return offset <= MAX_CENTRE_OFFSET * size and EXTENT_RANGE[0] * size <= extent <= EXTENT_RANGE[1] * size


@dataclass(frozen=True)
class Similarity:
    """x ↦ scale · rotation · x + shift, in 3-D."""

    scale: float
    rotation: np.ndarray  # (3, 3)
    shift: np.ndarray  # (3,)

    def apply(self, points: np.ndarray) -> np.ndarray:
        return (self.scale * points @ self.rotation.T + self.shift).astype(np.float32)

    def undo(self, points: np.ndarray) -> np.ndarray:
        """The points `apply` takes onto `points`."""
        return ((points - self.shift) @ self.rotation / self.scale).astype(np.float32)

    @property
    def yaw_pitch_degrees(self) -> tuple[float, float]:
        """Turn about the vertical and the horizontal axis of the face, from its rotation."""
        rotation = self.rotation
        return (
            float(np.degrees(np.arcsin(np.clip(-rotation[2, 0], -1, 1)))),
            float(np.degrees(np.arctan2(rotation[2, 1], rotation[2, 2]))),
        )


def similarity(source: np.ndarray, target: np.ndarray) -> Similarity:
    """The least-squares similarity taking `source` points onto `target` points (Umeyama 1991)."""
    source_mean, target_mean = source.mean(axis=0), target.mean(axis=0)
    source_centred, target_centred = source - source_mean, target - target_mean
    covariance = target_centred.T @ source_centred / len(source)
    u, singular, vt = np.linalg.svd(covariance)
    sign = np.eye(3)
    sign[2, 2] = np.sign(np.linalg.det(u) * np.linalg.det(vt)) or 1.0
    rotation = u @ sign @ vt
    scale = float(np.trace(np.diag(singular) @ sign) / (source_centred**2).sum(axis=1).mean())
    return Similarity(scale, rotation, target_mean - scale * source_mean @ rotation.T)


# The mesh points a detector's five landmarks mark (left and right as seen, so the person's right eye first): the
# eyes' centres (their lids' mean), the nose tip and the mouth's corners.
LANDMARK_POINTS = (
    RIGHT_EYE_UPPER + RIGHT_EYE_LOWER,
    LEFT_EYE_UPPER + LEFT_EYE_LOWER,
    (NOSE_TIP,),
    (RIGHT_MOUTH_CORNER,),
    (LEFT_MOUTH_CORNER,),
)
# A nose tip further than this share of the eyes' distance from their midpoint, along the line through them, is
# a face turned more than about 20 degrees: too far to be drawn as a frontal one.
MAX_NOSE_SHIFT = 0.2


def facing_forward(mesh: np.ndarray) -> np.ndarray:
    """`mesh` turned about its vertical axis so that its outer eye corners lie at one depth: a face looking
    straight out of the image (a mean of meshes keeps the slight turn of the pose they were aligned to)."""
    across = mesh[LEFT_EYE_OUTER] - mesh[RIGHT_EYE_OUTER]
    angle = float(np.arctan2(across[2], across[0]))
    cosine, sine = np.cos(angle), np.sin(angle)
    turn = np.array([[cosine, 0.0, sine], [0.0, 1.0, 0.0], [-sine, 0.0, cosine]])
    centre = mesh.mean(axis=0)
    return ((mesh - centre) @ turn.T + centre).astype(np.float32)


def posed_on_landmarks(template: np.ndarray, landmarks: np.ndarray) -> np.ndarray | None:
    """`template` (a frontal mesh) turned, scaled and moved in the image plane onto a detector's five `landmarks`
    (5, 2), for a face FaceMesh fits no mesh to; None when the landmarks show the face turned away or are no
    face's (not five finite points, or mirrored)."""
    if landmarks.shape != (5, 2) or not np.isfinite(landmarks).all():
        return None
    eyes = landmarks[:2]
    eye_line = eyes[1] - eyes[0]
    distance = float(np.linalg.norm(eye_line))
    if distance < 1.0:
        return None
    if abs(float(np.dot(landmarks[2] - eyes.mean(axis=0), eye_line))) / distance > MAX_NOSE_SHIFT * distance:
        return None
    marks = np.stack([template[list(points), :2].mean(axis=0) for points in LANDMARK_POINTS])
    flat = np.zeros((5, 1))
    fit = similarity(np.hstack([marks, flat]), np.hstack([landmarks, flat]))
    # Landmarks in mirrored order fit best by a flip, which a rotation of flat points can only make by turning
    # the face over (its depth reversed).
    return fit.apply(template) if fit.rotation[2, 2] > 0 else None


def openings(points: np.ndarray) -> np.ndarray:
    """Mouth, right-eye and left-eye opening of a mesh in its own frame, as shares of its forehead-to-chin
    height."""
    height = np.linalg.norm(points[CHIN] - points[FOREHEAD])
    gaps = [np.linalg.norm(points[b] - points[a]) for a, b in (MOUTH_GAP, RIGHT_EYE_GAP, LEFT_EYE_GAP)]
    return np.array(gaps, np.float32) / max(float(height), 1e-6)


def outline_with_margin(points: np.ndarray, margin: float) -> np.ndarray:
    """The face outline of a mesh (x, y of its FACE_OVAL points) pushed out by `margin` of its distance from
    the outline's centre."""
    outline = points[list(FACE_OVAL), :2]
    centre = outline.mean(axis=0)
    return centre + (outline - centre) * (1 + margin)


def with_margin_ring(mesh: np.ndarray, margin: float) -> np.ndarray:
    """The mesh with a ring of points `margin` beyond its face outline (at the outline's depth) appended: with
    RING_TRIANGLES, a mesh of what lies just around the face."""
    ring = mesh[list(FACE_OVAL)].copy()
    ring[:, :2] = outline_with_margin(mesh, margin)
    return np.concatenate([mesh, ring])
