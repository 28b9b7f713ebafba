"""Where the skin of a face is, for steering and for measuring its colour (`--skin-tone`).

Two different rules on purpose: the method steers with a luminance-trimmed sample of the face core, and the
measurement (seed 003 §4.3: mean skin colour against the target, per channel) uses a YCrCb skin detector, so
the method is not graded by the rule it was steered with.
"""

from __future__ import annotations

import cv2
import numpy as np

from anoncli.io.images import LUMA_WEIGHTS

# Eyes, brows, nostrils and mouth are darker than skin, highlights brighter: leave them out of the sample.
DARK_SHARE, BRIGHT_SHARE = 0.15, 0.02
# Classic YCrCb skin box (Chai & Ngan), widened a little for very light and very dark skin.
CR_RANGE, CB_RANGE = (130, 180), (70, 135)


def skin_sample(pixels: np.ndarray, region: np.ndarray) -> np.ndarray | None:
    """(n, 3) float RGB of the region's pixels without the darkest and brightest; None for a tiny region."""
    values = pixels[region].astype(np.float32)
    if len(values) < 16:
        return None
    luminance = values @ LUMA_WEIGHTS
    low, high = np.quantile(luminance, [DARK_SHARE, 1 - BRIGHT_SHARE])
    return values[(luminance >= low) & (luminance <= high)]


def detected_skin_colour(image: np.ndarray, region: np.ndarray) -> np.ndarray | None:
    """Mean RGB of the pixels in `region` (bool map) of an RGB image in 0-255 that a YCrCb skin rule accepts;
    None when too few do."""
    image = np.clip(image, 0, 255).astype(np.uint8)
    ycrcb = cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_RGB2YCrCb)
    cr, cb = ycrcb[:, :, 1], ycrcb[:, :, 2]
    skin = region & (cr >= CR_RANGE[0]) & (cr <= CR_RANGE[1]) & (cb >= CB_RANGE[0]) & (cb <= CB_RANGE[1])
    if skin.sum() < 16:
        return None
    return image[skin].astype(np.float32).mean(axis=0)
