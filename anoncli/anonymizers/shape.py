"""`shape`: the face's parts reshaped, then a new face drawn on the new shape (the three stages of the
segmentation-mask thesis, 001 §3, with what can be had offline).

1. The parts of the face come from its FaceMesh (eyes, eyebrows, nose, mouth, outline: `FACE_PARTS`) instead of
   a face-parsing network, and the erased head region is filled from its surroundings by OpenCV inpainting.
2. The shape step: every part not named in `--keep` takes the shape of a k-anonymous face (a composite's mesh
   from ksame's bank: k faces averaged and pushed out from their group's mean, chosen by seed) posed like the
   target, its mouth and eyes opened as the target's; the parts kept stay the target's, and the points near them
   follow them smoothly.
3. The new face is drawn on the new mesh by ganonymization's generator (a face from mesh points alone), so no
   pixel of the original face reaches the output, only the geometry of the parts kept.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from anoncli.anonymizers.base import FaceCrop, Method
from anoncli.anonymizers.ganonymization import GANonymization
from anoncli.anonymizers.ksame import expressed
from anoncli.attributes.base import UNKNOWN
from anoncli.composites.bank import DEFAULT_BANK, CompositeBank
from anoncli.composites.mesh import CHIN, FACE_PARTS, FOREHEAD, similarity

# Points near a kept part follow it: weight exp(-d² / 2σ²), σ this share of the face's forehead-to-chin height.
KEEP_REACH = 0.05
# The head region is inpainted at this face size (pixels), then scaled back: the fill is smooth anyway.
INPAINT_FACE_SIDE = 64
INPAINT_RADIUS = 3


class Inpainting(Method):
    """The erased region filled from the pixels around it (OpenCV's Telea inpainting), nothing of the face."""

    name = "inpainting"

    def anonymize(self, faces: Sequence[FaceCrop]) -> list[np.ndarray]:
        return [self._filled(face) for face in faces]

    @staticmethod
    def _filled(face: FaceCrop) -> np.ndarray:
        region = face.mask > 0
        height, width = region.shape
        scale = min(1.0, INPAINT_FACE_SIDE / max(face.face_size, 1.0))
        size = (max(round(width * scale), 1), max(round(height * scale), 1))
        small = cv2.resize(face.pixels, size, interpolation=cv2.INTER_AREA)
        # Every small pixel the region touches is filled, so no pixel of the face reaches the fill through the
        # shrinking.
        touched = cv2.resize(region.astype(np.float32), size, interpolation=cv2.INTER_AREA) > 0
        unknown = cv2.dilate(touched.astype(np.uint8), np.ones((3, 3), np.uint8))
        # Inpainting reads the values under its mask where the mask meets the image's edge: they are blanked.
        small[unknown > 0] = 0
        filled = cv2.inpaint(small, unknown, INPAINT_RADIUS, cv2.INPAINT_TELEA)
        large = cv2.resize(filled, (width, height), interpolation=cv2.INTER_LINEAR)
        return np.where(region[..., None], large, face.pixels)


class Shape(GANonymization):
    name = "shape"
    supported_parts = tuple(FACE_PARTS)
    supports_skin_tone = False

    def __init__(self, device: str = "cpu", weights: Path | None = None, bank: Path = DEFAULT_BANK) -> None:
        super().__init__(device, weights, surroundings=Inpainting())
        self.bank = CompositeBank.load(bank)
        self._mean_shape = self.bank.mean_shape
        self._followers: dict[tuple[int, tuple[str, ...]], np.ndarray] = {}

    @property
    def template(self) -> np.ndarray | None:
        """The bank's mean shape for faces FaceMesh fits no mesh to, unless parts of the face are kept: a template
        holds none of them."""
        return None if self.keep else self._mean_shape

    def draw_meshed(
        self, faces: Sequence[FaceCrop], meshes: Sequence[np.ndarray], bases: Sequence[np.ndarray]
    ) -> list[np.ndarray | None]:
        return super().draw_meshed(faces, [self.reshaped(face.seed, mesh) for face, mesh in zip(faces, meshes)], bases)

    def reshaped(self, seed: int, mesh: np.ndarray) -> np.ndarray:
        """`mesh` with every part not kept in the shape of the mean face `seed` chooses, posed like it."""
        index = self.bank.choose(seed, UNKNOWN)
        shape = self.bank.shapes[index].astype(np.float32)
        donor = expressed(shape, mesh)
        posed = similarity(donor, mesh).apply(donor)
        kept = self._kept_weight(index, shape)[:, None]
        return (kept * mesh + (1 - kept) * posed).astype(np.float32)

    def _kept_weight(self, index: int, shape: np.ndarray) -> np.ndarray:
        """Per point, how much it follows the target: 1 on a kept part, fading with distance from it (measured
        on the mean face's own mesh)."""
        key = (index, self.keep)
        if key not in self._followers:
            weight = np.zeros(len(shape), np.float32)
            points = [i for part in self.keep for i in FACE_PARTS[part]]
            if points:
                reach = KEEP_REACH * float(np.linalg.norm(shape[FOREHEAD] - shape[CHIN]))
                distances = np.linalg.norm(shape[:, None, :2] - shape[None, points, :2], axis=2).min(axis=1)
                weight = np.exp(-(distances**2) / (2 * reach**2)).astype(np.float32)
            self._followers[key] = weight
        return self._followers[key]
