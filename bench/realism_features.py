"""Which features tell a method's faces from real ones: the realism two-sample AUC (`anoncli evaluate`'s) on
each kind of feature alone, on held-out UTKFace photos (never trained on).

    .venv/bin/python bench/realism_features.py [--methods none,deepprivacy,ksame] [--faces 120]

Per method (first draw): the AUC on HOG, LBP, Laplacian band energies, Lab colour statistics, the dlib embedding
and all together, and the mean band energies and colour statistics of the real and the anonymized faces.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np

from anoncli.evaluation.realism import feature_groups, two_sample_auc
from anoncli.evaluation.runner import build_evaluator, evaluate_methods
from anoncli.training.dataset import held_out_labelled

ROOT = Path(__file__).resolve().parent.parent
UTKFACE = ROOT.parent / "shared" / "data" / "utkface"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--methods", default="none,deepprivacy,ksame")
    parser.add_argument("--faces", type=int, default=120)
    args = parser.parse_args()
    methods = args.methods.split(",")
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        for path, _ in held_out_labelled(UTKFACE, args.faces):
            (folder / path.name).symlink_to(path)
        runs = evaluate_methods(folder, methods, build_evaluator("cpu"), [], "cpu")
    for name, draws in zip(methods, runs):
        records = [record for record in draws[0].records if record.texture is not None]
        real = np.array([np.concatenate([r.texture[0], r.original_embedding]) for r in records])
        anonymized = np.array([np.concatenate([r.texture[1], r.anonymized_embedding]) for r in records])
        people = np.array([f"{r.path}@{r.box}" for r in records])
        groups = feature_groups(len(records[0].original_embedding))
        aucs = {group: two_sample_auc(real[:, where], anonymized[:, where], people) for group, where in groups.items()}
        aucs["all"] = two_sample_auc(real, anonymized, people)
        print(f"{name} ({len(records)} faces): " + ", ".join(f"{group} {auc:.2f}" for group, auc in aucs.items()))
        for group in ("Laplacian bands", "Lab colour"):
            where = groups[group]
            print(
                f"  {group}: real {np.round(real[:, where].mean(axis=0), 3).tolist()}, "
                f"anonymized {np.round(anonymized[:, where].mean(axis=0), 3).tolist()}"
            )


if __name__ == "__main__":
    main()
