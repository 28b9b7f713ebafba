"""Blending a warped composite into a drawn face: colour matched to the skin around it, then a multi-band
(Laplacian pyramid) blend, so broad shading fades in over a wide band and fine detail over a narrow one."""

from __future__ import annotations

import cv2
import numpy as np

# Below this side (pixels) a pyramid level carries no more useful band.
SMALLEST_LEVEL = 8


def lab(image: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(np.ascontiguousarray(image, np.float32) / 255.0, cv2.COLOR_RGB2Lab)


def rgb(image: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(image, cv2.COLOR_Lab2RGB) * 255.0


def colour_shift(texture: np.ndarray, surroundings: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """The shift in Lab that takes the mean of `texture` (float RGB) over `reference` (bool map) to that of
    `surroundings`."""
    return lab(surroundings)[reference].mean(axis=0) - lab(texture)[reference].mean(axis=0)


def colour_shifted(texture: np.ndarray, shift: np.ndarray) -> np.ndarray:
    """`texture` (float RGB) shifted by `shift` in Lab."""
    return rgb(lab(texture) + shift.astype(np.float32))


def multiband(foreground: np.ndarray, background: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """`foreground` over `background` (float RGB, same shape) through `mask` (float, 0-1), band by band."""
    levels = max(int(np.log2(max(min(mask.shape[:2]), 1) / SMALLEST_LEVEL)), 1)
    weights = [mask.astype(np.float32)]
    fronts, backs = [foreground.astype(np.float32)], [background.astype(np.float32)]
    for _ in range(levels):
        weights.append(cv2.pyrDown(weights[-1]))
        fronts.append(cv2.pyrDown(fronts[-1]))
        backs.append(cv2.pyrDown(backs[-1]))
    blended = fronts[-1] * weights[-1][..., None] + backs[-1] * (1 - weights[-1][..., None])
    for level in range(levels - 1, -1, -1):
        size = fronts[level].shape[1::-1]
        front_band = fronts[level] - cv2.pyrUp(fronts[level + 1], dstsize=size)
        back_band = backs[level] - cv2.pyrUp(backs[level + 1], dstsize=size)
        weight = weights[level][..., None]
        blended = cv2.pyrUp(blended, dstsize=size) + front_band * weight + back_band * (1 - weight)
    return blended
