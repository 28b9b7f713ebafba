"""How much of the picture outside the faces an anonymization kept: PSNR and SSIM over the background."""

from __future__ import annotations

import numpy as np
from skimage.metrics import structural_similarity


def background_psnr(original: np.ndarray, anonymized: np.ndarray, background: np.ndarray) -> float:
    """PSNR in dB over the pixels where `background` is True; inf when they are identical."""
    difference = original[background].astype(np.float64) - anonymized[background].astype(np.float64)
    mse = float(np.mean(difference**2)) if difference.size else 0.0
    return float("inf") if mse == 0 else 10 * np.log10(255.0**2 / mse)


def background_ssim(original: np.ndarray, anonymized: np.ndarray, background: np.ndarray) -> float:
    """Mean SSIM over the background pixels (the SSIM map is computed on the whole image)."""
    _, ssim_map = structural_similarity(original, anonymized, channel_axis=2, data_range=255, full=True)
    return float(ssim_map.mean(axis=2)[background].mean()) if background.any() else 1.0
