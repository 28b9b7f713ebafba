"""Generative methods that draw the face in its mesh's frame (`generative.mesh_input`) and place it back inside
the face outline and a margin past it, colour-matched and blended over the face they are drawn on.

A method here says what its generator is shown of each face (`condition`), and which attributes and fake
identity it asks for (`codes`); loading, batching, seeding and placing the faces are shared.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np
import torch

from anoncli.anonymizers.base import FaceCrop, Method
from anoncli.anonymizers.meshed import MeshDrawn, blend_in
from anoncli.composites.mesh import outline_with_margin
from anoncli.generative.conditioning import Conditioning
from anoncli.generative.mesh_input import OUTLINE_MARGIN, inside_polygon, mesh_frame, out_of_frame
from anoncli.generative.sampling import generate
from anoncli.generative.weights import WeightsError, load_generator


class MeshFramed(MeshDrawn):
    conditioning: Conditioning  # what the method's weights must be trained on
    default_weights: Path

    def __init__(
        self,
        device: str = "cpu",
        weights: Path | None = None,
        batch_size: int = 64,
        surroundings: Method | None = None,
    ) -> None:
        super().__init__(device, surroundings)
        self.device = device
        self.batch_size = batch_size
        weights = weights or self.default_weights
        self.generator, self.manifest = load_generator(weights, device)
        if self.generator.conditioning != self.conditioning:
            raise WeightsError(f"{weights} are not conditioned on {self.conditioning.name}; they are not {self.name}'s")

    @abstractmethod
    def condition(self, face: FaceCrop, mesh: np.ndarray, base: np.ndarray, frame: np.ndarray) -> np.ndarray:
        """(channels, R, R) float32: what the generator is shown of one face, in its frame."""

    def codes(self, faces: Sequence[FaceCrop]) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """The attributes (N, ATTRIBUTE_SIZE) and fake identities (N, identities) asked for; None: none."""
        return None, None

    def draw_meshed(
        self, faces: Sequence[FaceCrop], meshes: Sequence[np.ndarray], bases: Sequence[np.ndarray]
    ) -> list[np.ndarray | None]:
        side = self.generator.resolution
        frames = [mesh_frame(mesh, side) for mesh in meshes]
        drawn: list[np.ndarray] = []
        for start in range(0, len(faces), self.batch_size):
            batch = range(start, min(start + self.batch_size, len(faces)))
            conditions = np.stack([self.condition(faces[i], meshes[i], bases[i], frames[i]) for i in batch])
            drawn.extend(self._generated(conditions, [faces[i] for i in batch]))
        return [
            self._placed(face, mesh, base, frame, image)
            for face, mesh, base, frame, image in zip(faces, meshes, bases, frames, drawn)
        ]

    @torch.inference_mode()
    def _generated(self, conditions: np.ndarray, faces: Sequence[FaceCrop]) -> np.ndarray:
        """(N, R, R, 3) float RGB faces in their frames."""
        condition = torch.from_numpy(conditions).float().to(self.device)
        attributes, identity = self.codes(faces)
        region = torch.ones_like(condition[:, :1])
        generated = generate(self.generator, condition, region, [face.seed for face in faces], attributes, identity)
        return ((generated.float().clamp(-1, 1) + 1) * 127.5).permute(0, 2, 3, 1).cpu().numpy()

    def _placed(
        self, face: FaceCrop, mesh: np.ndarray, base: np.ndarray, frame: np.ndarray, image: np.ndarray
    ) -> np.ndarray | None:
        height, width = base.shape[:2]
        texture = out_of_frame(image, frame, height, width)
        side = image.shape[0]
        corners = np.array([[0, 0], [side, 0], [side, side], [0, side]], np.float64)
        inverse = cv2.invertAffineTransform(frame)
        in_frame = inside_polygon(corners @ inverse[:, :2].T + inverse[:, 2], height, width)
        covered = inside_polygon(outline_with_margin(mesh, OUTLINE_MARGIN), height, width) & in_frame
        blended = blend_in(texture, covered, base, mesh, face.face_size, steady=self.steady_colour(face))
        return None if blended is None else np.clip(np.rint(blended.pixels), 0, 255).astype(np.uint8)
