"""Methods that draw a new face placed by the target's FaceMesh, over another method's drawing of the face.

The other method (`surroundings`: deepprivacy unless a method says otherwise) covers the whole erased region
(hair, ears, the face's surroundings) and stands in for a face FaceMesh cannot fit (profile, occlusion, tiny); a
method here draws inside the mesh's face outline (and a margin past it) from the mesh and the seed alone,
colour-matched to the surroundings' skin below the eyes and blended band by band. Neither sees the face's pixels,
so the privacy test holds for every method here: with the meshes fixed, scrambling the faces gives the same
output.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from anoncli.anonymizers.base import FaceCrop, Method, StandIn
from anoncli.anonymizers.deepprivacy import DeepPrivacy
from anoncli.composites.blend import colour_matched, multiband
from anoncli.composites.mesh import LEFT_EYE_LOWER, MEDIAPIPE_INSTALL, RIGHT_EYE_LOWER, FaceMesher
from anoncli.generative.geometry import CONTEXT

# The new face's colour is matched to the drawn skin in a band this share of the face size wide along its
# edge (below the eyes: above them lies hair), and faded into it over a feather of this share.
BAND_SHARE = 0.08
FEATHER_SHARE = 0.03
NO_MESH = "FaceMesh fitted no mesh to this face (turned away, hidden or tiny)"
OUT_OF_PHOTO = "too little of the face lies in the photo"


@dataclass
class Blended:
    pixels: np.ndarray  # (h, w, 3) float32, the new face over the base
    texture: np.ndarray  # (h, w, 3) float32, the new face colour-matched
    weight: np.ndarray  # (h, w) float32, how much of the new face each pixel holds
    inner: np.ndarray  # (h, w) bool, the new face less its colour-matching band


def blend_in(
    texture: np.ndarray, covered: np.ndarray, base: np.ndarray, mesh: np.ndarray, size: float
) -> Blended | None:
    """`texture` (float RGB, drawn where `covered`) over `base`: colour-matched to `base` on the band along the
    edge of `covered` below the eyes of `mesh`, faded in over a feather and blended band by band. None when too
    little of the band or the face lies in the crop."""
    inner = cv2.erode(covered.astype(np.uint8), _disc(BAND_SHARE * size)).astype(bool)
    band = covered & ~inner
    band[: max(int(mesh[list(RIGHT_EYE_LOWER + LEFT_EYE_LOWER), 1].max()), 0)] = False
    if band.sum() < 16 or not inner.any():
        return None
    texture = colour_matched(texture, base, band)
    weight = np.where(covered, cv2.GaussianBlur(inner.astype(np.float32), (0, 0), FEATHER_SHARE * size), 0.0)
    blended = multiband(texture, base.astype(np.float32), weight)
    return Blended(blended, texture, weight.astype(np.float32), inner)


def _disc(diameter: float) -> np.ndarray:
    side = max(int(diameter) | 1, 3)
    return cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (side, side))


class MeshDrawn(Method):
    context = CONTEXT
    default_mask_scale = DeepPrivacy.default_mask_scale
    generative = True
    supports_skin_tone = True

    def __init__(self, device: str = "cpu", surroundings: Method | None = None) -> None:
        try:
            self.mesher = FaceMesher()
        except ImportError:
            raise ValueError(f"method {self.name} needs MediaPipe's FaceMesh: {MEDIAPIPE_INSTALL}") from None
        self.surroundings = surroundings or DeepPrivacy(device=device)

    def meshes(self, faces: Sequence[FaceCrop]) -> list[np.ndarray | None]:
        """FaceMesh of each face on its crop, None where it finds none."""
        return [self.mesher.fit(face.pixels, face.box) for face in faces]

    def anonymize(self, faces: Sequence[FaceCrop]) -> list[np.ndarray | StandIn]:
        return self.draw(faces, self.meshes(faces))

    def draw(self, faces: Sequence[FaceCrop], meshes: Sequence[np.ndarray | None]) -> list[np.ndarray | StandIn]:
        """The new faces, given each face's mesh (None: the face the surroundings drew stands in)."""
        fitted = [index for index, mesh in enumerate(meshes) if mesh is not None]
        bases = self.bases(faces, fitted)
        drawn = dict(
            zip(
                fitted,
                self.draw_meshed([faces[i] for i in fitted], [meshes[i] for i in fitted], [bases[i] for i in fitted]),
            )
        )
        outputs: list[np.ndarray | StandIn] = []
        for index, base in enumerate(bases):
            if index not in drawn:
                outputs.append(StandIn(base, f"{self.name}: {NO_MESH}; {self.surroundings.name} drew it"))
            elif drawn[index] is None:
                outputs.append(StandIn(base, f"{self.name}: {OUT_OF_PHOTO}; {self.surroundings.name} drew it"))
            else:
                outputs.append(drawn[index])
        return outputs

    def bases(self, faces: Sequence[FaceCrop], fitted: Sequence[int]) -> list[np.ndarray]:
        """What each face is drawn over (and, where it has no mesh, what stands in for it): the surroundings'
        drawing."""
        if self.surroundings.supports_skin_tone:
            self.surroundings.skin_tone = self.skin_tone
        return [base.pixels if isinstance(base, StandIn) else base for base in self.surroundings.anonymize(faces)]

    @abstractmethod
    def draw_meshed(
        self, faces: Sequence[FaceCrop], meshes: Sequence[np.ndarray], bases: Sequence[np.ndarray]
    ) -> list[np.ndarray | None]:
        """Each face drawn over its base (the surroundings' drawing) from its mesh and seed alone; None where it
        cannot be."""
