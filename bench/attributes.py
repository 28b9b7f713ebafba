"""Which gender / age-group estimator is more accurate on faces no training used (held-out UTKFace)?

    python bench/attributes.py --data ../shared/data/utkface [--count 1200]

Each chip's face is found by the default detector and handed to every registered estimator, so all are
judged on the same boxes. Prints accuracy per estimator and the time per face, and how often the estimator
reads two different real people of the same labelled gender and age group alike: what `evaluate`'s
"gender / age group kept" would give, with that estimator as the judge, for a method that swapped each face
for a real face of the right gender and age group.
"""

from __future__ import annotations

import argparse
import csv
import time
from pathlib import Path

import numpy as np
from PIL import Image

from anoncli.attributes import ESTIMATORS, Attributes, age_group_of, create_estimator
from anoncli.detectors import create_detector
from anoncli.training.dataset import LABELS_FILE, is_held_out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=Path("../shared/data/utkface"))
    parser.add_argument("--count", type=int, default=1200)
    arguments = parser.parse_args()
    with (arguments.data / LABELS_FILE).open(newline="") as file:
        rows = sorted((r for r in csv.DictReader(file) if is_held_out(r["file"])), key=lambda r: r["file"])
    detector = create_detector()
    samples = []
    for row in rows[: arguments.count]:
        image = np.asarray(Image.open(arguments.data / row["file"]).convert("RGB"))
        faces = detector.detect(image)
        if faces:
            truth = Attributes(("male", "female")[int(row["gender_0male_1female"])], age_group_of(float(row["age"])))
            samples.append((image, max(faces, key=lambda f: f.score), truth))
    print(f"{len(samples)} held-out faces with a detected face")
    for name in ESTIMATORS.names():
        estimator = create_estimator(name)
        started = time.perf_counter()
        estimates = [estimator.estimate(image, [face])[0] for image, face, _ in samples]
        seconds = time.perf_counter() - started
        gender = np.mean([e.gender == t.gender for e, (_, _, t) in zip(estimates, samples)])
        age = np.mean([e.age_group == t.age_group for e, (_, _, t) in zip(estimates, samples)])
        print(f"{name:>15}: gender {gender:.1%}, age group {age:.1%}, {1000 * seconds / len(samples):.1f} ms/face")
        pairs = list(enumerate(same_label_partners([truth for _, _, truth in samples])))
        gender = np.mean([estimates[i].gender == estimates[j].gender for i, j in pairs])
        age = np.mean([estimates[i].age_group == estimates[j].age_group for i, j in pairs])
        print(f"{'':>15}  two real people of the same labels read alike: gender {gender:.1%}, age group {age:.1%}")


def same_label_partners(truths: list[Attributes]) -> list[int]:
    """For each face, the next other face (in order, wrapping round) with the same gender and age group."""
    partners = []
    for index, truth in enumerate(truths):
        others = [(index + step) % len(truths) for step in range(1, len(truths))]
        partners.append(next((other for other in others if truths[other] == truth), index))
    return partners


if __name__ == "__main__":
    main()
