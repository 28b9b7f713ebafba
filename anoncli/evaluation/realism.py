"""How real anonymized faces look, asked of a classifier two-sample test (Lopez-Paz & Oquab 2017).

Real face crops of one half of the people are set against anonymized crops of the other half (so the
classifier cannot win by recognising a person), and a regularised logistic regression on texture, shape and
colour features (HOG, LBP histograms, Laplacian band energies, Lab colour statistics, the dlib embedding) is
cross-validated with folds grouped by person. Its ROC AUC is the figure: 0.5 when anonymized faces cannot be
told from real ones, 1.0 when they always can. The originals against themselves, halves against halves, give
the floor the method row `none` shows.
"""

from __future__ import annotations

import cv2
import numpy as np
from skimage.feature import hog, local_binary_pattern

from anoncli.faces import Box, centred_square, cut_square, face_size

CROP_CONTEXT = 1.1  # the face box's larger side, a little grown
CROP_SIDE = 64
LBP_RADII = (1, 2)
LBP_POINTS = 8
PYRAMID_LEVELS = 4
FOLDS = 5
HALF_SPLITS = 5  # random halves of the people the AUC is averaged over
PENALTY = 1.0  # L2 weight on standardised features
STEPS = 300


def texture_features(image: np.ndarray, box: Box) -> np.ndarray:
    """HOG, LBP histograms, Laplacian band energies and Lab colour statistics of the face in `box` (RGB uint8)."""
    pixels, _ = cut_square(image, centred_square(box, CROP_CONTEXT * face_size(box)))
    crop = cv2.resize(pixels, (CROP_SIDE, CROP_SIDE), interpolation=cv2.INTER_AREA)
    gray = cv2.cvtColor(crop, cv2.COLOR_RGB2GRAY)
    shape = hog(gray, orientations=9, pixels_per_cell=(16, 16), cells_per_block=(2, 2), feature_vector=True)
    patterns = []
    for radius in LBP_RADII:
        codes = local_binary_pattern(gray, LBP_POINTS, radius, method="uniform")
        histogram, _ = np.histogram(codes, bins=LBP_POINTS + 2, range=(0, LBP_POINTS + 2))
        patterns.append(histogram / codes.size)
    level = gray.astype(np.float32)
    bands = []
    for _ in range(PYRAMID_LEVELS):
        smaller = cv2.pyrDown(level)
        bands.append(float((level - cv2.pyrUp(smaller, dstsize=level.shape[::-1])).std()))
        level = smaller
    lab = cv2.cvtColor(crop, cv2.COLOR_RGB2Lab).reshape(-1, 3).astype(np.float32)
    colour = np.concatenate([lab.mean(axis=0), lab.std(axis=0)]) / 255.0
    energies = np.log1p(np.array(bands, np.float32))
    return np.concatenate([shape, *patterns, energies, colour]).astype(np.float32)


def feature_groups(embedding_length: int) -> dict[str, slice]:
    """Where each kind of feature lies in `texture_features`' vector followed by an embedding (as `realism_auc`
    joins them): to ask which of them tells anonymized faces from real ones."""
    cells = CROP_SIDE // 16
    lengths = {
        "HOG": (cells - 1) ** 2 * 4 * 9,
        "LBP": len(LBP_RADII) * (LBP_POINTS + 2),
        "Laplacian bands": PYRAMID_LEVELS,
        "Lab colour": 6,
        "dlib embedding": embedding_length,
    }
    ends = np.cumsum(list(lengths.values()))
    return {name: slice(int(end - length), int(end)) for (name, length), end in zip(lengths.items(), ends)}


def _fit_predict(train: np.ndarray, labels: np.ndarray, test: np.ndarray) -> np.ndarray:
    """Scores of `test` by an L2-regularised logistic regression fitted on `train` (full-batch gradient
    descent on standardised features; small sets, so plain and deterministic)."""
    mean, spread = train.mean(axis=0), train.std(axis=0) + 1e-6
    x, t = (train - mean) / spread, (test - mean) / spread
    weights, bias = np.zeros(x.shape[1]), 0.0
    rate = 1.0 / (0.25 * (x**2).sum(axis=1).mean() + PENALTY / len(x) + 1e-9)
    for _ in range(STEPS):
        error = 1 / (1 + np.exp(-(x @ weights + bias))) - labels
        weights -= rate * (x.T @ error / len(x) + PENALTY * weights / len(x))
        bias -= rate * error.mean()
    return t @ weights + bias


def roc_auc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Probability that a positive scores above a negative (ties half), from ranks."""
    positives, negatives = labels == 1, labels == 0
    if not positives.any() or not negatives.any():
        return float("nan")
    order = np.argsort(scores, kind="mergesort")
    ranks = np.empty(len(scores))
    sorted_scores = scores[order]
    ranks[order] = np.arange(1, len(scores) + 1)
    for value in np.unique(sorted_scores):  # ties share their mean rank
        tied = scores == value
        ranks[tied] = ranks[tied].mean()
    count = positives.sum()
    return float((ranks[positives].sum() - count * (count + 1) / 2) / (count * negatives.sum()))


def two_sample_auc(real: np.ndarray, anonymized: np.ndarray, people: np.ndarray, seed: int = 0) -> float:
    """Mean cross-validated AUC of telling anonymized faces from real ones, each face (row of `real` and of
    `anonymized`, one person label per row in `people`) entering as real when its person is in one half and as
    anonymized when in the other; folds grouped by person. NaN with fewer than 4 people."""
    units = np.unique(people)
    if len(units) < 4:
        return float("nan")
    rng = np.random.default_rng(seed)
    aucs = []
    for _ in range(HALF_SPLITS):
        first_half = np.isin(people, rng.permutation(units)[: len(units) // 2])
        features = np.concatenate([real[first_half], anonymized[~first_half]])
        labels = np.concatenate([np.zeros(first_half.sum()), np.ones((~first_half).sum())])
        groups = np.concatenate([people[first_half], people[~first_half]])
        fold_of = {unit: number % FOLDS for number, unit in enumerate(rng.permutation(units))}
        folds = np.array([fold_of[unit] for unit in groups])
        scores = np.zeros(len(labels))
        for fold in range(FOLDS):
            held = folds == fold
            if held.any() and len(np.unique(labels[~held])) == 2:
                scores[held] = _fit_predict(features[~held], labels[~held], features[held])
        aucs.append(roc_auc(scores, labels))
    return float(np.nanmean(aucs))
