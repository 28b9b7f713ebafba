"""The realism judge of `evaluate`: a classifier two-sample test, checked at its extremes on real faces."""

from __future__ import annotations

from itertools import pairwise

import cv2
import numpy as np
import pytest

from anoncli.evaluation.realism import feature_groups, roc_auc, texture_features, two_sample_auc
from conftest import held_out_utkface, load_rgb


def test_roc_auc_counts_how_often_a_positive_outscores_a_negative():
    labels = np.array([0, 0, 1, 1])
    assert roc_auc(np.array([0.1, 0.2, 0.8, 0.9]), labels) == 1.0
    assert roc_auc(np.array([0.9, 0.8, 0.2, 0.1]), labels) == 0.0
    assert roc_auc(np.array([0.5, 0.5, 0.5, 0.5]), labels) == 0.5
    assert roc_auc(np.array([0.1, 0.6, 0.5, 0.9]), labels) == 0.75


@pytest.fixture(scope="module")
def held_out_faces(detector):
    """60 held-out UTKFace photos with their face box: real faces no model of the project was tuned on."""
    faces = []
    for path, _ in held_out_utkface(60):
        image = load_rgb(path).astype(np.uint8)
        found = detector.detect(image)
        if found:
            faces.append((image, max(found, key=lambda f: f.size).box))
    assert len(faces) >= 50
    return faces


def judged(faces, change) -> float:
    real = np.array([texture_features(image, box) for image, box in faces])
    changed = np.array([texture_features(change(image, box), box) for image, box in faces])
    return two_sample_auc(real, changed, np.arange(len(faces)))


def masked(image: np.ndarray, box) -> np.ndarray:
    out = image.copy()
    x1, y1, x2, y2 = (int(v) for v in box)
    cv2.ellipse(out, ((x1 + x2) // 2, (y1 + y2) // 2), ((x2 - x1) // 2, (y2 - y1) // 2), 0, 0, 360, (0, 0, 0), -1)
    return out


def blurred(image: np.ndarray, box) -> np.ndarray:
    return cv2.GaussianBlur(image, (0, 0), 0.08 * (box[2] - box[0]))


def test_real_faces_against_real_faces_of_other_people_are_a_coin_toss(held_out_faces):
    assert 0.3 <= judged(held_out_faces, lambda image, box: image) <= 0.7


def test_masked_and_blurred_faces_are_told_from_real_ones(held_out_faces):
    assert judged(held_out_faces, masked) > 0.95
    assert judged(held_out_faces, blurred) > 0.9


def test_the_feature_groups_tile_the_features_and_the_embedding(held_out_faces):
    image, box = held_out_faces[0]
    length = len(texture_features(image, box))
    groups = list(feature_groups(128).values())
    assert groups[0].start == 0 and all(a.stop == b.start for a, b in pairwise(groups))
    assert groups[-2].stop == length and groups[-1].stop == length + 128
