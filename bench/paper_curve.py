"""A trained method's paper figures along its training run, on held-out UTKFace photos.

    .venv/bin/python bench/paper_curve.py --method ciagan [--snapshots runs/ciagan/snapshots]
        [--data ../shared/data/utkface] [--faces 150] [--attribute-model NAME] [--manifest weights/ciagan64.json]

`anoncli train` keeps the weights of every export (every 250 steps and the last) in WORK_DIR/snapshots/. Each is
run through `anoncli anonymize` on the first --faces of the data's held-out photos (never trained on) and
measured as `anoncli evaluate` measures: still a face (CenterFace), re-identification Recall@1 among those faces
(dlib), cosine distance, expression change (fer), gender and age kept. One draw (seed 0) per snapshot. `shape`
draws with ganonymization's weights: give --snapshots runs/ganonymization/snapshots.

For a method that draws chosen fake identities (ciagan), also "identity hit": every one of --identity-faces
photos drawn as each of 5 identities (0, 20, 40, 60, 80), and the share whose dlib embedding is nearest that
identity's centre (chance 1 %): whether the identity code reaches the face as dlib sees it, not only as the
training's small judge does.

With --manifest the curve is written into the weights' manifest (`metrics.paper_curve`), beside the command.
"""

from __future__ import annotations

import argparse
import json
import re
import shlex
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

from anoncli.api import Anonymizer
from anoncli.attributes import DEFAULT_ESTIMATOR, create_estimator
from anoncli.evaluation.faces import pair_files
from anoncli.evaluation.papers import PAPER_FIGURES, measured
from anoncli.evaluation.runner import anonymize_into, build_evaluator
from anoncli.generative.weights import WEIGHTS_DIR, read_manifest
from anoncli.io.images import IMAGE_EXTENSIONS
from anoncli.metrics.identity import FaceEmbedder
from anoncli.training.dataset import held_out_files
from anoncli.training.identities import load_judge, unit

STEP = re.compile(r"-step(\d+)\.pt$")
CHECKED_IDENTITIES = (0, 20, 40, 60, 80)


def snapshots(folder: Path) -> list[tuple[int, Path]]:
    found = [(int(match.group(1)), path) for path in folder.glob("*.pt") if (match := STEP.search(path.name))]
    return sorted(found)


def held_out_folder(data: Path, faces: int, into: Path) -> Path:
    """A folder of links to the first `faces` held-out photos of `data`."""
    into.mkdir(parents=True)
    for path in held_out_files(data)[:faces]:
        (into / path.name).symlink_to(path.resolve())
    return into


def identity_hit(method: str, weights: Path, originals: Path, faces: int, embedder: FaceEmbedder) -> float | None:
    """Share of faces drawn as identity k whose dlib embedding is nearest k's centre, over CHECKED_IDENTITIES;
    None for weights without identities."""
    judge_entry = read_manifest(weights).get("training", {}).get("identity_judge")
    if judge_entry is None:
        return None
    centres = load_judge(WEIGHTS_DIR / judge_entry["file"], "cpu").centres.numpy()
    photos = sorted(originals.iterdir())[:faces]
    hits = []
    for identity in CHECKED_IDENTITIES:
        anonymizer = Anonymizer(method, weights=weights, identity=identity, device="cpu")
        for photo in photos:
            image = np.asarray(Image.open(photo).convert("RGB"))
            result = anonymizer.anonymize(image)
            if not result.faces:
                continue
            face = max(result.faces, key=lambda found: found.size)
            embedding = unit(embedder.embed(result.image, face.box)[None])[0]
            hits.append(int(np.argmax(centres @ embedding) == identity))
    return float(np.mean(hits)) if hits else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--method", required=True)
    parser.add_argument("--snapshots", type=Path)
    parser.add_argument("--data", type=Path, default=Path("../shared/data/utkface"))
    parser.add_argument("--faces", type=int, default=150)
    parser.add_argument("--attribute-model", default=DEFAULT_ESTIMATOR)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--identity-faces", type=int, default=40)
    parser.add_argument("--manifest", type=Path)
    args = parser.parse_args()
    folder = args.snapshots or Path("runs") / args.method / "snapshots"
    found = snapshots(folder)
    if not found:
        sys.exit(f"no snapshots (NAME-stepNNNNNNN.pt) in {folder}")
    estimator = create_estimator(args.attribute_model, device=args.device)
    evaluator = build_evaluator(args.device, None, [estimator])
    embedder = FaceEmbedder()
    points = []
    with tempfile.TemporaryDirectory(prefix="anoncli-curve-") as scratch:
        originals = held_out_folder(args.data, args.faces, Path(scratch) / "originals")
        for step, weights in found:
            anonymizer = Anonymizer(args.method, weights=weights, device=args.device, attribute_model=estimator)
            out = anonymize_into(anonymizer, originals, Path(scratch) / f"step{step}")
            summary = evaluator.evaluate(args.method, pair_files(originals, out, IMAGE_EXTENSIONS)).summary()
            point = {"steps": step, "faces": summary["faces"]}
            for figure in PAPER_FIGURES:
                point[figure.key] = round(measured(summary, figure.key, estimator.name), 4)
            hit = identity_hit(args.method, weights, originals, args.identity_faces, embedder)
            if hit is not None:
                point["identity_hit"] = round(hit, 4)
            points.append(point)
            print(json.dumps(point), flush=True)
    if args.manifest:
        manifest = json.loads(args.manifest.read_text())
        manifest.setdefault("metrics", {})["paper_curve"] = {
            "command": "python bench/paper_curve.py " + shlex.join(sys.argv[1:]),
            "data": f"the first {args.faces} held-out photos of {args.data.name} (never trained on), one draw",
            "judge": estimator.name,
            "points": points,
        }
        args.manifest.write_text(json.dumps(manifest, indent=2) + "\n")


if __name__ == "__main__":
    main()
