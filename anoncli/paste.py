"""Blend replacement crops back into a frame through their feathered masks."""

from __future__ import annotations

import numpy as np

from anoncli.io.images import from_rgb8
from anoncli.regions import Region


class Compositor:
    """Pastes faces into one frame, in place, without one face's feather uncovering another face.

    A pixel is as strongly replaced as the strongest mask pasted over it so far; a later face blends into an
    earlier face's area only as far as its own mask is stronger there. That coverage is computed from the
    earlier regions where they overlap the new one, so a 50-megapixel frame costs no frame-sized array.
    """

    def __init__(self, frame: np.ndarray) -> None:
        self.frame = frame
        self.pasted: list[Region] = []
        channels = frame.shape[2]
        self.colour_channels = channels - 1 if channels in (2, 4) else channels

    def covered(self, region: Region) -> np.ndarray:
        """How strongly each pixel of `region` is already replaced (0 to 1)."""
        covered = np.zeros(region.mask.shape, np.float32)
        for earlier in self.pasted:
            x1, y1 = max(region.x1, earlier.x1), max(region.y1, earlier.y1)
            x2, y2 = min(region.x2, earlier.x2), min(region.y2, earlier.y2)
            if x1 >= x2 or y1 >= y2:
                continue
            here = covered[y1 - region.y1 : y2 - region.y1, x1 - region.x1 : x2 - region.x1]
            np.maximum(
                here, earlier.mask[y1 - earlier.y1 : y2 - earlier.y1, x1 - earlier.x1 : x2 - earlier.x1], out=here
            )
        return covered

    def paste(self, region: Region, replacement: np.ndarray) -> None:
        rows, cols = region.slices
        target = self.frame[rows, cols]
        covered = self.covered(region)
        mask = region.mask
        weight = np.where(mask >= covered, mask, mask * (1.0 - covered))[:, :, None]
        old = target[:, :, : self.colour_channels].astype(np.float32)
        blended = from_rgb8(replacement, like=target)  # becomes old + (new - old) * weight, in place
        blended -= old
        blended *= weight
        blended += old
        limit = 65535 if target.dtype == np.uint16 else 255
        target[:, :, : self.colour_channels] = np.clip(np.rint(blended, out=blended), 0, limit, out=blended)
        self.pasted.append(region)
