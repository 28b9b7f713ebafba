"""Piecewise-affine warps over a triangulated mesh: every target pixel is mapped through the affine map of
the triangle it falls in, all at once with one `cv2.remap`."""

from __future__ import annotations

import cv2
import numpy as np


def triangle_ids(points: np.ndarray, triangles: np.ndarray, shape: tuple[int, int], depth: np.ndarray | None = None):
    """(h, w) int32: the index of the triangle (of `points`, (n, 2) pixels) covering each pixel, -1 where none
    does. With `depth` (n,), nearer triangles (smaller depth) are drawn over farther ones, so a turned face's
    hidden side stays hidden."""
    ids = np.full(shape, -1, np.int32)
    order = np.arange(len(triangles))
    if depth is not None:
        order = np.argsort(-depth[triangles].mean(axis=1), kind="stable")
    corners = np.rint(points[triangles] * 16).astype(np.int32)  # 4 fractional bits
    for index in order:
        cv2.fillConvexPoly(ids, corners[index], int(index), lineType=cv2.LINE_8, shift=4)
    return ids


def affine_maps(source: np.ndarray, target: np.ndarray, triangles: np.ndarray) -> np.ndarray:
    """(t, 2, 3): for each triangle, the affine map from its target corners to its source corners."""
    # Each map is source corners @ inverse([x; y; 1] of the target corners), the inverse written out by its
    # adjugate: thousands of 3 × 3 systems at once, in plain array arithmetic.
    (x0, y0), (x1, y1), (x2, y2) = (target[triangles[:, i]].astype(np.float64).T for i in range(3))
    determinant = x0 * (y1 - y2) + x1 * (y2 - y0) + x2 * (y0 - y1)
    determinant = np.where(np.abs(determinant) < 1e-9, 1e-9, determinant)  # degenerate: any map will do
    inverse = (
        np.stack(
            [
                np.stack([y1 - y2, x2 - x1, x1 * y2 - x2 * y1], axis=1),
                np.stack([y2 - y0, x0 - x2, x2 * y0 - x0 * y2], axis=1),
                np.stack([y0 - y1, x1 - x0, x0 * y1 - x1 * y0], axis=1),
            ],
            axis=1,
        )
        / determinant[:, None, None]
    )  # (t, 3 corners, 3)
    corners = source[triangles].astype(np.float64).transpose(0, 2, 1)  # (t, 2, 3 corners)
    return np.einsum("tck,tkj->tcj", corners, inverse)


def warp(
    image: np.ndarray,
    source: np.ndarray,
    target: np.ndarray,
    triangles: np.ndarray,
    shape: tuple[int, int],
    depth: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """`image` moved so its points `source` land on `target` (both (n, 2) pixels), on a canvas of `shape`:
    the warped image (float32) and the bool map of the pixels a triangle covers."""
    ids = triangle_ids(target, triangles, shape, depth)
    covered = ids >= 0
    maps = affine_maps(source, target, triangles)
    rows, columns = np.nonzero(covered)
    chosen = maps[ids[covered]]  # (p, 2, 3)
    x = columns + 0.5
    y = rows + 0.5
    map_x = np.full(shape, -1.0, np.float32)
    map_y = np.full(shape, -1.0, np.float32)
    map_x[covered] = chosen[:, 0, 0] * x + chosen[:, 0, 1] * y + chosen[:, 0, 2] - 0.5
    map_y[covered] = chosen[:, 1, 0] * x + chosen[:, 1, 1] * y + chosen[:, 1, 2] - 0.5
    warped = cv2.remap(image.astype(np.float32), map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    return warped, covered
