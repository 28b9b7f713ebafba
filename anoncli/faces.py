"""The face record every stage passes along (a box, a score and five landmarks) and the square crops cut
around faces."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

# x1, y1, x2, y2 in pixels: the box of a face, everywhere in anoncli.
Box = tuple[float, float, float, float]

# Left and right as seen in the image, the order RetinaFace and CenterFace both use.
LANDMARK_NAMES = ("left_eye", "right_eye", "nose", "mouth_left", "mouth_right")


@dataclass(frozen=True)
class Face:
    """One detected face in image coordinates (pixels, x to the right, y down)."""

    box: Box  # x1, y1, x2, y2
    score: float
    landmarks: tuple[tuple[float, float], ...] | None = None  # 5 points, or None when unknown
    # False for a detection a closer look did not confirm as a face: still covered, never redrawn as a face.
    confirmed: bool = True

    @property
    def width(self) -> float:
        return self.box[2] - self.box[0]

    @property
    def height(self) -> float:
        return self.box[3] - self.box[1]

    @property
    def size(self) -> float:
        return face_size(self.box)

    def to_json(self) -> dict:
        record: dict = {
            "box": [round(v, 1) for v in self.box],
            "score": round(self.score, 4),
        }
        record["landmarks"] = (
            None if self.landmarks is None else [[round(x, 1), round(y, 1)] for x, y in self.landmarks]
        )
        if not self.confirmed:
            record["confirmed"] = False
        return record

    @classmethod
    def from_json(cls, record: dict) -> Face:
        box = record["box"]
        if len(box) != 4 or not all(map(math.isfinite, box)) or not box[2] > box[0] or not box[3] > box[1]:
            raise ValueError(f"box must be [x1, y1, x2, y2] of finite numbers with x2 > x1 and y2 > y1, got {box}")
        points = record.get("landmarks")
        landmarks = None if not points else tuple((float(x), float(y)) for x, y in points)
        if landmarks and not all(math.isfinite(v) for point in landmarks for v in point):
            raise ValueError(f"landmarks must be finite numbers, got {points}")
        confirmed = bool(record.get("confirmed", True))
        return cls(tuple(float(v) for v in box), float(record.get("score", 1.0)), landmarks, confirmed)


def box_centre(box: Box) -> tuple[float, float]:
    return (box[0] + box[2]) / 2, (box[1] + box[3]) / 2


def box_intersection(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairwise intersection areas of boxes a (N, 4) and b (M, 4) given as x1, y1, x2, y2."""
    a = np.asarray(a, dtype=np.float64).reshape(-1, 4)
    b = np.asarray(b, dtype=np.float64).reshape(-1, 4)
    left = np.maximum(a[:, None, 0], b[None, :, 0])
    top = np.maximum(a[:, None, 1], b[None, :, 1])
    right = np.minimum(a[:, None, 2], b[None, :, 2])
    bottom = np.minimum(a[:, None, 3], b[None, :, 3])
    return np.clip(right - left, 0, None) * np.clip(bottom - top, 0, None)


def box_area(boxes: np.ndarray) -> np.ndarray:
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    return (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairwise IoU of boxes a (N, 4) and b (M, 4) given as x1, y1, x2, y2."""
    inter = box_intersection(a, b)
    return inter / np.maximum(box_area(a)[:, None] + box_area(b)[None, :] - inter, 1e-9)


def padded_crop(image: np.ndarray, box: Box, margin: float) -> np.ndarray | None:
    """The image inside `box` grown by `margin` × its larger side, clipped to the image; None when under
    2 × 2 pixels."""
    height, width = image.shape[:2]
    x1, y1, x2, y2 = box
    pad = margin * max(x2 - x1, y2 - y1)
    left, top = max(int(x1 - pad), 0), max(int(y1 - pad), 0)
    right, bottom = min(int(np.ceil(x2 + pad)), width), min(int(np.ceil(y2 + pad)), height)
    if right - left < 2 or bottom - top < 2:
        return None
    return np.ascontiguousarray(image[top:bottom, left:right])


@dataclass(frozen=True)
class Square:
    """An axis-aligned square in source pixel coordinates."""

    x: int
    y: int
    side: int


def centred_square(box: Box, side: float) -> Square:
    x1, y1, x2, y2 = box
    side = max(round(side), 4)
    centre_x, centre_y = (x1 + x2) / 2, (y1 + y2) / 2
    return Square(round(centre_x - side / 2), round(centre_y - side / 2), side)


def ellipse_radii(box: Box, scale: float = 1.0) -> tuple[float, float, float, float]:
    """Centre x, centre y and radii of the ellipse inscribed in `box`, grown by `scale`."""
    x1, y1, x2, y2 = box
    return (x1 + x2) / 2, (y1 + y2) / 2, max(x2 - x1, 1.0) / 2 * scale, max(y2 - y1, 1.0) / 2 * scale


def ellipse_distance_squared(box: Box, scale: float, left: int, top: int, right: int, bottom: int) -> np.ndarray:
    """(bottom - top, right - left) float32: for each pixel centre of that window, its squared distance from the
    centre of the ellipse inscribed in `box` and grown by `scale`, in radii (1 on the ellipse)."""
    centre_x, centre_y, radius_x, radius_y = ellipse_radii(box, scale)
    ys = (np.arange(top, bottom, dtype=np.float32) + 0.5 - centre_y) / radius_y
    xs = (np.arange(left, right, dtype=np.float32) + 0.5 - centre_x) / radius_x
    return ys[:, None] ** 2 + xs[None, :] ** 2


def face_size(box: Box) -> float:
    return max(box[2] - box[0], box[3] - box[1], 1.0)


def cut_square(image: np.ndarray, square: Square) -> tuple[np.ndarray, np.ndarray]:
    """The square's pixels (zeros outside the image) and its validity map (1 inside the image)."""
    height, width = image.shape[:2]
    pixels = np.zeros((square.side, square.side, image.shape[2]), image.dtype)
    valid = np.zeros((square.side, square.side), np.uint8)
    left, top = max(square.x, 0), max(square.y, 0)
    right, bottom = min(square.x + square.side, width), min(square.y + square.side, height)
    if right > left and bottom > top:
        pixels[top - square.y : bottom - square.y, left - square.x : right - square.x] = image[top:bottom, left:right]
        valid[top - square.y : bottom - square.y, left - square.x : right - square.x] = 1
    return pixels, valid
