"""Blend replacement crops back into a frame through their feathered masks."""

from __future__ import annotations

import numpy as np

from anoncli.io.images import from_rgb8
from anoncli.regions import Region


class Compositor:
    """Pastes faces into one frame, in place, without one face's feather uncovering another face.

    `coverage` remembers how strongly each pixel is already replaced; a later face blends into an earlier
    face's area only as far as its own mask is stronger there.
    """

    def __init__(self, frame: np.ndarray) -> None:
        self.frame = frame
        self.coverage = np.zeros(frame.shape[:2], np.float32)
        channels = frame.shape[2]
        self.colour_channels = channels - 1 if channels in (2, 4) else channels

    def paste(self, region: Region, replacement: np.ndarray) -> None:
        rows, cols = region.slices
        target = self.frame[rows, cols]
        covered = self.coverage[rows, cols]
        mask = region.mask
        weight = np.where(mask >= covered, mask, mask * (1.0 - covered))[:, :, None]
        old = target[:, :, : self.colour_channels].astype(np.float32)
        new = from_rgb8(replacement, like=target)
        blended = old + (new - old) * weight
        limit = 65535 if target.dtype == np.uint16 else 255
        target[:, :, : self.colour_channels] = np.clip(np.rint(blended), 0, limit).astype(target.dtype)
        np.maximum(covered, mask, out=covered)
