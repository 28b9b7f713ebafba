"""`ganonymization`: a new face drawn from FaceMesh's points alone (GANonymization, Hellmann et al. 2023: pix2pix
from facial landmarks), placed in the photo by the mesh's frame over deepprivacy's drawing.

The generator (`anoncli train ganonymization`) is shown the mesh's 468 points drawn white on black in the
mesh's frame (eyes level) and nothing else: pose and expression reach the new face; skin colour, hair, gender
cues and accessories do not. Its colour is then matched to deepprivacy's skin around the face (which follows the
photo's light) and it is blended in within the face outline and a margin past it.
"""

from __future__ import annotations

import numpy as np

from anoncli.anonymizers.base import FaceCrop
from anoncli.anonymizers.framed import MeshFramed
from anoncli.generative.conditioning import MESH_POINTS_ONLY
from anoncli.generative.mesh_input import framed_points, points_image
from anoncli.generative.weights import WEIGHTS_DIR

DEFAULT_WEIGHTS = WEIGHTS_DIR / "ganonymization64.pt"


class GANonymization(MeshFramed):
    name = "ganonymization"
    conditioning = MESH_POINTS_ONLY
    default_weights = DEFAULT_WEIGHTS

    def condition(self, face: FaceCrop, mesh: np.ndarray, base: np.ndarray, frame: np.ndarray) -> np.ndarray:
        return points_image(framed_points(mesh, frame), self.generator.resolution)[None]
