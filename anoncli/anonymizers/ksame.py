"""`ksame`: a k-anonymous composite face, posed like the target by a dense face mesh (k-Same, Newton et al.
2005; pose and expression by MediaPipe FaceMesh).

Every pixel of the new face comes from real faces averaged over at least k donors (the composite bank, built by
`anoncli train ksame`). The method fits FaceMesh on the detector's crop, picks a composite by seed (and gender
and age group with `--preserve`), takes the composite's own mean shape (so the target's identity-bearing
geometry does not reach the output), turns it to the target's head pose, opens its mouth and eyes as far as
the target's, warps the composite's texture onto it and clones it, gradients only, into what `deepprivacy`
drew in the erased face region. That is also the face's surroundings, hair and ears, and what a face
FaceMesh cannot fit (profile, occlusion, tiny) keeps: the method never sees the face's pixels beyond its mesh.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from anoncli.anonymizers.base import FaceCrop, Method, StandIn
from anoncli.anonymizers.deepprivacy import DeepPrivacy
from anoncli.composites.bank import DEFAULT_BANK, CompositeBank
from anoncli.composites.blend import colour_matched, multiband
from anoncli.composites.mesh import (
    CHIN,
    FOREHEAD,
    INNER_LIP_LOWER,
    INNER_LIP_UPPER,
    LEFT_EYE_LOWER,
    LEFT_EYE_UPPER,
    MEDIAPIPE_INSTALL,
    OUTER_LIP_LOWER,
    RIGHT_EYE_LOWER,
    RIGHT_EYE_UPPER,
    FaceMesher,
    openings,
    similarity,
)
from anoncli.composites.warp import warp
from anoncli.generative.geometry import CONTEXT

# How far each point of a lip or eyelid line follows an opening: fully at its middle, not at its corners.
LIP_PROFILE = np.sin(np.linspace(0, np.pi, len(INNER_LIP_LOWER)))
LID_PROFILE = np.sin(np.linspace(0, np.pi, len(RIGHT_EYE_UPPER) + 2)[1:-1])
# A mouth opened wider than this share of the face's height shows its inside, shaded darker.
OPEN_MOUTH = 0.03
MOUTH_INSIDE = (70, 35, 35)
MOUTH_DARKNESS = 0.8
# The composite's colour is matched to the drawn skin in a band this share of the face size wide along its
# edge (below the eyes: above them lies hair), and faded into it over a feather of this share.
BAND_SHARE = 0.08
NO_MESH = "ksame: FaceMesh fitted no mesh to this face (turned away, hidden or tiny); deepprivacy drew it"
FEATHER_SHARE = 0.03


def expressed(shape: np.ndarray, target: np.ndarray) -> np.ndarray:
    """The composite's mean `shape` with its mouth and eyes opened (or closed) as far as the `target` mesh's,
    in its own frame (y down)."""
    shape = shape.copy()
    height = float(np.linalg.norm(shape[CHIN] - shape[FOREHEAD]))
    mouth, right_eye, left_eye = (openings(target) - openings(shape)) * height
    shape[list(INNER_LIP_LOWER), 1] += mouth * LIP_PROFILE
    shape[list(OUTER_LIP_LOWER), 1] += mouth * LIP_PROFILE
    eyes = ((right_eye, RIGHT_EYE_UPPER, RIGHT_EYE_LOWER), (left_eye, LEFT_EYE_UPPER, LEFT_EYE_LOWER))
    for gap, upper, lower in eyes:
        shape[list(upper), 1] -= gap / 2 * LID_PROFILE
        shape[list(lower), 1] += gap / 2 * LID_PROFILE
    return shape


class KSame(Method):
    name = "ksame"
    context = CONTEXT
    default_mask_scale = DeepPrivacy.default_mask_scale
    generative = True
    supported_attributes = ("gender", "age")
    supports_skin_tone = True

    def __init__(self, device: str = "cpu", bank: Path = DEFAULT_BANK) -> None:
        try:
            self.mesher = FaceMesher()
        except ImportError:
            raise ValueError(f"method ksame needs MediaPipe's FaceMesh: {MEDIAPIPE_INSTALL}") from None
        self.surroundings = DeepPrivacy(device=device)
        self.bank = CompositeBank.load(bank)

    def meshes(self, faces: Sequence[FaceCrop]) -> list[np.ndarray | None]:
        """FaceMesh of each face on its crop, None where it finds none."""
        return [self.mesher.fit(face.pixels, face.box) for face in faces]

    def anonymize(self, faces: Sequence[FaceCrop]) -> list[np.ndarray | StandIn]:
        return self.draw(faces, self.meshes(faces))

    def draw(self, faces: Sequence[FaceCrop], meshes: Sequence[np.ndarray | None]) -> list[np.ndarray | StandIn]:
        """The new faces, given each face's mesh (None: the face deepprivacy drew stands in)."""
        self.surroundings.skin_tone = self.skin_tone
        drawn = self.surroundings.anonymize(faces)
        outputs: list[np.ndarray | StandIn] = []
        for face, mesh, base in zip(faces, meshes, drawn):
            composite = None if mesh is None else self._composite(face, mesh, base)
            outputs.append(StandIn(base, NO_MESH) if composite is None else composite)
        return outputs

    def _composite(self, face: FaceCrop, mesh: np.ndarray, base: np.ndarray) -> np.ndarray | None:
        """`base` with the composite drawn over the face; None when too little of it lies in the crop."""
        index = self.bank.choose(face.seed, face.attributes, self.skin_tone)
        shape = self.bank.shapes[index]
        frame = similarity(shape, mesh)
        posed = frame.apply(expressed(shape, mesh))
        height, width = base.shape[:2]
        texture, covered = warp(
            self.bank.textures[index], shape[:, :2], posed[:, :2], self.bank.triangles, (height, width), posed[:, 2]
        )
        if openings(mesh)[0] > OPEN_MOUTH:
            inside = np.concatenate([posed[list(INNER_LIP_UPPER), :2], posed[list(INNER_LIP_LOWER)[::-1], :2]])
            mouth = np.zeros((height, width), np.uint8)
            cv2.fillPoly(mouth, [np.rint(inside * 16).astype(np.int32)], 255, cv2.LINE_AA, shift=4)
            shade = (mouth.astype(np.float32) / 255 * MOUTH_DARKNESS)[..., None]
            texture = texture * (1 - shade) + np.array(MOUTH_INSIDE, np.float32) * shade
        size = face.face_size
        inner = cv2.erode(covered.astype(np.uint8), _disc(BAND_SHARE * size)).astype(bool)
        band = covered & ~inner
        band[: int(posed[list(RIGHT_EYE_LOWER + LEFT_EYE_LOWER), 1].max())] = False  # the skin below the eyes
        if band.sum() < 16 or not inner.any():
            return None
        texture = colour_matched(texture, base, band)
        weight = cv2.GaussianBlur(inner.astype(np.float32), (0, 0), FEATHER_SHARE * size)
        blended = multiband(texture, base.astype(np.float32), np.where(covered, weight, 0.0))
        return np.clip(np.rint(blended), 0, 255).astype(np.uint8)


def _disc(diameter: float) -> np.ndarray:
    side = max(int(diameter) | 1, 3)
    return cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (side, side))
