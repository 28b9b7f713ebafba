"""The detector interface and the multi-scale plan every detector shares.

A network only has to turn a batch of equally sized RGB images into raw boxes. This base class decides at
which scales to look (the whole image once at most 1024 px wide, then a finer pass on an upscaled copy, in
overlapping tiles when that copy is large, so small faces in large photos are not missed) and merges the
passes with non-maximum suppression.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass

import cv2
import numpy as np

from anoncli.faces import Box, Face, box_area, box_intersection, box_iou, centred_square, cut_square, face_size

# The whole-image pass sees at most this many pixels on the long side.
GLOBAL_SIDE = 1024
# Tiles are square and overlap by enough that a small face lies whole inside at least one of them.
TILE = 640
TILE_OVERLAP = 160
# The fine pass upscales small images up to this factor and stops at this many pixels in all (a detector may
# give an upscaled copy a smaller budget, `upscale_pixels`, and still look at the image's own resolution); up
# to WHOLE_PASS_PIXELS it runs on the whole image at once, above that in tiles to bound memory.
MAX_UPSCALE = 2.0
FINE_PIXEL_BUDGET = 8_000_000
WHOLE_PASS_PIXELS = 4_000_000
TILE_BATCH = 8
MERGE_IOU = 0.4
# Faces larger than this (pixels, at the fine pass's scale) are taken from the global pass only.
FINE_MAX_FACE = 256
# A box mostly inside a larger box is a part of that face (an eye, a mouth) taken for a face.
CONTAINED_SHARE = 0.7
# `detect_near` looks at squares of this many face sizes around each expected face (at least NEAR_MIN_SIDE
# pixels), and falls back to the full search when those squares would cover more than NEAR_MAX_SHARE.
NEAR_CONTEXT = 3.0
NEAR_MIN_SIDE = 96
NEAR_MAX_SHARE = 0.4
# Faces at least this large in the whole-image pass are found there; only smaller ones need a square.
GLOBAL_SEEN_FACE = 40
# A large detection is confirmed by looking again at crops around it (face size × context, resized to side):
# a real face is found there again; the network's large false alarms (a chest, a dark jacket, blurred
# background, lettering) are not. Measured for RetinaFace on celebs13 and the group photos: every real face
# of at least 64 px scored ≥ 0.6 in one of the two views, every false alarm (9) 0 in both. CenterFace loses
# real faces in such views, so a detector opts in (`confirms_large_faces`).
CONFIRM_MIN_FACE = 64
CONFIRM_VIEWS = ((2.0, 320), (3.0, 480))
CONFIRM_IOU = 0.4


@dataclass
class RawDetections:
    """Detections of one network input, in that input's pixel coordinates."""

    boxes: np.ndarray  # (K, 4) x1, y1, x2, y2
    scores: np.ndarray  # (K,)
    landmarks: np.ndarray  # (K, 5, 2)

    @classmethod
    def empty(cls) -> RawDetections:
        return cls(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros((0, 5, 2), np.float32))

    def select(self, keep: np.ndarray) -> RawDetections:
        return RawDetections(self.boxes[keep], self.scores[keep], self.landmarks[keep])

    def transformed(self, scale: float, dx: float, dy: float) -> RawDetections:
        """Map from input coordinates back to the image: divide by the input's scale, shift by its offset."""
        offset = np.array([dx, dy], np.float32)
        boxes = self.boxes / scale + np.tile(offset, 2)
        return RawDetections(boxes, self.scores, self.landmarks / scale + offset)

    @classmethod
    def concat(cls, parts: list[RawDetections]) -> RawDetections:
        if not parts:
            return cls.empty()
        return cls(
            np.concatenate([p.boxes for p in parts]),
            np.concatenate([p.scores for p in parts]),
            np.concatenate([p.landmarks for p in parts]),
        )


def non_max_suppression(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float) -> np.ndarray:
    """Indices of the boxes to keep, highest score first."""
    order = np.argsort(-scores, kind="stable")
    keep: list[int] = []
    suppressed = np.zeros(len(order), bool)
    overlaps = box_iou(boxes[order], boxes[order])
    for rank, index in enumerate(order):
        if suppressed[rank]:
            continue
        keep.append(int(index))
        suppressed |= overlaps[rank] > iou_threshold
    return np.array(keep, dtype=np.int64)


