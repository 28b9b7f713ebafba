"""`anoncli train ksame`: build the composite bank from a folder of faces.

Every donor photo gets a FaceMesh, a gender and age group (the folder's labels.csv when it has one, the
project's classifier otherwise) and a skin colour. Near-frontal donors with closed mouth and open eyes are
grouped by gender × age group × skin tone; each group is dealt out at random into composites of at least k
distinct donors (each donor in one composite only), whose photos are warped onto the composite's mean mesh and
averaged; each composite is then pushed out from its group's mean face (see `build_bank`). The survey of the
donors is cached in the work folder, so a second build (another k) skips it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from scipy.spatial import Delaunay

from anoncli.attributes.base import AGE_GROUPS, GENDERS, Attributes
from anoncli.composites.bank import MARGIN, CompositeBank
from anoncli.composites.mesh import (
    CHIN,
    FOREHEAD,
    RING_TRIANGLES,
    FaceMesher,
    openings,
    similarity,
    with_margin_ring,
)
from anoncli.composites.warp import warp
from anoncli.io.images import LUMA_WEIGHTS
from anoncli.training.dataset import IMAGE_SUFFIXES, face_labels, is_held_out

TEXTURE_SIDE = 224
# Forehead-to-chin height of the mean mesh in the texture frame, as a share of its side: 150 pixels, with room
# for the margin ring of the composites pushed out from their group's mean.
FACE_HEIGHT_SHARE = 0.67
# Donors whose face is turned or tilted more than this (degrees, from the mean mesh) are left out: their
# hidden side would average in as stretched texture.
MAX_YAW, MAX_PITCH = 15.0, 20.0
# Mouth closed and eyes open (gaps as shares of the face's height): averaging open and closed ones would draw
# ghost teeth and half-shut eyes; the method opens the composite's mouth and eyes as the target's are.
MAX_MOUTH_GAP = 0.03
MIN_EYE_GAP = 0.025
SKIN_POINTS = (50, 280, 151)  # right cheek, left cheek, forehead
SKIN_TONES = 3  # groups by skin luma, split at the donors' terciles
ALIGN_ROUNDS = 3


@dataclass
class DonorSurvey:
    names: list[str]
    meshes: np.ndarray  # (n, 468, 3) in each photo's pixels
    gender: np.ndarray  # (n,) index into GENDERS, -1 unknown
    age_group: np.ndarray  # (n,) index into AGE_GROUPS, -1 unknown
    skin: np.ndarray  # (n, 3) RGB

    def save(self, path: Path) -> None:
        np.savez(path, names=np.array(self.names), meshes=self.meshes, gender=self.gender,
                 age_group=self.age_group, skin=self.skin)  # fmt: skip

    @classmethod
    def load(cls, path: Path) -> DonorSurvey:
        arrays = np.load(path)
        return cls(list(arrays["names"]), arrays["meshes"], arrays["gender"], arrays["age_group"], arrays["skin"])


def donor_files(data: Path) -> list[str]:
    """The photos of `data` that may be donors: all but the held-out 5 % the project evaluates on."""
    names = (str(p.relative_to(data)) for p in data.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    return sorted(name for name in names if not is_held_out(name))


def skin_colour(image: np.ndarray, mesh: np.ndarray) -> np.ndarray:
    """Median RGB of small patches at the cheeks and forehead."""
    radius = max(int(0.03 * np.linalg.norm(mesh[CHIN, :2] - mesh[FOREHEAD, :2])), 1)
    patches = []
    for index in SKIN_POINTS:
        x, y = np.rint(mesh[index, :2]).astype(int)
        patch = image[max(y - radius, 0) : y + radius + 1, max(x - radius, 0) : x + radius + 1]
        if patch.size:
            patches.append(patch.reshape(-1, 3))
    return np.median(np.concatenate(patches), axis=0) if patches else np.full(3, 128.0)


def survey_donors(
    data: Path, device: str = "cpu", on_progress: Callable[[int, int], None] = lambda done, total: None
) -> DonorSurvey:
    """Mesh, gender, age group and skin colour of the largest face of every donor photo that has one."""
    from anoncli.attributes import create_estimator
    from anoncli.detectors import create_detector

    detector = create_detector(device=device)
    mesher = FaceMesher()
    labels = face_labels(data)
    estimator = None if labels else create_estimator(device=device)
    files = donor_files(data)
    names, meshes, genders, ages, skins = [], [], [], [], []
    for number, name in enumerate(files):
        on_progress(number, len(files))
        image = np.asarray(Image.open(data / name).convert("RGB"))
        faces = detector.detect(image)
        if not faces:
            continue
        face = max(faces, key=lambda f: f.size)
        mesh = mesher.fit(image, face.box)
        if mesh is None:
            continue
        attributes = labels.get(Path(name).name) if labels else estimator.estimate(image, [face])[0]
        attributes = attributes or Attributes()
        names.append(name)
        meshes.append(mesh)
        genders.append(GENDERS.index(attributes.gender) if attributes.gender else -1)
        ages.append(AGE_GROUPS.index(attributes.age_group) if attributes.age_group else -1)
        skins.append(skin_colour(image, mesh))
    on_progress(len(files), len(files))
    return DonorSurvey(names, np.array(meshes, np.float32), np.array(genders), np.array(ages), np.array(skins))


def mean_shape(meshes: np.ndarray) -> np.ndarray:
    """Generalised Procrustes mean of the meshes, placed in the texture frame: forehead-to-chin
    FACE_HEIGHT_SHARE of the side, centred."""
    reference = meshes[0]
    for _ in range(ALIGN_ROUNDS):
        aligned = np.stack([similarity(mesh, reference).apply(mesh) for mesh in meshes])
        reference = aligned.mean(axis=0)
    reference = reference - reference.mean(axis=0)
    scale = FACE_HEIGHT_SHARE * TEXTURE_SIDE / np.linalg.norm(reference[CHIN, :2] - reference[FOREHEAD, :2])
    placed = reference * scale
    placed[:, :2] += TEXTURE_SIDE / 2
    return placed.astype(np.float32)


def build_bank(
    data: Path,
    survey: DonorSurvey,
    k: int = 10,
    seed: int = 0,
    spread: float | None = None,
    on_progress: Callable[[int, int], None] = lambda done, total: None,
) -> tuple[CompositeBank, dict]:
    """The bank of composites of at least `k` distinct donors each, and its manifest's description.

    An average of k donors departs from its group's mean face about √k times less than one face does, so plain
    averages all look alike and like no one (a face recogniser tells them from photos at once). Each composite's
    shape and texture are pushed back out from its group's mean by `spread` (√k when None; 1 keeps the plain
    average): still a function of its k donors alone beyond the group's mean, none of them weighing more."""
    started = time.monotonic()
    canonical = mean_shape(survey.meshes)
    fits = [similarity(mesh, canonical) for mesh in survey.meshes]
    aligned = np.stack([fit.apply(mesh) for fit, mesh in zip(fits, survey.meshes)])
    poses = np.array([fit.yaw_pitch_degrees for fit in fits])
    gaps = np.stack([openings(mesh) for mesh in aligned])
    usable = (
        (np.abs(poses[:, 0]) <= MAX_YAW)
        & (np.abs(poses[:, 1]) <= MAX_PITCH)
        & (gaps[:, 0] <= MAX_MOUTH_GAP)
        & (gaps[:, 1:].min(axis=1) >= MIN_EYE_GAP)
        & (survey.gender >= 0)
        & (survey.age_group >= 0)
    )
    luma = survey.skin @ LUMA_WEIGHTS
    tone_edges = np.quantile(luma[usable], np.linspace(0, 1, SKIN_TONES + 1)[1:-1])
    tone = np.searchsorted(tone_edges, luma)
    triangles = Delaunay(canonical[:, :2]).simplices
    ringed_triangles = np.concatenate([triangles, RING_TRIANGLES])

    rng = np.random.default_rng(seed)
    members: list[np.ndarray] = []
    groups: list[tuple[int, int, int]] = []  # each composite's gender, age group and skin tone
    for gender in range(len(GENDERS)):
        for age_group in range(len(AGE_GROUPS)):
            for skin_tone in range(SKIN_TONES):
                group = np.flatnonzero(
                    usable & (survey.gender == gender) & (survey.age_group == age_group) & (tone == skin_tone)
                )
                if len(group) >= k:
                    dealt = np.array_split(rng.permutation(group), len(group) // k)
                    members += dealt
                    groups += [(gender, age_group, skin_tone)] * len(dealt)

    spread = float(np.sqrt(k)) if spread is None else spread
    means = np.stack([aligned[donors].mean(axis=0) for donors in members])
    group_shapes = {group: means[[g == group for g in groups]].mean(axis=0) for group in set(groups)}
    shapes = np.stack([group_shapes[g] + spread * (mean - group_shapes[g]) for g, mean in zip(groups, means)])
    # Each donor is warped twice: into the canonical frame for its group's mean face, then straight onto its
    # composite's shape, so the detail of a composite is resampled once (the smooth group mean twice).
    group_textures: dict[tuple[int, int, int], np.ndarray] = {}
    for number, (donors, group) in enumerate(zip(members, groups)):
        on_progress(number, 2 * len(members))
        group_textures.setdefault(group, np.zeros((TEXTURE_SIDE, TEXTURE_SIDE, 3), np.float32))
        for donor in donors:
            group_textures[group] += _warped_donor(data, survey, donor, canonical, ringed_triangles)
    for group in group_textures:
        group_textures[group] /= sum(len(donors) for donors, g in zip(members, groups) if g == group)
    canonical_ring = with_margin_ring(canonical, MARGIN)[:, :2]
    textures = []
    for number, (donors, group, shape) in enumerate(zip(members, groups, shapes)):
        on_progress(len(members) + number, 2 * len(members))
        average = sum(_warped_donor(data, survey, donor, shape, ringed_triangles) for donor in donors) / len(donors)
        group_mean, _ = warp(
            group_textures[group],
            canonical_ring,
            with_margin_ring(shape, MARGIN)[:, :2],
            ringed_triangles,
            average.shape[:2],
        )
        textures.append(np.clip(np.rint(group_mean + spread * (average - group_mean)), 0, 255).astype(np.uint8))
    on_progress(2 * len(members), 2 * len(members))
    bank = CompositeBank(
        textures=textures,
        shapes=shapes.astype(np.float32),
        triangles=triangles,
        gender=survey.gender[[m[0] for m in members]],
        age_group=survey.age_group[[m[0] for m in members]],
        skin=np.array([survey.skin[m].mean(axis=0) for m in members]).round(),
        donors=np.array([len(m) for m in members]),
        donor_files=[[str(survey.names[donor]) for donor in donors] for donors in members],
    )
    description = {
        "model": "ksame-composite-bank",
        "k": k,
        "composites": len(bank),
        "donors_per_composite": {"min": int(bank.donors.min()), "max": int(bank.donors.max())},
        "donors": {"surveyed": len(survey.names), "usable": int(usable.sum()), "used": int(bank.donors.sum())},
        "spread": round(spread, 3),
        "margin": MARGIN,
        "texture_side": TEXTURE_SIDE,
        "filters": {
            "max_yaw": MAX_YAW,
            "max_pitch": MAX_PITCH,
            "max_mouth_gap": MAX_MOUTH_GAP,
            "min_eye_gap": MIN_EYE_GAP,
        },
        "groups": "gender × age group × skin tone (luma terciles "
        + ", ".join(f"{edge:.0f}" for edge in tone_edges)
        + "); each donor in one composite only",
        "seed": seed,
        "data": {"folder": data.name, "held_out_percent_excluded": 5},
        "build_seconds": round(time.monotonic() - started),
    }
    return bank, description


def _warped_donor(data: Path, survey: DonorSurvey, donor: int, shape: np.ndarray, triangles: np.ndarray) -> np.ndarray:
    """The donor's photo warped onto `shape` and its margin ring (the texture frame), float32."""
    image = np.asarray(Image.open(data / survey.names[donor]).convert("RGB"))
    source, target = (with_margin_ring(mesh, MARGIN)[:, :2] for mesh in (survey.meshes[donor], shape))
    warped, _ = warp(image, source, target, triangles, (TEXTURE_SIDE, TEXTURE_SIDE))
    return warped
