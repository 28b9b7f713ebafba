"""How a face becomes the input of a mesh-conditioned generator, shared by training and inference.

The face is framed by its FaceMesh: a square centred on the mesh, turned so the eyes are level, whose side is
the mesh's forehead-to-chin length (in 3-D, so it does not shrink when the head nods) over FACE_HEIGHT_SHARE.
The mesh's points are drawn into that square as white points on black (each splatted over its four nearest
pixels), which is all `ganonymization` shows its generator.
"""

from __future__ import annotations

import cv2
import numpy as np

from anoncli.composites.mesh import (
    CHIN,
    FACE_OVAL,
    FACE_PARTS,
    FOREHEAD,
    LEFT_EYE_OUTER,
    RIGHT_EYE_OUTER,
    outline_with_margin,
)

FACE_HEIGHT_SHARE = 0.9
# Recorded in the manifest of weights trained with it; weights framed otherwise refuse to load.
MESH_FRAMING = {"frame": "face mesh, eyes level", "face_height": FACE_HEIGHT_SHARE}
# Photos are warped into the frame at this many times its side, then shrunk by area (a plain warp would alias).
SUPERSAMPLING = 4
# A generator in the frame draws the face within its outline pushed out by this share of the outline's distance
# from its centre.
OUTLINE_MARGIN = 0.1
SUBPIXEL_BITS = 4  # polygons are filled at 1/16 pixel
# The points `ciagan` is shown (CIAGAN's landmarks: nose, mouth and jaw line, not the eyes).
NOSE_MOUTH_JAW = tuple(sorted({*FACE_PARTS["nose"], *FACE_PARTS["mouth"], *FACE_OVAL}))


def mesh_frame(mesh: np.ndarray, side: int) -> np.ndarray:
    """The 2×3 affine map from the image's pixels to the `side`-pixel frame of the face whose mesh is `mesh`."""
    centre = mesh[:, :2].mean(axis=0)
    height = float(np.linalg.norm(mesh[FOREHEAD] - mesh[CHIN]))
    across = mesh[LEFT_EYE_OUTER, :2] - mesh[RIGHT_EYE_OUTER, :2]  # the person's left eye is on the image's right
    angle = float(np.arctan2(across[1], across[0]))
    scale = side * FACE_HEIGHT_SHARE / max(height, 1e-6)
    cos, sin = scale * np.cos(angle), scale * np.sin(angle)
    rotation = np.array([[cos, sin], [-sin, cos]])
    shift = side / 2 - rotation @ centre
    return np.hstack([rotation, shift[:, None]]).astype(np.float64)


def framed_points(mesh: np.ndarray, frame: np.ndarray) -> np.ndarray:
    """The mesh's x, y in the frame's pixels."""
    return mesh[:, :2] @ frame[:, :2].T + frame[:, 2]


def points_image(points: np.ndarray, side: int) -> np.ndarray:
    """(side, side) float32: 1 at each point (splatted bilinearly over its four nearest pixels, capped at 1),
    0 elsewhere."""
    image = np.zeros((side, side), np.float32)
    x, y = points[:, 0] - 0.5, points[:, 1] - 0.5
    inside = (x >= 0) & (y >= 0) & (x < side - 1) & (y < side - 1)
    x, y = x[inside], y[inside]
    left, top = np.floor(x).astype(int), np.floor(y).astype(int)
    fx, fy = (x - left).astype(np.float32), (y - top).astype(np.float32)
    for dy, wy in ((0, 1 - fy), (1, fy)):
        for dx, wx in ((0, 1 - fx), (1, fx)):
            np.add.at(image, (top + dy, left + dx), wx * wy)
    return np.minimum(image, 1.0)


def on_pixel_indices(affine: np.ndarray) -> np.ndarray:
    """An affine map between coordinates in which pixel i spans [i, i + 1) (the mesh's, the frame's), as OpenCV
    applies it: to pixel indices, whose centres are at i + 0.5 in those coordinates."""
    return np.hstack([affine[:, :2], (affine[:, 2] + affine[:, :2] @ (0.5, 0.5) - 0.5)[:, None]])


def into_frame(image: np.ndarray, frame: np.ndarray, side: int) -> tuple[np.ndarray, np.ndarray]:
    """The frame's pixels cut from `image` (RGB uint8) and its validity map (1 where the frame lies in the
    image), both at `side`."""
    large = side * SUPERSAMPLING
    supersampled = on_pixel_indices(frame * SUPERSAMPLING)
    pixels = cv2.warpAffine(image, supersampled, (large, large), flags=cv2.INTER_LINEAR, borderValue=0)
    inside = cv2.warpAffine(
        np.ones(image.shape[:2], np.float32), supersampled, (large, large), flags=cv2.INTER_LINEAR, borderValue=0
    )
    pixels = cv2.resize(pixels, (side, side), interpolation=cv2.INTER_AREA)
    inside = cv2.resize(inside, (side, side), interpolation=cv2.INTER_AREA) > 0.999
    return pixels, inside.astype(np.uint8)


def out_of_frame(framed: np.ndarray, frame: np.ndarray, height: int, width: int) -> np.ndarray:
    """An image in the frame (side × side × C) placed back into the (height, width) image's pixels."""
    return cv2.warpAffine(
        framed,
        on_pixel_indices(frame),
        (width, height),
        flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
        borderMode=cv2.BORDER_REPLICATE,
    )


def inside_polygon(polygon: np.ndarray, height: int, width: int) -> np.ndarray:
    """Boolean (height, width) map of the inside of `polygon` (x, y points; pixel i spans [i, i + 1))."""
    inside = np.zeros((height, width), np.uint8)
    points = np.rint((polygon - 0.5) * (1 << SUBPIXEL_BITS)).astype(np.int32)
    cv2.fillPoly(inside, [points], 1, cv2.LINE_8, SUBPIXEL_BITS)
    return inside.astype(bool)


def drawn_region(points: np.ndarray, side: int) -> np.ndarray:
    """Boolean (side, side) map of where a generator in the frame draws: inside the outline of the face whose
    framed points are `points`, with OUTLINE_MARGIN."""
    return inside_polygon(outline_with_margin(points, OUTLINE_MARGIN), side, side)