def not_cut_by_crop(boxes: np.ndarray, crop: Box, width: float, height: float) -> np.ndarray:
    """Mask of boxes, in the coordinates of the crop (x1, y1, x2, y2) of an image width × height, that no
    inner edge of the crop cuts; an edge on the image's own border cuts nothing."""
    x1, y1, x2, y2 = crop
    margin = 2.0
    cut_left = (boxes[:, 0] < margin) & (x1 > 0)
    cut_top = (boxes[:, 1] < margin) & (y1 > 0)
    cut_right = (boxes[:, 2] > x2 - x1 - margin) & (x2 < width)
    cut_bottom = (boxes[:, 3] > y2 - y1 - margin) & (y2 < height)
    return ~(cut_left | cut_top | cut_right | cut_bottom)


def not_inside_another(boxes: np.ndarray) -> np.ndarray:
    """Mask of boxes not mostly (CONTAINED_SHARE of their area) inside a larger box."""
    if len(boxes) < 2:
        return np.ones(len(boxes), bool)
    inter = box_intersection(boxes, boxes)
    area = box_area(boxes)
    inside = (inter / np.maximum(area[:, None], 1e-9) > CONTAINED_SHARE) & (area[None, :] > area[:, None])
    return ~inside.any(axis=1)


def pad_to_multiple(image: np.ndarray, multiple: int) -> np.ndarray:
    height, width = image.shape[:2]
    padded_h = math.ceil(height / multiple) * multiple
    padded_w = math.ceil(width / multiple) * multiple
    if (padded_h, padded_w) == (height, width):
        return image
    return cv2.copyMakeBorder(image, 0, padded_h - height, 0, padded_w - width, cv2.BORDER_CONSTANT, value=0)


def tile_origins(length: int) -> list[int]:
    """Start offsets of overlapping tiles covering [0, length)."""
    if length <= TILE:
        return [0]
    step = TILE - TILE_OVERLAP
    count = math.ceil((length - TILE) / step) + 1
    return [round(i * (length - TILE) / (count - 1)) for i in range(count)]


