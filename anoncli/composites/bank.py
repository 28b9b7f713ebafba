"""The composite bank: k-anonymous face textures, each the average of at least k distinct donors warped onto
their mean face mesh and pushed out from their group's mean face (`training.ksame.build_bank`), with that shape
and the group the donors shared (gender, age group, skin tone).

It holds composites only, never one donor's face. Stored as one torch file of tensors (JPEG-coded textures,
fp16 shapes) with a JSON manifest that checks it (sha256) and says how it was built.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path

import cv2
import numpy as np
import torch

from anoncli.attributes.base import AGE_GROUPS, GENDERS, Attributes
from anoncli.composites.mesh import facing_forward
from anoncli.generative.weights import WEIGHTS_DIR, WeightsError, read_manifest, sha256_of

DEFAULT_BANK = WEIGHTS_DIR / "ksame_bank.pt"
JPEG_QUALITY = 92
# A composite's texture reaches MARGIN past its face outline (share of the outline's distance from its centre,
# on the ring of `with_margin_ring`): the donors' own jaw line, cheek edges and hairline, so the new face is
# drawn to its contour and past it rather than cut at its outline.
MARGIN = 0.2


@dataclass
class CompositeBank:
    textures: list[np.ndarray]  # (T, T, 3) uint8 RGB each, in the texture frame, over the shape and its ring
    shapes: np.ndarray  # (n, 468, 3) float32: each composite's mesh in the texture frame's pixels
    triangles: np.ndarray  # (m, 3) int: the triangulation of the mesh points shared by every composite
    gender: np.ndarray  # (n,) index into GENDERS
    age_group: np.ndarray  # (n,) index into AGE_GROUPS
    skin: np.ndarray  # (n, 3) mean skin colour (RGB) of the composite
    donors: np.ndarray  # (n,) number of distinct donors averaged
    # Per composite, its donors' files (relative to the data folder): to audit the bank, check that no output
    # resembles one of them, or rebuild without a donor who withdraws.
    donor_files: list[list[str]]

    def __len__(self) -> int:
        return len(self.textures)

    @property
    def mean_shape(self) -> np.ndarray:
        """The mean of the composites' meshes, facing straight out: a mesh to place on a face without its own."""
        return facing_forward(self.shapes.mean(axis=0))

    def choose(self, seed: int, wanted: Attributes, skin_tone: tuple[int, int, int] | None = None) -> int:
        """A composite picked by `seed` among those of the wanted gender and age group (any when not given)
        and, with `skin_tone`, of the skin colour nearest to it."""
        candidates = np.ones(len(self), bool)
        if wanted.gender is not None:
            candidates &= self.gender == GENDERS.index(wanted.gender)
        if wanted.age_group is not None:
            candidates &= self.age_group == AGE_GROUPS.index(wanted.age_group)
        if not candidates.any():  # no composite of that group: keep what can be kept, gender first
            candidates = np.ones(len(self), bool)
            if wanted.gender is not None:
                candidates &= self.gender == GENDERS.index(wanted.gender)
        indices = np.flatnonzero(candidates)
        if skin_tone is not None:
            distance = np.linalg.norm(self.skin[indices].astype(np.float32) - np.array(skin_tone, np.float32), axis=1)
            indices = indices[distance <= np.quantile(distance, 0.2) + 1e-6]
        return int(indices[np.random.default_rng(seed).integers(len(indices))])

    def save(self, path: Path, manifest: dict) -> None:
        """The bank and its manifest (file, sha256 and size filled in), each written atomically."""
        coded = [_encode(texture) for texture in self.textures]
        state = {
            "textures": torch.from_numpy(np.concatenate(coded)),
            "texture_offsets": torch.from_numpy(np.cumsum([0] + [len(c) for c in coded]).astype(np.int64)),
            "shapes": torch.from_numpy(self.shapes.astype(np.float16)),
            "triangles": torch.from_numpy(self.triangles.astype(np.int16)),
            "gender": torch.from_numpy(self.gender.astype(np.int8)),
            "age_group": torch.from_numpy(self.age_group.astype(np.int8)),
            "skin": torch.from_numpy(self.skin.astype(np.uint8)),
            "donors": torch.from_numpy(self.donors.astype(np.int16)),
            "donor_files": self.donor_files,
            "margin": MARGIN,
        }
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_suffix(".pt.tmp")
        torch.save(state, temporary)
        temporary.replace(path)
        manifest = {**manifest, "file": path.name, "sha256": sha256_of(path), "bytes": path.stat().st_size}
        manifest_file = path.with_suffix(".json")
        manifest_file.with_suffix(".json.tmp").write_text(json.dumps(manifest, indent=2, ensure_ascii=False) + "\n")
        manifest_file.with_suffix(".json.tmp").replace(manifest_file)

    @classmethod
    def load(cls, path: Path = DEFAULT_BANK) -> CompositeBank:
        manifest = read_manifest(path)
        if sha256_of(path) != manifest["sha256"]:
            raise WeightsError(f"{path} does not match its manifest's sha256; rebuild it with `anoncli train ksame`")
        state = torch.load(path, map_location="cpu", weights_only=True)
        if state.get("margin") != MARGIN:
            raise WeightsError(
                f"{path} was built by another anoncli version (its textures do not reach {MARGIN:.0%} past the face "
                "outline); rebuild it with `anoncli train ksame`"
            )
        coded, offsets = state["textures"].numpy(), state["texture_offsets"].numpy()
        return cls(
            textures=[_decode(coded[start:end]) for start, end in pairwise(offsets)],
            shapes=state["shapes"].float().numpy(),
            triangles=state["triangles"].long().numpy(),
            gender=state["gender"].long().numpy(),
            age_group=state["age_group"].long().numpy(),
            skin=state["skin"].numpy(),
            donors=state["donors"].long().numpy(),
            donor_files=state["donor_files"],
        )


def _encode(texture: np.ndarray) -> np.ndarray:
    ok, coded = cv2.imencode(".jpg", cv2.cvtColor(texture, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
    if not ok:
        raise RuntimeError("could not encode a composite texture")
    return coded.ravel()


def _decode(coded: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(cv2.imdecode(coded, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
