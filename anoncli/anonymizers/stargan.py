"""`stargan`: attribute flipping as anonymization (StarGAN, Choi et al. 2018; the research's seed 000): the face
itself translated to another gender and age group.

This method SEES THE FACE: the translator's input is the face's own pixels in its mesh's frame, and what it
keeps of them (pose, expression, much of the build of the face) can leave the person recognisable; seed 000
found attribute flips alone do. The face's gender and age group are estimated on the original (as for
`--preserve`); those named in `--flip` (default: both) are asked for flipped, the others as they are. The
translated face replaces the face inside its outline; its surroundings stay as they were. A face FaceMesh
cannot fit is drawn by deepprivacy instead.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from anoncli.anonymizers.base import FaceCrop, StandIn
from anoncli.anonymizers.framed import MeshFramed
from anoncli.attributes.base import AGE_GROUPS, ATTRIBUTE_NAMES, GENDERS, Attributes
from anoncli.generative.conditioning import FACE_PIXELS
from anoncli.generative.mesh_input import into_frame
from anoncli.generative.weights import WEIGHTS_DIR

DEFAULT_WEIGHTS = WEIGHTS_DIR / "stargan64.pt"
# An age group flipped: the young made old, the old young.
FLIPPED_AGE = {"0-19": "40+", "20-29": "40+", "30-39": "20-29", "40+": "20-29"}


def flipped(attributes: Attributes, flips: Sequence[str], seed: int) -> Attributes:
    """The attributes a face is translated to: those in `flips` flipped (an unknown one drawn by `seed`), the
    others as they are."""
    rng = np.random.default_rng(seed)
    gender, age_group = attributes.gender, attributes.age_group
    if "gender" in flips:
        gender = GENDERS[1 - GENDERS.index(gender)] if gender else GENDERS[rng.integers(len(GENDERS))]
    if "age" in flips:
        age_group = FLIPPED_AGE[age_group] if age_group else AGE_GROUPS[rng.integers(len(AGE_GROUPS))]
    return Attributes(gender, age_group)


class StarGAN(MeshFramed):
    name = "stargan"
    conditioning = FACE_PIXELS
    default_weights = DEFAULT_WEIGHTS
    supported_flips = ATTRIBUTE_NAMES
    flips = ATTRIBUTE_NAMES
    reads_attributes = ATTRIBUTE_NAMES
    sees_face = True

    def bases(self, faces: Sequence[FaceCrop], fitted: Sequence[int]) -> list[np.ndarray]:
        """The face itself where it has a mesh (the translation is drawn over it); the surroundings' drawing
        where it has none."""
        unfitted = sorted(set(range(len(faces))) - set(fitted))
        drawn = dict(zip(unfitted, self.surroundings.anonymize([faces[i] for i in unfitted]) if unfitted else []))
        bases = []
        for index, face in enumerate(faces):
            base = drawn.get(index, face.pixels)
            bases.append(base.pixels if isinstance(base, StandIn) else base)
        return bases

    def condition(self, face: FaceCrop, mesh: np.ndarray, base: np.ndarray, frame: np.ndarray) -> np.ndarray:
        pixels, valid = into_frame(face.pixels, frame, self.generator.resolution)
        return ((pixels.astype(np.float32) / 127.5 - 1) * valid[..., None]).transpose(2, 0, 1)

    def codes(self, faces: Sequence[FaceCrop]) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        targets = [flipped(face.attributes, self.flips, face.seed).vector() for face in faces]
        return torch.from_numpy(np.stack(targets)).to(self.device), None
