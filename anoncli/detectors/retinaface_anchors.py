"""What RetinaFace's graph reads and emits, shared by its ONNX Runtime and torch runners: the input's channel
means and the anchors its outputs are offsets from."""

from __future__ import annotations

from functools import lru_cache

import numpy as np

STRIDES = (8, 16, 32)
ANCHOR_SIZES = ((16, 32), (64, 128), (256, 512))
CENTER_VARIANCE = 0.1
SIZE_VARIANCE = 0.2
BGR_MEAN = (104.0, 117.0, 123.0)


@lru_cache(maxsize=8)
def anchors_for(height: int, width: int) -> np.ndarray:
    """Anchor centres and sizes (A, 4) in pixels, in the order the network emits them."""
    per_stride = []
    for stride, sizes in zip(STRIDES, ANCHOR_SIZES):
        rows, cols = -(-height // stride), -(-width // stride)
        ys, xs = np.meshgrid(np.arange(rows), np.arange(cols), indexing="ij")
        centres = np.stack([(xs.ravel() + 0.5) * stride, (ys.ravel() + 0.5) * stride], axis=1)
        centres = np.repeat(centres, len(sizes), axis=0)
        wh = np.tile(np.array([[s, s] for s in sizes], np.float32), (rows * cols, 1))
        per_stride.append(np.hstack([centres, wh]))
    return np.concatenate(per_stride).astype(np.float32)
