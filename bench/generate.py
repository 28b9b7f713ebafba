"""Faces per second of a generative method's inference on this machine, batched vs one face at a time.

    .venv/bin/python bench/generate.py [--method METHOD] [--faces 128] [--device cpu]

METHOD: deepprivacy (default), ksame, ganonymization, ciagan or stargan.

Uses the shipped weights and real face crops (the faces of sample_data/), through the method's public
`anonymize`, so crop preparation, generation and colour matching (and for ksame FaceMesh, the composite's warp
and blend) are all counted.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from anoncli.anonymizers import FaceCrop, create_method
from anoncli.detectors import create_detector
from anoncli.frames import face_crop
from anoncli.regions import face_region

GENERATIVE_METHODS = ("deepprivacy", "ksame", "ganonymization", "ciagan", "stargan")
SAMPLE_DATA = Path(__file__).resolve().parent.parent / "sample_data"


def face_crops(context: float, method_mask_scale: float) -> list[FaceCrop]:
    detector = create_detector("retinaface")
    crops = []
    for path in sorted(SAMPLE_DATA.rglob("*.jpg")):
        image = np.asarray(Image.open(path).convert("RGB"))
        for seed, face in enumerate(detector.detect(image)):
            region = face_region(face, image.shape[1], image.shape[0], method_mask_scale, context)
            crops.append(face_crop(image, region, face, seed))
    return crops


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--faces", type=int, default=128)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--method", default="deepprivacy", choices=GENERATIVE_METHODS)
    args = parser.parse_args()
    method = create_method(args.method, device=args.device)
    pool = face_crops(method.context, method.default_mask_scale)
    faces = [pool[i % len(pool)] for i in range(args.faces)]
    method.anonymize(faces[:8])  # warm-up
    started = time.perf_counter()
    method.anonymize(faces)
    batched = args.faces / (time.perf_counter() - started)
    started = time.perf_counter()
    for face in faces:
        method.anonymize([face])
    single = args.faces / (time.perf_counter() - started)
    print(f"{args.method} on {args.device}, {torch.get_num_threads()} threads, {args.faces} faces")
    print(f"batched:        {batched:7.1f} faces/s")
    print(f"one at a time:  {single:7.1f} faces/s")
    print(f"batching gain:  {batched / single:7.2f}×")


if __name__ == "__main__":
    main()
