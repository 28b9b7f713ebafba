"""Can a face recogniser tell which donors a ksame face came from? Outputs against donors and matched strangers.

    .venv/bin/python bench/ksame_donors.py [--targets 600]

Every fifth of the held-out UTKFace photos is a target, drawn over by `ksame` with its own gender and age group
(so its composite is of that group, the hardest case); the other held-out photos are the strangers, grouped by
gender, age group and skin tone as the bank groups its donors. For each output: is the nearest (dlib) of its
composite's donors nearer than the nearest of as many strangers of the composite's group? Chance is 50 %.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image

from anoncli.anonymizers import StandIn, create_method
from anoncli.attributes import AGE_GROUPS, GENDERS
from anoncli.composites.mesh import FaceMesher
from anoncli.detectors import create_detector
from anoncli.frames import face_crop
from anoncli.io.images import LUMA_WEIGHTS
from anoncli.metrics.identity import SAME_PERSON_DISTANCE, FaceEmbedder
from anoncli.regions import face_region
from anoncli.training.dataset import held_out_labelled
from anoncli.training.ksame import SKIN_TONES, skin_colour

UTKFACE = Path(__file__).resolve().parents[2] / "shared" / "data" / "utkface"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--targets", type=int, default=600, help="held-out photos read (a fifth are targets)")
    arguments = parser.parse_args()
    method = create_method("ksame")
    bank = method.bank
    embedder, detector, mesher = FaceEmbedder(), create_detector(), FaceMesher()
    # The bank's skin-tone groups are luma terciles of its donors; the composites' own skin colours stand in.
    edges = np.quantile(bank.skin @ LUMA_WEIGHTS, np.linspace(0, 1, SKIN_TONES + 1)[1:-1])

    def group_of(gender: int, age_group: int, skin: np.ndarray) -> tuple[int, int, int]:
        return gender, age_group, int(np.searchsorted(edges, float(np.asarray(skin, float) @ LUMA_WEIGHTS)))

    strangers: dict[tuple[int, int, int], list[np.ndarray]] = {}
    targets = []
    for number, (path, attributes) in enumerate(held_out_labelled(UTKFACE, arguments.targets)):
        image = np.asarray(Image.open(path).convert("RGB"))
        found = detector.detect(image)
        if not found:
            continue
        face = max(found, key=lambda f: f.size)
        if number % 5 == 0:
            targets.append((image, face, attributes))
            continue
        mesh = mesher.fit(image, face.box)
        if mesh is not None:
            key = group_of(
                GENDERS.index(attributes.gender), AGE_GROUPS.index(attributes.age_group), skin_colour(image, mesh)
            )
            strangers.setdefault(key, []).append(embedder.embed(image, face.box))

    donors: dict[str, np.ndarray | None] = {}

    def donor(name: str) -> np.ndarray | None:
        if name not in donors:
            image = np.asarray(Image.open(UTKFACE / name).convert("RGB"))
            found = detector.detect(image)
            donors[name] = embedder.embed(image, max(found, key=lambda f: f.size).box) if found else None
        return donors[name]

    rng = np.random.default_rng(0)
    nearer = under_threshold = measured = 0
    for seed, (image, face, attributes) in enumerate(targets):
        region = face_region(face, image.shape[1], image.shape[0], method.default_mask_scale, method.context)
        crop = face_crop(image, region, face, seed, attributes)
        (output,) = method.anonymize([crop])
        if isinstance(output, StandIn):
            continue
        index = bank.choose(seed, attributes)
        group = strangers.get(group_of(int(bank.gender[index]), int(bank.age_group[index]), bank.skin[index]), [])
        if len(group) < 5:
            continue
        query = embedder.embed(np.ascontiguousarray(output), crop.box)
        to_donors = np.array([np.linalg.norm(v - query) for v in map(donor, bank.donor_files[index]) if v is not None])
        count = min(len(to_donors), len(group))
        to_donors = rng.choice(to_donors, count, replace=False)
        to_strangers = np.linalg.norm(np.array(group)[rng.choice(len(group), count, replace=False)] - query, axis=1)
        measured += 1
        nearer += to_donors.min() < to_strangers.min()
        under_threshold += to_donors.min() < min(SAME_PERSON_DISTANCE, to_strangers.min())
    share = nearer / max(measured, 1)
    print(
        f"{measured} outputs: nearest donor nearer than the nearest of as many matched strangers for {nearer} "
        f"({share:.0%}; chance 50 %), and also within {SAME_PERSON_DISTANCE} for {under_threshold}"
    )


if __name__ == "__main__":
    main()
