"""Training faces for mesh-conditioned generators: each surveyed photo cut in its mesh's frame, cached once.

The FaceMesh survey (`training.ksame.survey_donors`, shared with `anoncli train ksame`) gives every photo's mesh;
each face is cut in the frame `generative.mesh_input` defines (the one inference uses), with a validity map for
where the frame leaves the photo (UTKFace's chips are tight: the frame reaches past their edges), and its points
image. Cached as NumPy arrays beside the survey, so a resumed run starts at once.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from anoncli.attributes.base import ATTRIBUTE_SIZE, GENDERS
from anoncli.generative.mesh_input import (
    MESH_FRAMING,
    NOSE_MOUTH_JAW,
    drawn_region,
    framed_points,
    into_frame,
    mesh_frame,
    points_image,
)
from anoncli.training.deepprivacy import TrainConfig
from anoncli.training.ksame import DonorSurvey

PREVIEW_FACES = 8
FRAMING_FILE = "framing.json"  # written last: a cache without it is unfinished or framed otherwise
ARRAYS = ("crops", "valid", "points", "labels", "landmarks")


@dataclass
class MeshFaces:
    """crops (N, R, R, 3) uint8, valid (N, R, R) uint8, points (N, R, R) float32, labels (N, ATTRIBUTE_SIZE),
    landmarks (N, 468, 2) float32 (the mesh's x, y in the frame)."""

    crops: np.ndarray
    valid: np.ndarray
    points: np.ndarray
    labels: np.ndarray
    landmarks: np.ndarray
    files: list[str]

    @property
    def train_indices(self) -> np.ndarray:
        """All of them: the survey holds no held-out photo."""
        return np.arange(len(self.files))

    @property
    def preview_indices(self) -> np.ndarray:
        """Faces spread over the set for the sample grids (training faces: the survey holds no others)."""
        return np.linspace(0, len(self.files) - 1, PREVIEW_FACES).astype(int)

    def save(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        for name in ARRAYS:
            np.save(folder / f"{name}.npy", getattr(self, name))
        (folder / "files.txt").write_text("".join(f"{name}\n" for name in self.files), encoding="utf-8")
        (folder / FRAMING_FILE).write_text(json.dumps(MESH_FRAMING), encoding="utf-8")

    @classmethod
    def load(cls, folder: Path) -> MeshFaces:
        arrays = {name: np.load(folder / f"{name}.npy", mmap_mode="r") for name in ARRAYS}
        return cls(files=(folder / "files.txt").read_text(encoding="utf-8").splitlines(), **arrays)


def label_vector(gender: int, age_group: int) -> np.ndarray:
    """One-hot gender and age group (indices into GENDERS and AGE_GROUPS; -1 unknown, left at zeros)."""
    vector = np.zeros(ATTRIBUTE_SIZE, np.float32)
    if gender >= 0:
        vector[gender] = 1
    if age_group >= 0:
        vector[len(GENDERS) + age_group] = 1
    return vector


def prepare_mesh_faces(
    data: Path,
    survey: DonorSurvey,
    cache: Path,
    resolution: int,
    on_progress: Callable[[int, int], None] = lambda done, total: None,
) -> MeshFaces:
    """Every surveyed face of `data` cut in its mesh's frame at `resolution`; reuses a finished cache of the
    same framing."""
    framing = cache / FRAMING_FILE
    if framing.exists() and json.loads(framing.read_text(encoding="utf-8")) == MESH_FRAMING:
        if not (cache / "landmarks.npy").exists():  # a cache cut for ganonymization alone lacks them
            np.save(cache / "landmarks.npy", _framed_landmarks(survey, resolution))
        return MeshFaces.load(cache)
    landmarks = _framed_landmarks(survey, resolution)
    count = len(survey.names)
    crops = np.zeros((count, resolution, resolution, 3), np.uint8)
    valid = np.zeros((count, resolution, resolution), np.uint8)
    points = np.zeros((count, resolution, resolution), np.float32)
    for index, name in enumerate(survey.names):
        on_progress(index, count)
        image = np.asarray(Image.open(data / name).convert("RGB"))
        crops[index], valid[index] = into_frame(image, mesh_frame(survey.meshes[index], resolution), resolution)
        points[index] = points_image(landmarks[index], resolution)
    on_progress(count, count)
    labels = np.stack([label_vector(int(g), int(a)) for g, a in zip(survey.gender, survey.age_group)])
    MeshFaces(crops, valid, points, labels, landmarks, list(survey.names)).save(cache)
    return MeshFaces.load(cache)


def _framed_landmarks(survey: DonorSurvey, resolution: int) -> np.ndarray:
    """(N, 468, 2) float32: each surveyed mesh's x, y in its own frame."""
    return np.stack([framed_points(mesh, mesh_frame(mesh, resolution)) for mesh in survey.meshes]).astype(np.float32)


Batch = tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]


class Mirrored:
    """The faces `indices` of `dataset`, each mirrored at random (their points with them), as tensors."""

    def __init__(self, dataset: MeshFaces, indices: np.ndarray, config: TrainConfig, rng: np.random.Generator):
        self.dataset, self.indices, self.device = dataset, indices, config.device
        self.flips = rng.random(len(indices)) < 0.5
        self.side = config.resolution

    def stacked(self, array: np.ndarray) -> torch.Tensor:
        items = [np.asarray(array[i])[:, ::-1] if flip else np.asarray(array[i]) for i, flip in self._each()]
        return torch.from_numpy(np.ascontiguousarray(np.stack(items))).to(self.device)

    def landmarks(self) -> list[np.ndarray]:
        """Each face's framed x, y (mirrored faces' x mirrored; which side is left does not matter here)."""
        return [
            np.asarray(self.dataset.landmarks[i]) * ((-1, 1) if flip else (1, 1)) + ((self.side, 0) if flip else (0, 0))
            for i, flip in self._each()
        ]

    def inside_and_real(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The inside-photo map (N, 1, R, R) and the real faces in [-1, 1], zero outside the photo."""
        inside = self.stacked(self.dataset.valid)[:, None].float()
        return inside, (self.stacked(self.dataset.crops).permute(0, 3, 1, 2).float() / 127.5 - 1) * inside

    def _each(self) -> zip:
        return zip(self.indices, self.flips)


def sample_mesh_batch(dataset: MeshFaces, indices: np.ndarray, config: TrainConfig, rng: np.random.Generator) -> Batch:
    """Condition (the points image), generated region, known map (nothing is shown), real image (in [-1, 1])
    and inside-photo map for the faces `indices` (`ganonymization`)."""
    faces = Mirrored(dataset, indices, config, rng)
    inside, real = faces.inside_and_real()
    return faces.stacked(dataset.points)[:, None].float(), inside, torch.zeros_like(inside), real, inside


def sample_erased_landmarks(
    dataset: MeshFaces, indices: np.ndarray, config: TrainConfig, rng: np.random.Generator
) -> Batch:
    """`ciagan`'s batch: the photo with the face erased inside its outline (and the margin inference draws in),
    the nose, mouth and jaw points; the generated region is the erased face."""
    faces = Mirrored(dataset, indices, config, rng)
    inside, real = faces.inside_and_real()
    side = config.resolution
    landmarks = faces.landmarks()
    erased = torch.from_numpy(np.stack([drawn_region(points, side) for points in landmarks]))[:, None]
    erased = erased.float().to(config.device) * inside
    points = np.stack([points_image(points[list(NOSE_MOUTH_JAW)], side) for points in landmarks])
    known = inside * (1 - erased)
    condition = torch.cat([real * known, known, erased, torch.from_numpy(points)[:, None].to(config.device)], dim=1)
    return condition, erased, known, real, inside


def sample_faces_themselves(
    dataset: MeshFaces, indices: np.ndarray, config: TrainConfig, rng: np.random.Generator
) -> Batch:
    """`stargan`'s batch: the face itself is the condition, and all of it may change."""
    inside, real = Mirrored(dataset, indices, config, rng).inside_and_real()
    return real, inside, torch.zeros_like(inside), real, inside


SAMPLERS = {
    "ganonymization": sample_mesh_batch,
    "ciagan": sample_erased_landmarks,
    "stargan": sample_faces_themselves,
}
