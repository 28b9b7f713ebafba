"""Pseudo-identities for `ciagan`: UTKFace has one photo per person and no identity labels, so the fake
identities a user picks from are clusters of dlib embeddings over the training faces (look-alike groups).

The embeddings of a sample of the surveyed faces are computed once (dlib, about 6 faces/s on one core) and
cached beside the survey; the clusters are k-means on the unit sphere, seeded. dlib is not differentiable, so
a small CNN (`IdentityEmbedder`) learns to read the dlib embedding from the face in its mesh frame; with the
clusters' centres it is the frozen judge (`IdentityJudge`) of `ciagan`'s identity loss, shipped beside its
weights so that a run resumes anywhere.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from PIL import Image
from scipy.cluster.vq import kmeans2
from torch import nn
from torch.nn import functional as F

from anoncli.generative.weights import load_checked, save_checked
from anoncli.metrics.identity import FaceEmbedder
from anoncli.training.ksame import DonorSurvey

if TYPE_CHECKING:
    from anoncli.training.mesh_faces import MeshFaces

EMBEDDING_SIZE = 128  # dlib's
SHIFT = 2  # training crops are shifted up to this many pixels each way
# Cosines to the identity centres are scaled by this before the softmax of the identity loss: the centres'
# cosines to a face span about 0.1, which this turns into a few units of logit.
IDENTITY_SHARPNESS = 50.0


@dataclass
class SurveyEmbeddings:
    indices: np.ndarray  # (n,) into the survey
    embeddings: np.ndarray  # (n, 128) dlib embeddings

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_name(path.stem + ".tmp.npz")
        np.savez(temporary, indices=self.indices, embeddings=self.embeddings)
        temporary.replace(path)

    @classmethod
    def load(cls, path: Path) -> SurveyEmbeddings:
        arrays = np.load(path)
        return cls(arrays["indices"], arrays["embeddings"])


def embed_survey(
    data: Path,
    survey: DonorSurvey,
    count: int,
    seed: int = 0,
    on_progress: Callable[[int, int], None] = lambda done, total: None,
) -> SurveyEmbeddings:
    """dlib embeddings of `count` surveyed faces chosen at random (seeded), each boxed by its mesh's extent."""
    rng = np.random.default_rng(seed)
    indices = np.sort(rng.choice(len(survey.names), min(count, len(survey.names)), replace=False))
    embedder = FaceEmbedder()
    embeddings = np.zeros((len(indices), EMBEDDING_SIZE), np.float32)
    for number, index in enumerate(indices):
        on_progress(number, len(indices))
        image = np.asarray(Image.open(data / survey.names[index]).convert("RGB"))
        mesh = survey.meshes[index]
        box = (mesh[:, 0].min(), mesh[:, 1].min(), mesh[:, 0].max(), mesh[:, 1].max())
        embeddings[number] = embedder.embed(image, box)
    on_progress(len(indices), len(indices))
    return SurveyEmbeddings(indices, embeddings)


def unit(vectors: np.ndarray) -> np.ndarray:
    return vectors / np.linalg.norm(vectors, axis=-1, keepdims=True).clip(min=1e-8)


def pseudo_identities(
    embeddings: np.ndarray, count: int, seed: int = 0, restarts: int = 5
) -> tuple[np.ndarray, np.ndarray]:
    """Cluster centres (count, 128), unit length, and each embedding's cluster (n,): k-means of the unit
    embeddings, the best of `restarts` seeded starts (one start can settle with two groups in one cluster)."""
    points = unit(embeddings).astype(np.float64)
    best = None
    for start in range(restarts):
        centres, assigned = kmeans2(points, count, minit="++", seed=seed + start, iter=30)
        spread = float(((points - centres[assigned]) ** 2).sum())
        if best is None or spread < best[0]:
            best = (spread, centres, assigned)
    _, centres, assigned = best
    return unit(centres).astype(np.float32), assigned


class IdentityEmbedder(nn.Module):
    """A small CNN that reads a face in its mesh frame (64²) as a unit vector near its dlib embedding: the
    differentiable stand-in for dlib that `ciagan`'s identity loss pulls and pushes the new face with."""

    def __init__(self, channels: tuple[int, ...] = (32, 64, 128, 192)) -> None:
        super().__init__()
        layers, previous = [], 3
        for width in channels:
            layers += [nn.Conv2d(previous, width, 3, 1, 1), nn.LeakyReLU(0.2), nn.Conv2d(width, width, 4, 2, 1)]
            layers += [nn.BatchNorm2d(width), nn.LeakyReLU(0.2)]
            previous = width
        self.features = nn.Sequential(*layers)
        self.out = nn.Linear(previous, EMBEDDING_SIZE)
        self.channels = channels

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """(N, 3, 64, 64) in [-1, 1] → (N, 128) unit vectors."""
        return F.normalize(self.out(self.features(images).mean(dim=(2, 3))), dim=1)


