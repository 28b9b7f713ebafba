"""Where a generator shows the gender and age group it is asked for: in colour, or in the face itself?

    python scripts/attributes_in_colour.py weights/deepprivacy64.pt [--prepared runs/prepared/utkface]

The frozen attribute classifier that gives `anoncli train deepprivacy` its attribute loss judges held-out
faces framed and erased as in training (the cache `anoncli train` prepares from ../shared/data/utkface): the
real faces, and the generator's new faces asked for their own labels and for another gender and age group.
Each in colour and in grey (luma). A generator that shows an attribute in its faces keeps the classifier's
accuracy in grey; one that fools the classifier with colour patterns loses it there. The real faces' rows
show how much grey alone costs the classifier.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from anoncli.attributes import AGE_GROUPS, GENDERS
from anoncli.attributes.classifier import DEFAULT_WEIGHTS as CLASSIFIER_WEIGHTS
from anoncli.attributes.classifier import attribute_accuracy, load_classifier
from anoncli.generative.sampling import generate
from anoncli.generative.weights import load_generator
from anoncli.training.dataset import FaceDataset, attribute_labels
from anoncli.training.deepprivacy import TrainConfig, composite, in_grey, sample_batch

FACES = 384
BATCH = 64


def other_labels(labels: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
    """The other gender and a different age group, at random, for each one-hot label vector."""
    genders, ages = len(GENDERS), len(AGE_GROUPS)
    other = torch.zeros_like(labels)
    other[:, :genders] = 1 - labels[:, :genders]
    shifted = (labels[:, genders:].argmax(dim=1) + torch.from_numpy(rng.integers(1, ages, len(labels)))) % ages
    other[torch.arange(len(labels)), genders + shifted] = 1
    return other


@torch.inference_mode()
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("weights", type=Path, help="a 64² deepprivacy generator")
    parser.add_argument("--prepared", type=Path, default=Path("runs/prepared/utkface"))
    parser.add_argument("--data", type=Path, default=Path("../shared/data/utkface"), help="for labels.csv")
    arguments = parser.parse_args()
    dataset = FaceDataset.load(arguments.prepared)
    labels = attribute_labels(dataset, arguments.data).astype(np.float32)
    held_out = dataset.held_out_indices
    rng = np.random.default_rng(0)
    # Drawn at random: the files are in order of age, so the first ones are all young.
    faces = np.sort(rng.choice(held_out[labels[held_out].sum(axis=1) == 2], FACES, replace=False))
    generator, _ = load_generator(arguments.weights, "cpu")
    classifier, _ = load_classifier(CLASSIFIER_WEIGHTS, "cpu")
    config = TrainConfig(weights=arguments.weights, work_dir=Path())

    judged: dict[str, list[tuple[torch.Tensor, torch.Tensor]]] = {}
    for start in range(0, len(faces), BATCH):
        batch = faces[start : start + BATCH]
        condition, erased, _, real, inside = sample_batch(dataset, batch, config, rng)
        own = torch.from_numpy(labels[batch])
        other = other_labels(own, rng)
        seeds = list(range(start, start + len(batch)))
        cases = {"real faces": (real, own)}
        for name, asked in (("new faces, asked their own", own), ("new faces, asked another", other)):
            cases[name] = (composite(generate(generator, condition, erased, seeds, asked), real, erased, inside), asked)
        for name, (images, asked) in cases.items():
            for view, seen in (("colour", images), ("grey", in_grey(images))):
                judged.setdefault(f"{name:<28} {view:<7}", []).append((classifier(seen), asked))

    print(f"{len(faces)} held-out faces, classifier accuracy on what it was asked / labelled:")
    for name, pairs in judged.items():
        shares = attribute_accuracy(torch.cat([p[0] for p in pairs]), torch.cat([p[1] for p in pairs]))
        print(f"  {name} gender {shares['gender']:6.1%}   age group {shares['age_group']:6.1%}")


if __name__ == "__main__":
    main()
