"""Fréchet distance between two sets of feature vectors (as FID does with Inception features).

anoncli computes it over dlib face embeddings, which can be had offline, and names it "FD-dlib": it says how
far the anonymized faces' distribution lies from the originals', not how natural they look to Inception.
"""

from __future__ import annotations

import numpy as np
from scipy import linalg


def frechet_distance(first: np.ndarray, second: np.ndarray) -> float:
    """Fréchet distance between Gaussians fitted to two (N, D) feature sets; NaN with fewer than 2 rows."""
    if len(first) < 2 or len(second) < 2:
        return float("nan")
    mean_a, mean_b = first.mean(axis=0), second.mean(axis=0)
    cov_a, cov_b = np.cov(first, rowvar=False), np.cov(second, rowvar=False)
    root = np.real(linalg.sqrtm(cov_a @ cov_b))
    return float(np.sum((mean_a - mean_b) ** 2) + np.trace(cov_a + cov_b - 2 * root))
