"""Fréchet distance between two sets of feature vectors (as FID does with Inception features).

anoncli computes it over dlib face embeddings, which can be had offline, and names it "FD-dlib": it says how
far the anonymized faces' distribution lies from the originals', not how natural they look to Inception.
"""

from __future__ import annotations

import numpy as np


def frechet_distance(first: np.ndarray, second: np.ndarray) -> float:
    """Fréchet distance between Gaussians fitted to two (N, D) feature sets; NaN with fewer than 2 rows.

    tr(sqrt(Σa Σb)) is the nuclear norm of A Bᵀ / sqrt((n-1)(m-1)) for the centred data A, B: exact, and
    stable when there are fewer samples than dimensions, where a matrix square root of Σa Σb is not.
    """
    if len(first) < 2 or len(second) < 2:
        return float("nan")
    first, second = np.asarray(first, np.float64), np.asarray(second, np.float64)
    centred_a = first - first.mean(axis=0)
    centred_b = second - second.mean(axis=0)
    scale_a, scale_b = len(first) - 1, len(second) - 1
    root_trace = np.linalg.svd(centred_a @ centred_b.T, compute_uv=False).sum() / np.sqrt(scale_a * scale_b)
    means = np.sum((first.mean(axis=0) - second.mean(axis=0)) ** 2)
    return float(means + (centred_a**2).sum() / scale_a + (centred_b**2).sum() / scale_b - 2 * root_trace)
