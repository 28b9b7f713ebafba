"""`ganonymization`: a new face drawn from FaceMesh's points alone (GANonymization, Hellmann et al. 2023: pix2pix
from facial landmarks), placed in the photo by the mesh's frame over deepprivacy's drawing.

The generator (`anoncli train ganonymization`) is shown the mesh's 468 points drawn white on black in the
mesh's frame (eyes level) and nothing else: pose and expression reach the new face; skin colour, hair, gender
cues and accessories do not. Its colour is then matched to deepprivacy's skin around the face (which follows the
photo's light) and it is blended in within the face outline and a margin past it.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np
import torch

from anoncli.anonymizers.base import FaceCrop, Method
from anoncli.anonymizers.meshed import MeshDrawn, blend_in, outline_with_margin
from anoncli.generative.conditioning import MESH_POINTS_ONLY
from anoncli.generative.mesh_input import framed_points, mesh_frame, out_of_frame, points_image
from anoncli.generative.sampling import generate
from anoncli.generative.weights import WEIGHTS_DIR, WeightsError, load_generator

DEFAULT_WEIGHTS = WEIGHTS_DIR / "ganonymization64.pt"
# The new face reaches this share of the outline's distance from its centre past the face outline (within the
# mesh's frame, which the generator drew).
OUTLINE_MARGIN = 0.1
SUBPIXEL_BITS = 4  # polygons are filled at 1/16 pixel


class GANonymization(MeshDrawn):
    name = "ganonymization"

    def __init__(
        self,
        device: str = "cpu",
        weights: Path = DEFAULT_WEIGHTS,
        batch_size: int = 64,
        surroundings: Method | None = None,
    ) -> None:
        super().__init__(device, surroundings)
        self.device = device
        self.batch_size = batch_size
        self.generator, self.manifest = load_generator(weights, device)
        if self.generator.conditioning != MESH_POINTS_ONLY:
            raise WeightsError(f"{weights} are not conditioned on mesh points; they are not ganonymization's")

    def draw_meshed(
        self, faces: Sequence[FaceCrop], meshes: Sequence[np.ndarray], bases: Sequence[np.ndarray]
    ) -> list[np.ndarray | None]:
        side = self.generator.resolution
        frames = [mesh_frame(mesh, side) for mesh in meshes]
        drawn: list[np.ndarray] = []
        for start in range(0, len(faces), self.batch_size):
            batch = range(start, min(start + self.batch_size, len(faces)))
            points = [points_image(framed_points(meshes[i], frames[i]), side) for i in batch]
            drawn.extend(self._generated(np.stack(points), [faces[i].seed for i in batch]))
        return [
            self._placed(face, mesh, base, frame, image)
            for face, mesh, base, frame, image in zip(faces, meshes, bases, frames, drawn)
        ]

    @torch.inference_mode()
    def _generated(self, points: np.ndarray, seeds: list[int]) -> np.ndarray:
        """(N, R, R, 3) float RGB faces in their frames from (N, R, R) points images."""
        condition = torch.from_numpy(points)[:, None].to(self.device)
        generated = generate(self.generator, condition, torch.ones_like(condition), seeds)
        return ((generated.float().clamp(-1, 1) + 1) * 127.5).permute(0, 2, 3, 1).cpu().numpy()

    @staticmethod
    def _placed(
        face: FaceCrop, mesh: np.ndarray, base: np.ndarray, frame: np.ndarray, image: np.ndarray
    ) -> np.ndarray | None:
        height, width = base.shape[:2]
        texture = out_of_frame(image, frame, height, width)
        side = image.shape[0]
        corners = np.array([[0, 0], [side, 0], [side, side], [0, side]], np.float64)
        inverse = cv2.invertAffineTransform(frame)
        in_frame = _inside_polygon(corners @ inverse[:, :2].T + inverse[:, 2], height, width)
        covered = _inside_polygon(outline_with_margin(mesh, OUTLINE_MARGIN), height, width) & in_frame
        blended = blend_in(texture, covered, base, mesh, face.face_size)
        return None if blended is None else np.clip(np.rint(blended.pixels), 0, 255).astype(np.uint8)


def _inside_polygon(polygon: np.ndarray, height: int, width: int) -> np.ndarray:
    """Boolean (height, width) map of the inside of `polygon` (x, y points; pixel i spans [i, i + 1))."""
    inside = np.zeros((height, width), np.uint8)
    points = np.rint((polygon - 0.5) * (1 << SUBPIXEL_BITS)).astype(np.int32)
    cv2.fillPoly(inside, [points], 1, cv2.LINE_8, SUBPIXEL_BITS)
    return inside.astype(bool)
