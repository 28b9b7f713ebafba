"""Training faces, prepared once: detect each face, cut its context square, cache crops and keypoints.

The cache is a folder of NumPy arrays (crops, validity maps, boxes, landmarks, at a resolution that leaves the
network's square at least its own size) plus the list of source files, so training reads memory-mapped arrays
instead of decoding JPEGs every step.
"""

from __future__ import annotations

import csv
import json
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from anoncli.attributes import Attributes, age_group_of
from anoncli.detectors import Detector
from anoncli.faces import centred_square, cut_square, face_size

PREPARED_RESOLUTION = 128  # the smallest cache; a network of resolution R needs 1.5 R (see `prepared_resolution`)
# Cached squares are wider than the network's input square, so training can re-cut them like inference does.
PREPARED_CONTEXT = 1.8
HELD_OUT_PERCENT = 5
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
LABELS_FILE = "labels.csv"  # UTKFace's: file, age, gender_0male_1female, ...


def is_held_out(name: str) -> bool:
    """A fixed 5 % of files, chosen by name, never used for training (evaluation uses them)."""
    return zlib.crc32(name.encode()) % 100 < HELD_OUT_PERCENT


def held_out_files(data: Path) -> list[Path]:
    """The held-out images of the data folder `data`, sorted by path."""
    return sorted(
        path
        for path in data.rglob("*")
        if path.suffix.lower() in IMAGE_SUFFIXES and is_held_out(str(path.relative_to(data)))
    )


@dataclass
class FaceDataset:
    """Prepared faces: crops (N, S, S, 3) uint8, valid (N, S, S) uint8, boxes (N, 4), landmarks (N, 5, 2)."""

    crops: np.ndarray
    valid: np.ndarray
    boxes: np.ndarray
    landmarks: np.ndarray
    files: list[str]

    @property
    def train_indices(self) -> np.ndarray:
        return np.array([i for i, name in enumerate(self.files) if not is_held_out(name)])

    @property
    def held_out_indices(self) -> np.ndarray:
        return np.array([i for i, name in enumerate(self.files) if is_held_out(name)])

    @property
    def preview_indices(self) -> np.ndarray:
        """The held-out faces the sample grids show."""
        return self.held_out_indices[:8]

    @classmethod
    def load(cls, folder: Path) -> FaceDataset:
        arrays = {
            name: np.load(folder / f"{name}.npy", mmap_mode="r") for name in ("crops", "valid", "boxes", "landmarks")
        }
        files = json.loads((folder / "files.json").read_text())
        return cls(files=files, **arrays)


def prepared_resolution(network_resolution: int) -> int:
    """Side of the cached squares for a network of `network_resolution`: the network's square (1.5 face
    sizes) is then cut from at least its own number of pixels."""
    return max(PREPARED_RESOLUTION, network_resolution * 3 // 2)


def prepare_faces(
    data: Path,
    cache: Path,
    detector: Detector,
    on_progress: Callable[[int, int], None] = lambda done, total: None,
    size: int = PREPARED_RESOLUTION,
) -> FaceDataset:
    """Detect one face per training image and cache its context square at `size` pixels; reuses a finished
    cache."""
    if (cache / "files.json").exists():
        return FaceDataset.load(cache)
    paths = sorted(p for p in data.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    crops = np.zeros((len(paths), size, size, 3), np.uint8)
    valid = np.zeros((len(paths), size, size), np.uint8)
    boxes = np.zeros((len(paths), 4), np.float32)
    landmarks = np.zeros((len(paths), 5, 2), np.float32)
    kept: list[str] = []
    for number, path in enumerate(paths):
        on_progress(number, len(paths))
        image = np.asarray(Image.open(path).convert("RGB"))
        faces = detector.detect(image)
        if not faces:
            continue
        # The training chips hold one person each: take the most confident face.
        face = max(faces, key=lambda f: f.score)
        square = centred_square(face.box, PREPARED_CONTEXT * face_size(face.box))
        pixels, inside = cut_square(image, square)
        factor = size / square.side
        index = len(kept)
        crops[index] = cv2.resize(pixels, (size, size), interpolation=cv2.INTER_AREA)
        valid[index] = cv2.resize(inside * 255, (size, size), interpolation=cv2.INTER_AREA) == 255
        offset = np.array([square.x, square.y], np.float32)
        boxes[index] = (np.array(face.box, np.float32).reshape(2, 2) - offset).ravel() * factor
        landmarks[index] = (np.array(face.landmarks, np.float32) - offset) * factor
        kept.append(str(path.relative_to(data)))
    cache.mkdir(parents=True, exist_ok=True)
    count = len(kept)
    for name, array in (("crops", crops), ("valid", valid), ("boxes", boxes), ("landmarks", landmarks)):
        np.save(cache / f"{name}.npy", array[:count])
    (cache / "files.json").write_text(json.dumps(kept))
    on_progress(len(paths), len(paths))
    return FaceDataset.load(cache)


def face_labels(data: Path) -> dict[str, Attributes]:
    """Gender and age group by file name, from the data folder's LABELS_FILE; empty when it has none."""
    known: dict[str, Attributes] = {}
    labels_file = data / LABELS_FILE
    if labels_file.exists():
        with labels_file.open(newline="", encoding="utf-8") as file:
            for row in csv.DictReader(file):
                gender = ("male", "female")[int(row["gender_0male_1female"])]
                known[row["file"]] = Attributes(gender, age_group_of(float(row["age"])))
    return known


def held_out_labelled(data: Path, count: int) -> list[tuple[Path, Attributes]]:
    """At most `count` labelled held-out faces of `data`, spread over all ages (UTKFace's names start with the
    age, so the first ones by name would all be children)."""
    labels = face_labels(data)
    names = sorted(name for name in labels if is_held_out(name))
    return [(data / name, labels[name]) for name in names[:: max(len(names) // count, 1)][:count]]


def attribute_labels(dataset: FaceDataset, data: Path) -> np.ndarray:
    """(N, ATTRIBUTE_SIZE) one-hot gender and age group per prepared face, zeros where `data` has no label."""
    known = face_labels(data)
    return np.stack([known.get(Path(name).name, Attributes()).vector() for name in dataset.files])
