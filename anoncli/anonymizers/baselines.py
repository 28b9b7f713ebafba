"""Blur, pixelate and mask: classic anonymization, with strength tied to face size.

A fixed kernel leaves large faces recognizable and wipes small ones; these scale with the face so every
face keeps about the same, unrecognizable, amount of detail.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from anoncli.anonymizers.base import FaceCrop, Method, solid_fill

# Gaussian sigma as a fraction of face size: about three blurred "cycles" remain across a face.
BLUR_SIGMA_PER_FACE = 1 / 8
# The blur is computed on a copy reduced so sigma is at most this many pixels; same look, far less work.
MAX_WORKING_SIGMA = 4.0
# Blocks across a face: 8×8 pixelation defeats face recognition in published comparisons.
PIXEL_BLOCKS_PER_FACE = 8


class Blur(Method):
    name = "blur"
    context = 1.6  # room for the blur kernel around the mask

    def anonymize(self, faces: Sequence[FaceCrop]) -> list[np.ndarray]:
        return [self._blur(face) for face in faces]

    @staticmethod
    def _blur(face: FaceCrop) -> np.ndarray:
        height, width = face.pixels.shape[:2]
        sigma = max(face.face_size * BLUR_SIGMA_PER_FACE, 1.0)
        reduction = max(1.0, sigma / MAX_WORKING_SIGMA)
        small = cv2.resize(
            face.pixels,
            (max(1, round(width / reduction)), max(1, round(height / reduction))),
            interpolation=cv2.INTER_AREA,
        )
        blurred = cv2.GaussianBlur(small, (0, 0), sigmaX=sigma / reduction, borderType=cv2.BORDER_REFLECT)
        return cv2.resize(blurred, (width, height), interpolation=cv2.INTER_LINEAR)


class Pixelate(Method):
    name = "pixelate"

    def anonymize(self, faces: Sequence[FaceCrop]) -> list[np.ndarray]:
        return [self._pixelate(face) for face in faces]

    @staticmethod
    def _pixelate(face: FaceCrop) -> np.ndarray:
        height, width = face.pixels.shape[:2]
        block = max(face.face_size / PIXEL_BLOCKS_PER_FACE, 2.0)
        small = cv2.resize(
            face.pixels,
            (max(1, round(width / block)), max(1, round(height / block))),
            interpolation=cv2.INTER_AREA,
        )
        return cv2.resize(small, (width, height), interpolation=cv2.INTER_NEAREST)


class Mask(Method):
    name = "mask"

    def anonymize(self, faces: Sequence[FaceCrop]) -> list[np.ndarray]:
        return [solid_fill(face) for face in faces]
