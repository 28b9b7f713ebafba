"""`deepprivacy`: a new face inpainted into the erased face region by the project's own conditional GAN.

The generator sees the context around the face with the face ellipse erased (at full resolution, before any
resizing), the 5 landmarks as pose, and noise drawn from the face's seed; never the face itself. Its output is
colour-matched to the ring around the face and handed back for feathered paste-back.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np
import torch

from anoncli.anonymizers.base import CORE_MASK_LEVEL, Anonymizer, FaceCrop
from anoncli.generative.geometry import CONTEXT, Square, cut_square, prepare_input
from anoncli.generative.sampling import generate, to_tensors
from anoncli.generative.weights import WEIGHTS_DIR, load_generator

DEFAULT_WEIGHTS = WEIGHTS_DIR / "deepprivacy64.pt"


class DeepPrivacy(Anonymizer):
    name = "deepprivacy"
    context = CONTEXT

    def __init__(self, device: str = "cpu", weights: Path = DEFAULT_WEIGHTS, batch_size: int = 64) -> None:
        self.device = device
        self.generator, self.manifest = load_generator(weights, device)
        self.resolution = self.generator.resolution
        self.batch_size = batch_size

    def anonymize(self, faces: Sequence[FaceCrop]) -> list[np.ndarray]:
        outputs: list[np.ndarray] = []
        for start in range(0, len(faces), self.batch_size):
            outputs.extend(self._anonymize_batch(faces[start : start + self.batch_size]))
        return outputs

    @torch.inference_mode()
    def _anonymize_batch(self, faces: Sequence[FaceCrop]) -> list[np.ndarray]:
        squares = [self._square(face) for face in faces]
        inputs = []
        for face, square in zip(faces, squares):
            pixels, valid = cut_square(face.pixels, square)
            erase, _ = cut_square((face.mask >= CORE_MASK_LEVEL)[:, :, None].astype(np.uint8), square)
            landmarks = None if face.landmarks is None else face.landmarks - [square.x, square.y]
            inputs.append(prepare_input(pixels, valid, erase[:, :, 0].astype(bool), landmarks, self.resolution))
        condition, erased, _ = to_tensors(inputs, self.device)
        generated = generate(self.generator, condition, erased, [face.seed for face in faces])
        images = ((generated.float().clamp(-1, 1) + 1) * 127.5).permute(0, 2, 3, 1).cpu().numpy()
        return [self._place(face, square, image) for face, square, image in zip(faces, squares, images)]

    def _square(self, face: FaceCrop) -> Square:
        """The context square around the face, grown if needed to hold the whole mask."""
        x1, y1, x2, y2 = face.box
        centre_x, centre_y = (x1 + x2) / 2, (y1 + y2) / 2
        ys, xs = np.nonzero(face.mask > 0)
        reach = max(np.abs(xs + 0.5 - centre_x).max(), np.abs(ys + 0.5 - centre_y).max()) + 2 if len(xs) else 0
        side = max(round(face.face_size * CONTEXT), round(2 * reach), 4)
        return Square(round(centre_x - side / 2), round(centre_y - side / 2), side)

    @staticmethod
    def _place(face: FaceCrop, square: Square, generated: np.ndarray) -> np.ndarray:
        """Resize the generated square to the crop, shifted to the colour of the ring around the face."""
        height, width = face.pixels.shape[:2]
        scaled = cv2.resize(generated, (square.side, square.side), interpolation=cv2.INTER_CUBIC)
        placed = face.pixels.astype(np.float32)
        top, left = max(square.y, 0), max(square.x, 0)
        bottom, right = min(square.y + square.side, height), min(square.x + square.side, width)
        placed[top:bottom, left:right] = scaled[top - square.y : bottom - square.y, left - square.x : right - square.x]
        ring = (face.mask > 0) & (face.mask < CORE_MASK_LEVEL)
        if ring.any():
            shift = (face.pixels[ring].astype(np.float32) - placed[ring]).mean(axis=0)
            placed[top:bottom, left:right] += shift
        return np.clip(np.rint(placed), 0, 255).astype(np.uint8)
