"""How a face becomes a generator input, shared by training and inference so both see the same thing.

A square of CONTEXT × face size around the face box is cut out (zero-padded where it leaves the image, with
a validity map saying so, and only a WINDOW around the face counted as known), the erased region is blanked
at full resolution *before* resizing, so no original face pixel can bleed into the network input, and the 5
landmarks become one Gaussian heat map each.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from anoncli.faces import Box, Square, centred_square, cut_square, ellipse_distance_squared, face_size

# The network's input square, as a multiple of the face box's larger side.
CONTEXT = 1.5
# Only a window of this size around the face is shown as context, the rest of the square is "unknown".
# The training faces are tight chips, so conditioning on a fixed window keeps what the generator sees in the
# wild the same as what it saw in training. A thin ring (1.0, from 1.25 since step 15000) kept gender and age
# group better on press photos (measured in the deepprivacy64 manifest's levers).
WINDOW = 1.0
# Recorded in the manifest of weights trained with it; weights framed otherwise refuse to load.
FRAMING = {"context": CONTEXT, "window": WINDOW}
KEYPOINT_SIGMA = 1.5  # in output pixels at 64², scaled with the resolution (the same share of the face)


def reach(erase: np.ndarray, box: Box) -> float:
    """How far (Chebyshev, in pixels) the erased region extends from the box centre."""
    ys, xs = np.nonzero(erase)
    if not len(xs):
        return 0.0
    centre_x, centre_y = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    return float(max(np.abs(xs + 0.5 - centre_x).max(), np.abs(ys + 0.5 - centre_y).max()))


def erase_ellipse(shape: tuple[int, int], box: Box, scale: float) -> np.ndarray:
    """Boolean (h, w) map of the face ellipse: the face box's proportions times `scale`, as the paste mask."""
    return ellipse_distance_squared(box, scale, 0, 0, shape[1], shape[0]) <= 1.0


@dataclass
class GeneratorInput:
    """Everything the generator may see of one face, at its working resolution."""

    pixels: np.ndarray  # (R, R, 3) uint8, zero inside the erased face and outside the image
    known: np.ndarray  # (R, R) float32: 1 where pixels are real context, 0 where erased or off-image
    erased: np.ndarray  # (R, R) float32: 1 over the erased face
    keypoints: np.ndarray  # (5, R, R) float32 heat maps


def build_input(
    image: np.ndarray,
    valid: np.ndarray,
    erase: np.ndarray,
    box: Box,
    landmarks: np.ndarray | None,
    resolution: int,
) -> tuple[GeneratorInput, Square, Square]:
    """The generator input for one face, plus the square it covers and the window it may change.

    `image` (h, w, 3), `valid` (h, w) and `erase` (h, w, bool) share one coordinate frame, as do `box` and
    `landmarks`. The window grows beyond WINDOW when needed so it always holds the whole erased region.
    """
    half_window = max(WINDOW * face_size(box) / 2, reach(erase, box) + 2)
    window = centred_square(box, 2 * half_window)
    square = centred_square(box, max(CONTEXT * face_size(box), window.side + 4))
    pixels, inside = cut_square(image, square)
    erased, _ = cut_square(erase[:, :, None].astype(np.uint8), square)
    image_valid, _ = cut_square(valid[:, :, None].astype(np.uint8), square)
    known_window = np.zeros((square.side, square.side), np.uint8)
    top, left = window.y - square.y, window.x - square.x
    known_window[top : top + window.side, left : left + window.side] = 1
    shown = inside & image_valid[:, :, 0] & known_window
    points = None if landmarks is None else np.asarray(landmarks, np.float32) - [square.x, square.y]
    return prepare_input(pixels, shown, erased[:, :, 0].astype(bool), points, resolution), square, window


def prepare_input(
    crop: np.ndarray,
    valid: np.ndarray,
    erase: np.ndarray,
    landmarks: np.ndarray | None,
    resolution: int,
) -> GeneratorInput:
    """Erase the face in a square crop at full resolution, then shrink everything to `resolution`.

    `erase` is a boolean map over the crop; `landmarks` are in the crop's pixel coordinates. Any working
    pixel that the resize mixed from even one erased pixel is erased too, so no face pixel gets through.
    """
    side = crop.shape[0]
    crop = crop.copy()
    crop[erase] = 0
    factor = resolution / side
    interpolation = cv2.INTER_AREA if factor < 1 else cv2.INTER_LINEAR
    size = (resolution, resolution)
    pixels = cv2.resize(crop, size, interpolation=interpolation)
    erased = cv2.resize(erase.astype(np.float32), size, interpolation=interpolation) > 0
    inside = cv2.resize(valid.astype(np.float32), size, interpolation=interpolation) > 0.999
    pixels[erased | ~inside] = 0
    known = (~erased & inside).astype(np.float32)
    points = None if landmarks is None else np.asarray(landmarks, np.float32) * factor
    return GeneratorInput(pixels, known, erased.astype(np.float32), keypoint_maps(points, resolution))


def keypoint_maps(points: np.ndarray | None, resolution: int) -> np.ndarray:
    """One Gaussian blob per landmark; all-zero maps when the landmarks are unknown."""
    maps = np.zeros((5, resolution, resolution), np.float32)
    if points is None:
        return maps
    grid = np.arange(resolution, dtype=np.float32) + 0.5
    sigma = KEYPOINT_SIGMA * resolution / 64
    for index, (x, y) in enumerate(points[:5]):
        maps[index] = np.exp(-((grid[None, :] - x) ** 2 + (grid[:, None] - y) ** 2) / (2 * sigma**2))
    return maps
