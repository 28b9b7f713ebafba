"""The project's own gender and age-group classifier, trained on UTKFace (`anoncli train attributes`).

It looks at the same square the generator works on (CONTEXT face sizes around the box, at 64×64), so it can
both estimate the original face's attributes and, frozen, give the generator its attribute loss.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import pairwise
from pathlib import Path

import cv2
import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from anoncli.attributes.base import AGE_GROUPS, ATTRIBUTE_SIZE, GENDERS, AttributeEstimator, Attributes
from anoncli.faces import Box, Face, centred_square, cut_square, face_size
from anoncli.generative.geometry import CONTEXT
from anoncli.generative.weights import WEIGHTS_DIR, load_checked

DEFAULT_WEIGHTS = WEIGHTS_DIR / "attributes64.pt"


def _block(in_channels: int, out_channels: int, stride: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, 3, stride, 1, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    )


class AttributeNet(nn.Module):
    """Image in [-1, 1] (N, 3, 64, 64) → logits (N, 6): gender (2) then age group (4)."""

    def __init__(self, channels: tuple[int, ...] = (16, 32, 64, 128)) -> None:
        super().__init__()
        self.channels = channels
        self.stem = _block(3, channels[0], 1)
        self.stages = nn.Sequential(
            *(nn.Sequential(_block(c_in, c_out, 2), _block(c_out, c_out, 1)) for c_in, c_out in pairwise(channels))
        )
        self.head = nn.Sequential(nn.Dropout(0.2), nn.Linear(channels[-1], ATTRIBUTE_SIZE))

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        features = self.stages(self.stem(image))
        return self.head(features.mean(dim=(2, 3)))


PARTS = ((0, len(GENDERS)), (len(GENDERS), ATTRIBUTE_SIZE))  # gender, age group in logits and targets


def attribute_cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """(N, 2): each face's cross-entropy of gender and of age group against one-hot `targets`."""
    return torch.stack(
        [
            F.cross_entropy(logits[:, start:end], targets[:, start:end].argmax(dim=1), reduction="none")
            for start, end in PARTS
        ],
        dim=1,
    )


def attribute_accuracy(logits: torch.Tensor, targets: torch.Tensor) -> dict[str, float]:
    """Share of faces whose gender / age group the logits get right, over the faces whose `targets` give it."""
    result = {}
    for name, (start, end) in zip(("gender", "age_group"), PARTS):
        known = targets[:, start:end].sum(dim=1) > 0
        correct = logits[known, start:end].argmax(dim=1) == targets[known, start:end].argmax(dim=1)
        result[name] = correct.float().mean().item()
    return result


def attribute_loss(logits: torch.Tensor, targets: torch.Tensor, margin: float | torch.Tensor = 0.0) -> torch.Tensor:
    """Cross-entropy of gender and age group against one-hot `targets`; all-zero (unknown) parts are skipped.

    With a `margin` (one for all, or (N, 2): per face, for gender and for age group), a face whose
    cross-entropy is already below it adds nothing: a generator is asked for a face the classifier is fairly
    sure of, not for one that fools it completely.
    """
    shortfall = F.relu(attribute_cross_entropy(logits, targets) - margin)
    total = logits.new_zeros(())
    for part, (start, end) in enumerate(PARTS):
        known = targets[:, start:end].sum(dim=1) > 0
        if known.any():
            total = total + shortfall[known, part].mean()
    return total


def face_square(image: np.ndarray, box: Box, resolution: int) -> np.ndarray:
    """The generator's square around a face (zeros off the image), at `resolution`, uint8 RGB."""
    pixels, _ = cut_square(image, centred_square(box, CONTEXT * face_size(box)))
    return cv2.resize(pixels, (resolution, resolution), interpolation=cv2.INTER_AREA)


def load_classifier(weights: Path, device: str) -> tuple[AttributeNet, dict]:
    state, manifest = load_checked(weights)
    network = AttributeNet(tuple(manifest["architecture"]["channels"]))
    network.load_state_dict(state)
    return network.eval().requires_grad_(False).to(device), manifest


class UTKFaceEstimator(AttributeEstimator):
    name = "anoncli"

    def __init__(self, device: str = "cpu", weights: Path = DEFAULT_WEIGHTS) -> None:
        self.device = device
        self.network, self.manifest = load_classifier(weights, device)
        self.resolution = self.manifest["architecture"]["resolution"]

    @torch.inference_mode()
    def estimate(self, image: np.ndarray, faces: Sequence[Face]) -> list[Attributes]:
        if not faces:
            return []
        squares = np.stack([face_square(image, face.box, self.resolution) for face in faces])
        batch = torch.from_numpy(squares).permute(0, 3, 1, 2).float().to(self.device) / 127.5 - 1
        logits = self.network(batch).cpu()
        genders = logits[:, : len(GENDERS)].argmax(dim=1).tolist()
        ages = logits[:, len(GENDERS) :].argmax(dim=1).tolist()
        return [Attributes(GENDERS[g], AGE_GROUPS[a]) for g, a in zip(genders, ages)]