@dataclass
class IdentityJudge:
    """The frozen embedder with the pseudo-identities' centres: how near a face is to a fake identity and to the
    face it replaces."""

    embedder: IdentityEmbedder
    centres: torch.Tensor  # (identities, 128) unit
    manifest: dict

    @property
    def identities(self) -> int:
        return len(self.centres)

    def loss(
        self, fake: torch.Tensor, real: torch.Tensor, identity: torch.Tensor, margin: float
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Per batch: pull (cross-entropy of the asked identity among all, by cosine to their centres, as
        CIAGAN's identity classifier) and push (cosine to the real face's own reading beyond `margin`), both
        means over the faces. A plain pull towards one centre would not tell identities apart: all centres lie
        within a narrow cone."""
        with torch.no_grad():
            source = self.embedder(real)
        embedded = self.embedder(fake)
        pull = F.cross_entropy(embedded @ self.centres.T * IDENTITY_SHARPNESS, identity.argmax(dim=1))
        push = F.relu((embedded * source).sum(dim=1) - margin)
        return pull, push.mean()


def save_judge(judge: IdentityJudge, path: Path, manifest: dict) -> None:
    state = {f"embedder.{name}": tensor for name, tensor in judge.embedder.state_dict().items()}
    state["centres"] = judge.centres
    save_checked(state, path, dict(manifest, architecture={"channels": list(judge.embedder.channels)}))


def load_judge(path: Path, device: str) -> IdentityJudge:
    state, manifest = load_checked(path)
    embedder = IdentityEmbedder(tuple(manifest["architecture"]["channels"]))
    prefix = "embedder."
    embedder.load_state_dict({name[len(prefix) :]: t for name, t in state.items() if name.startswith(prefix)})
    embedder.eval().requires_grad_(False)
    return IdentityJudge(embedder.to(device), F.normalize(state["centres"], dim=1).to(device), manifest)


def train_judge(
    faces: MeshFaces,
    embedded: SurveyEmbeddings,
    identities: int,
    epochs: int = 12,
    batch_size: int = 64,
    seed: int = 0,
    device: str = "cpu",
    on_epoch: Callable[[dict], None] = lambda record: None,
) -> IdentityJudge:
    """Cluster the dlib embeddings into `identities` pseudo-identities and train the embedder on the faces'
    crops to read each face's dlib embedding (cosine loss). 5 % of the embedded faces are held out; the
    manifest's metrics give their mean cosine to dlib's reading and how often the nearest centre of the
    embedder's reading is the nearest centre of dlib's."""
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    centres, _ = pseudo_identities(embedded.embeddings, identities, seed)
    centre_tensor = torch.from_numpy(centres)
    targets = torch.from_numpy(unit(embedded.embeddings).astype(np.float32))
    order = rng.permutation(len(embedded.indices))
    held, train = order[: max(len(order) // 20, 1)], order[max(len(order) // 20, 1) :]
    batch_size = min(batch_size, len(train))
    embedder = IdentityEmbedder().to(device)
    optimizer = torch.optim.Adam(embedder.parameters(), 1e-3)
    steps_per_epoch = len(train) // batch_size
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, epochs * steps_per_epoch)

    def images(rows: np.ndarray, augment: bool) -> torch.Tensor:
        crops = np.stack([faces.crops[i] * faces.valid[i][..., None] for i in embedded.indices[rows]])
        batch = torch.from_numpy(crops).permute(0, 3, 1, 2).float().to(device) / 127.5 - 1
        if not augment:
            return batch
        flips = torch.from_numpy(rng.random(len(rows)) < 0.5).to(device)
        batch = torch.where(flips[:, None, None, None], batch.flip(3), batch)
        dx, dy = rng.integers(0, 2 * SHIFT + 1, 2).tolist()
        side = batch.shape[-1]
        return F.pad(batch, (SHIFT,) * 4, mode="replicate")[:, :, dy : dy + side, dx : dx + side]

    record: dict = {}
    for epoch in range(epochs):
        embedder.train()
        rng.shuffle(train)
        losses = []
        for step in range(steps_per_epoch):
            rows = train[step * batch_size : (step + 1) * batch_size]
            loss = (1 - (embedder(images(rows, True)) * targets[rows].to(device)).sum(dim=1)).mean()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            losses.append(loss.item())
        embedder.eval()
        with torch.no_grad():
            read = embedder(images(held, False)).cpu()
        same = (read @ centre_tensor.T).argmax(1) == (targets[held] @ centre_tensor.T).argmax(1)
        record = {
            "epoch": epoch + 1,
            "loss": round(float(np.mean(losses)), 4),
            "held_out_cosine": round((read * targets[held]).sum(dim=1).mean().item(), 4),
            "held_out_same_identity": round(same.float().mean().item(), 4),
        }
        on_epoch(record)
    embedder.eval().requires_grad_(False)
    return IdentityJudge(embedder, centre_tensor.to(device), {"metrics": record})
