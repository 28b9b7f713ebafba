"""`ciagan`: the face erased inside its outline and drawn anew as a chosen fake identity (CIAGAN, Maximov et al.
2020), from the surroundings and the nose, mouth and jaw points alone.

The generator (`anoncli train ciagan`) is shown, in the mesh's frame, the surroundings' drawing of the face's
context (deepprivacy's, over the detector's erased region: never the face's own pixels) with the face inside its
outline erased, and FaceMesh's nose, mouth and jaw-line points (CIAGAN's landmarks: no eyes); the fake identity
is a one-hot code at its bottleneck. Identities are pseudo-identities (clusters of dlib embeddings of the
training faces, see `training.identities`): `--identity N` draws every face as identity N; by default each face
gets one by its seed, so a video track keeps its own.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from anoncli.anonymizers.base import FaceCrop
from anoncli.anonymizers.framed import MeshFramed
from anoncli.generative.conditioning import ERASED_LANDMARKS
from anoncli.generative.mesh_input import NOSE_MOUTH_JAW, drawn_region, framed_points, into_frame, points_image
from anoncli.generative.sampling import one_hot_identities
from anoncli.generative.weights import WEIGHTS_DIR

DEFAULT_WEIGHTS = WEIGHTS_DIR / "ciagan64.pt"


class CIAGAN(MeshFramed):
    name = "ciagan"
    conditioning = ERASED_LANDMARKS
    default_weights = DEFAULT_WEIGHTS

    @property
    def identities(self) -> int:
        return self.generator.identities

    def condition(self, face: FaceCrop, mesh: np.ndarray, base: np.ndarray, frame: np.ndarray) -> np.ndarray:
        side = self.generator.resolution
        points = framed_points(mesh, frame)
        context, valid = into_frame(base, frame, side)
        erased = drawn_region(points, side) & valid.astype(bool)
        known = valid.astype(bool) & ~erased
        pixels = (context.astype(np.float32) / 127.5 - 1) * known[..., None]
        landmarks = points_image(points[list(NOSE_MOUTH_JAW)], side)
        return np.concatenate([pixels.transpose(2, 0, 1), known[None], erased[None], landmarks[None]]).astype(
            np.float32
        )

    def codes(self, faces: Sequence[FaceCrop]) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        chosen = [face.seed % self.identities if self.identity is None else self.identity for face in faces]
        return None, one_hot_identities(chosen, self.identities, self.device)
