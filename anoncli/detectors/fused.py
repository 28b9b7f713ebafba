"""Several detectors as one: every face any of them finds, boxes that overlap fused into one box that covers
them all (a union, not a suppression: coverage first)."""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from anoncli.detectors.base import Detector, not_inside_another
from anoncli.faces import Box, Face, box_iou
from anoncli.io.images import LUMA_WEIGHTS

# Two detections are one face when they overlap this much.
FUSE_IOU = 0.3
# An image this dark (mean BT.601 luma, 0-255) is also searched with its local contrast raised (CLAHE on the
# lightness): dim faces in a dark audience or at night come out of the noise for the detectors.
DARK_LUMA = 70.0
CLAHE_CLIP = 3.0
CLAHE_TILES = (8, 8)


class FusedDetector:
    """Finds faces with each detector in turn, and with the `low_light` ones also on a contrast-raised copy of
    a dark image; the first (lead) detector's boxes and landmarks lead a fused face."""

    def __init__(self, detectors: Sequence[Detector], low_light: Sequence[Detector] = ()) -> None:
        if not detectors:
            raise ValueError("a fused detector needs at least one detector")
        self.detectors = list(detectors)
        self.low_light = list(low_light)
        self.name = "+".join(detector.name for detector in self.detectors)

    def detect(self, image: np.ndarray) -> list[Face]:
        found = [detector.detect(image) for detector in self.detectors]
        if self.low_light and is_dark(image):
            raised = raised_contrast(image)
            found += [detector.detect(raised) for detector in self.low_light]
        return fuse(found)

    def detect_near(self, image: np.ndarray, expected: list[Box]) -> list[Face]:
        """A video's cheap search between full ones: the lead detector only. What the others find at the full
        searches is tracked through the frames in between, as the lead detector's misses are."""
        return self.detectors[0].detect_near(image, expected)


def is_dark(image: np.ndarray) -> bool:
    return float((image[::4, ::4] @ LUMA_WEIGHTS).mean()) < DARK_LUMA


def raised_contrast(image: np.ndarray) -> np.ndarray:
    """The RGB image with the local contrast of its lightness raised (CLAHE), colours kept."""
    lab = cv2.cvtColor(image, cv2.COLOR_RGB2LAB)
    lab[:, :, 0] = cv2.createCLAHE(CLAHE_CLIP, CLAHE_TILES).apply(lab[:, :, 0])
    return cv2.cvtColor(lab, cv2.COLOR_LAB2RGB)


def fuse(found: Sequence[Sequence[Face]]) -> list[Face]:
    """One face per group of overlapping detections: the box covering them all, the leading detection's
    landmarks (the first list's first, then by score), the highest score, confirmed if any was. A box mostly
    inside a larger one is a part of that face (as within one detector, see `not_inside_another`)."""
    ordered = [face for faces in found for face in sorted(faces, key=lambda f: -f.score)]
    fused: list[Face] = []
    for face in ordered:
        target = _overlapping(fused, face.box)
        if target is None:
            fused.append(face)
            continue
        leader = fused[target]
        union = (
            min(leader.box[0], face.box[0]),
            min(leader.box[1], face.box[1]),
            max(leader.box[2], face.box[2]),
            max(leader.box[3], face.box[3]),
        )
        landmarks = leader.landmarks if leader.landmarks is not None else face.landmarks
        fused[target] = Face(union, max(leader.score, face.score), landmarks, leader.confirmed or face.confirmed)
    if not fused:
        return fused
    whole = not_inside_another(np.array([face.box for face in fused]))
    return [face for face, keep in zip(fused, whole) if keep]


def _overlapping(faces: list[Face], box: Box) -> int | None:
    """The fused face `box` overlaps most, if it overlaps one by FUSE_IOU."""
    if not faces:
        return None
    overlap = box_iou(np.array([face.box for face in faces]), np.array(box))[:, 0]
    best = int(np.argmax(overlap))
    return best if overlap[best] >= FUSE_IOU else None
