"""When a face counts as exposed after anonymization: the one rule behind a video's exposed faces and frames and
the images' verification rate.

dlib's own threshold (two faces closer than 0.6 are one person) cannot be that rule alone: on small or dark
faces the embedding of whatever is left in a face's place (a black mask, a smear, no face at all) falls within
0.6 of the original, and a solid mask would be reported as exposing people. So a face counts exposed only when

- its region is substantially unchanged: the mean change of its core is at most REENCODING_MARGIN times the
  mean change of the picture's background, which only re-encoding touched; or
- a face is found there again in the anonymized picture (by the detector that found the original) and dlib's
  embedding there is closer to the original than the face's calibrated threshold: the least of dlib's 0.6, the
  distance from the original to the nearest other person in the same picture or frame, and the distance from
  the original to a blank patch of its size (its box filled with its mean colour, its surroundings kept). A face
  no nearer to its original than another person or an empty patch is not re-identified.

Only the same picture's other faces calibrate: in a video another frame may show the same person. The
calibration depends on the originals alone, so every method is held to the same thresholds; its summary is
reported beside the figure.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from anoncli.faces import Box, Face
from anoncli.metrics.identity import SAME_PERSON_DISTANCE, FaceEmbedder

# Measured on the crowd clip of the tests at 640×360, dim and not: faces left untouched by a re-encoded
# anonymization changed by up to 1.5 times the background, all but 1–3 % of blurred faces by more than twice.
REENCODING_MARGIN = 2.0


@dataclass(frozen=True)
class Calibration:
    """How close an anonymized face must come to its original to count as re-identified."""

    blank: float  # dlib distance from the original face to a blank patch of its size in its place
    other_person: float  # to the nearest other face of the same picture (inf when it is alone)

    @property
    def threshold(self) -> float:
        return min(SAME_PERSON_DISTANCE, self.blank, self.other_person)


DLIB_ONLY = Calibration(math.inf, math.inf)  # nothing measured to calibrate with: dlib's 0.6 alone


def calibrate(
    image: np.ndarray, faces: list[Face], embeddings: list[np.ndarray], embedder: FaceEmbedder
) -> list[Calibration]:
    """One Calibration per face of an original RGB uint8 picture, from its dlib embeddings."""
    calibrations = []
    for number, (face, embedding) in enumerate(zip(faces, embeddings)):
        blank = embedder.embed(blank_patch(image, face.box), face.box)
        others = [np.linalg.norm(embedding - other) for index, other in enumerate(embeddings) if index != number]
        calibrations.append(Calibration(float(np.linalg.norm(embedding - blank)), float(min(others, default=math.inf))))
    return calibrations


def blank_patch(image: np.ndarray, box: Box) -> np.ndarray:
    """A copy of `image` with the box filled with its own mean colour: the face's place with no face in it."""
    height, width = image.shape[:2]
    x1, y1, x2, y2 = (round(v) for v in box)
    x1, x2, y1, y2 = max(x1, 0), min(x2, width), max(y1, 0), min(y2, height)
    patched = image.copy()
    region = patched[y1:y2, x1:x2]
    if region.size:
        region[:] = region.reshape(-1, image.shape[2]).mean(axis=0).round().astype(image.dtype)
    return patched


def region_unchanged(core_change: float, background_change: float) -> bool:
    """Whether a face's core changed no more than re-encoding changes a picture (mean |Δ| of each, 0–255)."""
    return core_change <= REENCODING_MARGIN * background_change


def exposed(
    core_change: float,
    background_change: float,
    found_again: bool,
    distance: Callable[[], float],
    calibration: Calibration,
) -> bool:
    """The rule of this module for one face; `distance` (dlib's, to the original) is asked for only when the rule
    needs it, for the embedding is slow."""
    if region_unchanged(core_change, background_change):
        return True
    return found_again and distance() < calibration.threshold


def calibration_summary(calibrations: list[Calibration]) -> dict[str, float]:
    """The thresholds faces were held to (median), and how often dlib's 0.6 alone would have been fooled: the
    share of faces a blank patch, and the share another person in the picture, lies within 0.6 of."""
    if not calibrations:
        return {"reid_threshold": math.nan, "blank_within_dlib": math.nan, "others_within_dlib": math.nan}
    return {
        "reid_threshold": float(np.median([c.threshold for c in calibrations])),
        "blank_within_dlib": float(np.mean([c.blank < SAME_PERSON_DISTANCE for c in calibrations])),
        "others_within_dlib": float(np.mean([c.other_person < SAME_PERSON_DISTANCE for c in calibrations])),
    }