class Detector(ABC):
    """Finds faces in RGB uint8 images. Subclasses only implement `infer`."""

    name: str = "detector"
    # Network inputs must have sides that are multiples of this.
    input_multiple: int = 32
    confirms_large_faces: bool = False
    # Below this score (the detector's own default threshold) a detection searched for with a lower threshold,
    # for recall, is covered but not confirmed as a face.
    confident_score: float = 0.5

    def __init__(
        self,
        threshold: float,
        max_upscale: float = MAX_UPSCALE,
        global_side: int = GLOBAL_SIDE,
        upscale_pixels: float = FINE_PIXEL_BUDGET,
    ) -> None:
        if not 0.0 < threshold < 1.0:
            raise ValueError(f"threshold must lie between 0 and 1, got {threshold}")
        if upscale_pixels <= 0:
            raise ValueError(f"upscale_pixels must be positive, got {upscale_pixels}")
        self.threshold = threshold
        # Video trades the upscaled pass for speed (tracking across frames makes up for single misses) and
        # needs the whole-frame pass only for faces too large for the native one.
        self.max_upscale = max_upscale
        self.global_side = global_side
        self.upscale_pixels = upscale_pixels

    def fine_scale(self, height: int, width: int) -> float:
        """The fine pass's scale: the image's own resolution up to FINE_PIXEL_BUDGET pixels (less beyond), an
        upscaled copy (up to `max_upscale`) as far as it stays within `upscale_pixels`."""
        native = min(1.0, math.sqrt(FINE_PIXEL_BUDGET / (height * width)))
        return min(self.max_upscale, max(native, math.sqrt(self.upscale_pixels / (height * width))))

    @abstractmethod
    def infer(self, batch: np.ndarray) -> list[RawDetections]:
        """Raw detections above `self.threshold` for a batch (N, H, W, 3) of RGB uint8 images."""

    def detect(self, image: np.ndarray) -> list[Face]:
        """All faces in one RGB uint8 image (H, W, 3), merged over the global and the tiled pass."""
        height, width = image.shape[:2]
        global_scale = min(1.0, self.global_side / max(height, width))
        passes = [self._global_pass(image, global_scale)]
        fine_scale = self.fine_scale(height, width)
        if fine_scale > global_scale * 1.4:
            if fine_scale**2 * height * width <= WHOLE_PASS_PIXELS:
                fine = self._global_pass(image, fine_scale)
            else:
                fine = self._tiled_pass(image, fine_scale)
            # Enlarged, a big face breaks into face-like parts; big faces are the global pass's job.
            sizes = np.maximum(fine.boxes[:, 2] - fine.boxes[:, 0], fine.boxes[:, 3] - fine.boxes[:, 1])
            passes.append(fine.select(sizes * fine_scale <= FINE_MAX_FACE))
        merged = self._merged(passes)
        return self._faces(merged, width, height, self._confirmed(image, merged))

    def detect_near(self, image: np.ndarray, expected: list[Box]) -> list[Face]:
        """Faces of one image when the caller knows roughly where they are (a video's tracks): the whole-image
        pass, plus the fine pass only in squares around the expected faces too small for the whole-image pass.
        New small faces elsewhere are left to the next full `detect`."""
        height, width = image.shape[:2]
        global_scale = min(1.0, self.global_side / max(height, width))
        fine_scale = self.fine_scale(height, width)
        passes = [self._global_pass(image, global_scale)]
        if fine_scale > global_scale * 1.4:
            small = [box for box in expected if face_size(box) * global_scale < GLOBAL_SEEN_FACE]
            squares = [self._near_square(box, width, height) for box in small]
            if sum(self._padded_side(square, fine_scale) ** 2 for square in squares) > NEAR_MAX_SHARE * (
                fine_scale**2 * width * height
            ):
                return self.detect(image)
            by_side: dict[int, list[tuple[int, int, int, int]]] = {}
            for square in squares:
                by_side.setdefault(self._padded_side(square, fine_scale), []).append(square)
            passes += [self._squares_pass(image, group, fine_scale, side) for side, group in by_side.items()]
        # Not confirmed here: the next full `detect` drops a false alarm, and until then it is only covered.
        return self._faces(self._merged(passes), width, height)

    def _padded_side(self, square: tuple[int, int, int, int], scale: float) -> int:
        side = max(square[2] - square[0], square[3] - square[1]) * scale
        return math.ceil(side / self.input_multiple) * self.input_multiple

    def _squares_pass(
        self, image: np.ndarray, squares: list[tuple[int, int, int, int]], scale: float, side: int
    ) -> RawDetections:
        """The fine pass over squares of the image that share one padded `side`, in one batch."""
        interpolation = cv2.INTER_LINEAR if scale > 1 else cv2.INTER_AREA
        batch = np.zeros((len(squares), side, side, 3), np.uint8)
        for slot, (x1, y1, x2, y2) in zip(batch, squares):
            crop = image[y1:y2, x1:x2]
            if scale != 1.0:
                crop = cv2.resize(crop, None, fx=scale, fy=scale, interpolation=interpolation)
            slot[: crop.shape[0], : crop.shape[1]] = crop[:side, :side]
        found = []
        height, width = image.shape[:2]
        for (x1, y1, x2, y2), raw in zip(squares, self.infer(batch)):
            # A face cut by the square's edge (not the image's) is only part of a face: whole faces there
            # are left to the whole-image pass and the next full search.
            crop = (x1 * scale, y1 * scale, x2 * scale, y2 * scale)
            inside = not_cut_by_crop(raw.boxes, crop, width * scale, height * scale)
            raw = raw.select(inside).transformed(scale, float(x1), float(y1))
            sizes = np.maximum(raw.boxes[:, 2] - raw.boxes[:, 0], raw.boxes[:, 3] - raw.boxes[:, 1])
            found.append(raw.select(sizes * scale <= FINE_MAX_FACE))
        return RawDetections.concat(found)

    @staticmethod
    def _near_square(box: Box, width: int, height: int) -> tuple[int, int, int, int]:
        x1, y1, x2, y2 = box
        half = max(NEAR_CONTEXT * face_size(box), NEAR_MIN_SIDE) / 2
        centre_x, centre_y = (x1 + x2) / 2, (y1 + y2) / 2
        left, top = max(int(centre_x - half), 0), max(int(centre_y - half), 0)
        right, bottom = min(int(centre_x + half), width), min(int(centre_y + half), height)
        return left, top, max(right, left + 1), max(bottom, top + 1)

    @staticmethod
    def _merged(passes: list[RawDetections]) -> RawDetections:
        merged = RawDetections.concat(passes)
        merged = merged.select(non_max_suppression(merged.boxes, merged.scores, MERGE_IOU))
        return merged.select(not_inside_another(merged.boxes))

    def _faces(self, raw: RawDetections, width: int, height: int, confirmed: np.ndarray | None = None) -> list[Face]:
        """Faces, each marked confirmed or not; none is dropped (covering a false alarm costs a patch of jacket,
        dropping a real face publishes a person)."""
        flags = raw.scores >= self.confident_score
        if confirmed is not None:
            flags &= confirmed
        return [self._to_face(raw, i, width, height, bool(flags[i])) for i in range(len(raw.scores))]

    def _confirmed(self, image: np.ndarray, raw: RawDetections) -> np.ndarray:
        """Which detections are confirmed faces: small ones as they are, large ones only if a view around them
        (see CONFIRM_VIEWS) finds a face at the same place again."""
        sizes = np.maximum(raw.boxes[:, 2] - raw.boxes[:, 0], raw.boxes[:, 3] - raw.boxes[:, 1])
        keep = sizes < CONFIRM_MIN_FACE if self.confirms_large_faces else np.ones(len(sizes), bool)
        large = np.flatnonzero(~keep)
        for context, side in CONFIRM_VIEWS:
            pending = [index for index in large if not keep[index]]
            if not pending:
                break
            squares = [centred_square(tuple(raw.boxes[index]), context * sizes[index]) for index in pending]
            batch = np.stack(
                [
                    cv2.resize(cut_square(image, square)[0], (side, side), interpolation=cv2.INTER_AREA)
                    for square in squares
                ]
            )
            for index, square, found in zip(pending, squares, self.infer(batch)):
                factor = side / square.side
                box = (raw.boxes[index] - [square.x, square.y, square.x, square.y]) * factor
                keep[index] = len(found.boxes) > 0 and box_iou(box[None], found.boxes).max() >= CONFIRM_IOU
        return keep

    def _global_pass(self, image: np.ndarray, scale: float) -> RawDetections:
        interpolation = cv2.INTER_LINEAR if scale > 1 else cv2.INTER_AREA
        resized = image if scale == 1.0 else cv2.resize(image, None, fx=scale, fy=scale, interpolation=interpolation)
        batch = pad_to_multiple(resized, self.input_multiple)[None]
        return self.infer(batch)[0].transformed(scale, 0.0, 0.0)

    def _tiled_pass(self, image: np.ndarray, scale: float) -> RawDetections:
        interpolation = cv2.INTER_LINEAR if scale > 1 else cv2.INTER_AREA
        scaled = cv2.resize(image, None, fx=scale, fy=scale, interpolation=interpolation)
        scaled = pad_to_multiple(scaled, self.input_multiple)
        if min(scaled.shape[:2]) < TILE:
            scaled = cv2.copyMakeBorder(
                scaled,
                0,
                max(0, TILE - scaled.shape[0]),
                0,
                max(0, TILE - scaled.shape[1]),
                cv2.BORDER_CONSTANT,
                value=0,
            )
        height, width = scaled.shape[:2]
        origins = [(x, y) for y in tile_origins(height) for x in tile_origins(width)]
        found: list[RawDetections] = []
        for start in range(0, len(origins), TILE_BATCH):
            chunk = origins[start : start + TILE_BATCH]
            batch = np.stack([scaled[y : y + TILE, x : x + TILE] for x, y in chunk])
            for (x, y), raw in zip(chunk, self.infer(batch)):
                raw = raw.select(not_cut_by_crop(raw.boxes, (x, y, x + TILE, y + TILE), width, height))
                found.append(raw.transformed(scale, x / scale, y / scale))
        return RawDetections.concat(found)

    @staticmethod
    def _to_face(raw: RawDetections, index: int, width: int, height: int, confirmed: bool = True) -> Face:
        x1, y1, x2, y2 = raw.boxes[index].tolist()
        box = (max(0.0, x1), max(0.0, y1), min(float(width), x2), min(float(height), y2))
        landmarks = tuple((float(px), float(py)) for px, py in raw.landmarks[index])
        return Face(box, float(raw.scores[index]), landmarks, confirmed)
