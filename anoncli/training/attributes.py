"""Training the gender and age-group classifier (`anoncli train attributes`) on labelled, prepared faces.

Faces are cut exactly as the generator sees them (see `attributes.classifier.face_square`); the held-out 5 %
of files measure accuracy, and the best epoch ships.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.nn import functional as F

from anoncli.attributes.classifier import AttributeNet, attribute_accuracy, attribute_loss, face_square
from anoncli.generative.weights import save_checked
from anoncli.training.dataset import FaceDataset

RESOLUTION = 64
SHIFT = 4  # random translation in pixels, as detector boxes wander


@dataclass
class ClassifierConfig:
    weights: Path
    epochs: int = 12
    batch_size: int = 128
    lr: float = 2e-3
    weight_decay: float = 5e-4
    device: str = "cpu"
    seed: int = 0


def face_squares(dataset: FaceDataset, indices: np.ndarray) -> np.ndarray:
    """(N, 64, 64, 3) uint8 generator squares of the prepared faces."""
    return np.stack(
        [
            face_square(np.asarray(dataset.crops[i]), tuple(np.asarray(dataset.boxes[i]).tolist()), RESOLUTION)
            for i in indices
        ]
    )


def _augment(batch: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Random mirror, shift and brightness/contrast, on a batch in [-1, 1]."""
    count = batch.shape[0]
    flip = torch.rand(count, generator=generator) < 0.5
    batch = torch.where(flip[:, None, None, None], batch.flip(3), batch)
    padded = F.pad(batch, (SHIFT,) * 4, mode="replicate")
    dx, dy = torch.randint(0, 2 * SHIFT + 1, (2,), generator=generator).tolist()
    batch = padded[:, :, dy : dy + RESOLUTION, dx : dx + RESOLUTION]
    contrast = 1 + 0.2 * (torch.rand(count, 1, 1, 1, generator=generator) - 0.5)
    brightness = 0.2 * (torch.rand(count, 1, 1, 1, generator=generator) - 0.5)
    return (batch * contrast + brightness).clamp(-1, 1)


def _to_tensor(squares: np.ndarray, device: str) -> torch.Tensor:
    return torch.from_numpy(squares).permute(0, 3, 1, 2).float().to(device) / 127.5 - 1


@torch.inference_mode()
def accuracy(network: AttributeNet, squares: np.ndarray, labels: np.ndarray, device: str) -> dict[str, float]:
    """Share of faces whose gender / age group the classifier gets right, over faces with that label."""
    network.eval()
    logits = torch.cat([network(_to_tensor(squares[i : i + 256], device)).cpu() for i in range(0, len(squares), 256)])
    return {name: round(share, 4) for name, share in attribute_accuracy(logits, torch.from_numpy(labels)).items()}


def train_classifier(
    config: ClassifierConfig,
    dataset: FaceDataset,
    labels: np.ndarray,
    data_description: dict,
    on_epoch: Callable[[dict], None] = lambda record: None,
) -> dict:
    """Train, keep the epoch with the best held-out accuracy, write it with its manifest; return that record."""
    torch.manual_seed(config.seed)
    generator = torch.Generator().manual_seed(config.seed)
    train = np.array([i for i in dataset.train_indices if labels[i].any()])
    held_out = np.array([i for i in dataset.held_out_indices if labels[i].any()])
    train_squares, held_out_squares = face_squares(dataset, train), face_squares(dataset, held_out)
    train_labels = torch.from_numpy(labels[train])
    network = AttributeNet().to(config.device)
    optimizer = torch.optim.AdamW(network.parameters(), config.lr, weight_decay=config.weight_decay)
    steps_per_epoch = len(train) // config.batch_size
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, config.lr, total_steps=config.epochs * steps_per_epoch)
    best: dict = {}
    started = time.perf_counter()
    for epoch in range(1, config.epochs + 1):
        network.train()
        order = torch.randperm(len(train), generator=generator)
        for step in range(steps_per_epoch):
            chosen = order[step * config.batch_size : (step + 1) * config.batch_size]
            batch = _augment(_to_tensor(train_squares[chosen.numpy()], config.device), generator)
            loss = attribute_loss(network(batch), train_labels[chosen].to(config.device))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
        record = {
            "epoch": epoch,
            "loss": round(loss.item(), 4),
            "held_out": accuracy(network, held_out_squares, labels[held_out], config.device),
            "seconds": round(time.perf_counter() - started),
        }
        on_epoch(record)
        score = sum(record["held_out"].values())
        if not best or score > sum(best["held_out"].values()):
            best = record
            manifest = {
                "model": "attribute-classifier",
                "architecture": {"resolution": RESOLUTION, "channels": list(network.channels)},
                "outputs": "logits: gender (male, female), age group (0-19, 20-29, 30-39, 40+)",
                "training": {
                    "epochs": epoch,
                    "of_epochs": config.epochs,
                    "batch_size": config.batch_size,
                    "train_faces": len(train),
                    "wall_seconds": record["seconds"],
                },
                "data": data_description,
                "metrics": {"held_out_faces": len(held_out), "held_out_accuracy": record["held_out"]},
            }
            save_checked(network.state_dict(), config.weights, manifest)
    return best
