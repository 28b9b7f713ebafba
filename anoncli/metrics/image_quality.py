"""How much of the picture outside the faces an anonymization kept: PSNR and SSIM over the background."""

from __future__ import annotations

import cv2
import numpy as np
from skimage.metrics import structural_similarity


def background_psnr(original: np.ndarray, anonymized: np.ndarray, background: np.ndarray) -> float:
    """PSNR in dB over the pixels where `background` is True; inf when they are identical."""
    difference = original[background].astype(np.float64) - anonymized[background].astype(np.float64)
    mse = float(np.mean(difference**2)) if difference.size else 0.0
    return float("inf") if mse == 0 else 10 * np.log10(255.0**2 / mse)


SSIM_SIDE = 1024


def background_ssim(original: np.ndarray, anonymized: np.ndarray, background: np.ndarray) -> float:
    """Mean SSIM over the background pixels, on copies at most SSIM_SIDE pixels wide (SSIM's 7-pixel
    window judges structure at a viewing scale; full-size 20-MP photos would only cost time)."""
    factor = min(1.0, SSIM_SIDE / max(original.shape[:2]))
    if factor < 1.0:
        size = (round(original.shape[1] * factor), round(original.shape[0] * factor))
        original = cv2.resize(original, size, interpolation=cv2.INTER_AREA)
        anonymized = cv2.resize(anonymized, size, interpolation=cv2.INTER_AREA)
        background = cv2.resize(background.astype(np.uint8), size, interpolation=cv2.INTER_NEAREST).astype(bool)
    _, ssim_map = structural_similarity(original, anonymized, channel_axis=2, data_range=255, full=True)
    return float(ssim_map.mean(axis=2)[background].mean()) if background.any() else 1.0


def _grey(image: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(image, cv2.COLOR_RGB2GRAY).astype(np.float32)


def detail(image: np.ndarray, region: tuple[slice, slice]) -> float:
    """High-frequency energy of a region: the variance of its Laplacian (grey levels², 0 on a flat patch)."""
    patch = _grey(image[region])
    return float(cv2.Laplacian(patch, cv2.CV_32F, ksize=3).var()) if min(patch.shape) >= 3 else 0.0


def edge_strength(image: np.ndarray, ring: np.ndarray, region: tuple[slice, slice]) -> float:
    """Mean gradient magnitude over the pixels of `ring` (a boolean map over `region`)."""
    patch = _grey(image[region])
    if min(patch.shape) < 3 or not ring.any():
        return 0.0
    gx = cv2.Sobel(patch, cv2.CV_32F, 1, 0, ksize=3)
    gy = cv2.Sobel(patch, cv2.CV_32F, 0, 1, ksize=3)
    return float(np.sqrt(gx**2 + gy**2)[ring].mean())
