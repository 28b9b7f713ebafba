"""`ksame`: a k-anonymous composite face, posed like the target by a dense face mesh (k-Same, Newton et al.
2005; pose and expression by MediaPipe FaceMesh).

Every pixel of the new face comes from real faces: composites of at least k donors each, pushed out from their
group's mean face as far as single faces stray from it (the composite bank, built by `anoncli train ksame`).
The method fits FaceMesh on the detector's crop, picks a composite by seed (and gender and age group with
`--preserve`), takes the composite's own shape (so the target's identity-bearing geometry does not reach the
output), turns it to the target's head pose, opens its mouth (a little) and eyes as far as the target's, warps
the composite's texture onto it and the ring just past its outline (its donors' jaw line and hairline), matches
its colour to what `deepprivacy` drew in the erased face region and blends it in band by band. deepprivacy's
drawing is also the face's surroundings, hair and ears. A face FaceMesh fits no mesh to gets the bank's mean
shape placed by the detector's five landmarks when they show it frontal, and keeps deepprivacy's drawing when
they show it turned: the method never sees the face's pixels beyond its mesh.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from anoncli.anonymizers.base import CORE_MASK_LEVEL, FaceCrop
from anoncli.anonymizers.meshed import MeshDrawn, blend_in
from anoncli.composites.bank import DEFAULT_BANK, MARGIN, CompositeBank
from anoncli.composites.mesh import (
    CHIN,
    FACE_OVAL,
    FOREHEAD,
    INNER_LIP_LOWER,
    LEFT_EYE_LOWER,
    LEFT_EYE_UPPER,
    MESH_POINTS,
    OUTER_LIP_LOWER,
    RIGHT_EYE_LOWER,
    RIGHT_EYE_UPPER,
    RING_TRIANGLES,
    openings,
    outline_with_margin,
    similarity,
    with_margin_ring,
)
from anoncli.composites.warp import warp
from anoncli.generative.mesh_input import inside_polygon
from anoncli.io.images import LUMA_WEIGHTS

# How far each point of a lip or eyelid line follows an opening: fully at its middle, not at its corners.
LIP_PROFILE = np.sin(np.linspace(0, np.pi, len(INNER_LIP_LOWER)))
LID_PROFILE = np.sin(np.linspace(0, np.pi, len(RIGHT_EYE_UPPER) + 2)[1:-1])
# The target's mouth opening is carried over up to this share of the face's height: the composites are of
# closed mouths, and wider, their lips would only stretch.
MOUTH_CAP = 0.03
# The composite's colour is matched to deepprivacy's drawing on the skin just inside the face outline (this share
# of its distance from the outline's centre wide): past the outline lie hair and the ground the donors had.
SKIN_BAND = 0.15
# Grain: the photo's finest band is measured robustly (median absolute value, as a Gaussian sigma) on the ring so
# that the few strong edges there (hair, collar) do not count, and GRAIN_SHARE of it is matched.
GRAIN_SHARE = 1.0
GRAIN_SIGMA = 0.6
MAD_TO_SIGMA = 1.4826
GRAIN_REACH = 4  # pixels: the finest band's Gaussian (sigma 1) is cut at 4 sigma


def expressed(shape: np.ndarray, target: np.ndarray) -> np.ndarray:
    """The composite's `shape` with its mouth and eyes opened (or closed) as far as the `target` mesh's,
    in its own frame (y down)."""
    shape = shape.copy()
    height = float(np.linalg.norm(shape[CHIN] - shape[FOREHEAD]))
    wanted = openings(target)
    wanted[0] = min(wanted[0], max(MOUTH_CAP, float(openings(shape)[0])))
    mouth, right_eye, left_eye = (wanted - openings(shape)) * height
    shape[list(INNER_LIP_LOWER), 1] += mouth * LIP_PROFILE
    shape[list(OUTER_LIP_LOWER), 1] += mouth * LIP_PROFILE
    eyes = ((right_eye, RIGHT_EYE_UPPER, RIGHT_EYE_LOWER), (left_eye, LEFT_EYE_UPPER, LEFT_EYE_LOWER))
    for gap, upper, lower in eyes:
        shape[list(upper), 1] -= gap / 2 * LID_PROFILE
        shape[list(lower), 1] += gap / 2 * LID_PROFILE
    return shape


class KSame(MeshDrawn):
    name = "ksame"
    supported_attributes = ("gender", "age")

    def __init__(self, device: str = "cpu", bank: Path = DEFAULT_BANK) -> None:
        super().__init__(device)
        self.bank = CompositeBank.load(bank)
        self.template = self.bank.mean_shape
        self._triangles = np.concatenate([self.bank.triangles, RING_TRIANGLES])

    def draw_meshed(
        self, faces: Sequence[FaceCrop], meshes: Sequence[np.ndarray], bases: Sequence[np.ndarray]
    ) -> list[np.ndarray | None]:
        return [self._composite(face, mesh, base) for face, mesh, base in zip(faces, meshes, bases)]

    def _composite(self, face: FaceCrop, mesh: np.ndarray, base: np.ndarray) -> np.ndarray | None:
        """`base` with the composite drawn over the face; None when too little of it lies in the crop."""
        index = self.bank.choose(face.seed, face.attributes, self.skin_tone)
        shape = with_margin_ring(self.bank.shapes[index], MARGIN)
        frame = similarity(shape[:MESH_POINTS], mesh)
        posed = frame.apply(with_margin_ring(expressed(self.bank.shapes[index], mesh), MARGIN))
        height, width = base.shape[:2]
        texture, covered = warp(
            self.bank.textures[index], shape[:, :2], posed[:, :2], self._triangles, (height, width), posed[:, 2]
        )
        outline = posed[list(FACE_OVAL), :2]
        skin = inside_polygon(outline, height, width) & ~inside_polygon(
            outline_with_margin(posed, -SKIN_BAND), height, width
        )
        blended = blend_in(
            texture, covered, base, posed, face.face_size, reference=skin, steady=self.steady_colour(face)
        )
        if blended is None:
            return None
        pixels = blended.pixels + self._grain(face, blended.texture, blended.inner) * blended.weight[..., None]
        return np.clip(np.rint(pixels), 0, 255).astype(np.uint8)

    @staticmethod
    def _grain(face: FaceCrop, texture: np.ndarray, inner: np.ndarray) -> np.ndarray:
        """Seeded fine grain that brings the composite's finest band up to the photo's around the face (the
        ring outside the erased core): an average of donors, enlarged, is smoother than any photo."""
        core = (face.mask >= CORE_MASK_LEVEL).astype(np.uint8)
        # The band's blur reaches GRAIN_REACH pixels: the ring is taken that far from the erased core.
        near_core = cv2.dilate(core, np.ones((2 * GRAIN_REACH + 1, 2 * GRAIN_REACH + 1), np.uint8)).astype(bool)
        ring = (face.mask > 0) & ~near_core
        if ring.sum() < 16:
            return np.zeros_like(texture)
        photo, drawn = _finest_band(face.pixels.astype(np.float32)), _finest_band(texture)
        wanted = GRAIN_SHARE * float(np.median(np.abs(photo[ring]))) * MAD_TO_SIGMA
        present = float(np.median(np.abs(drawn[inner]))) * MAD_TO_SIGMA
        if wanted <= present:
            return np.zeros_like(texture)
        noise = np.random.default_rng(face.seed).standard_normal(texture.shape[:2]).astype(np.float32)
        noise = cv2.GaussianBlur(noise, (0, 0), GRAIN_SIGMA)
        noise *= np.sqrt(wanted**2 - present**2) / max(float(noise.std()), 1e-6)
        return np.repeat(noise[..., None], 3, axis=2)


def _finest_band(image: np.ndarray) -> np.ndarray:
    """The luma of `image` (float RGB) less its slightly blurred self: grain and the finest edges."""
    luma = image @ LUMA_WEIGHTS
    return luma - cv2.GaussianBlur(luma, (2 * GRAIN_REACH + 1, 2 * GRAIN_REACH + 1), 1.0)
