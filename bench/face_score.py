"""How strongly RetinaFace sees a face in the generator's output, against the real face, on held-out faces.

    .venv/bin/python bench/face_score.py [--weights weights/deepprivacy64.pt] [--faces 64]

Runs the shipped RetinaFace graph in torch (`RetinaFaceNet`) on the generator's squares (generated face
pasted into the real context), on the real squares, and on the erased squares (no face at all), at the
network's resolution and enlarged 2× and 3×. It prints the mean face probability of the anchors that match
the face box (IoU ≥ 0.35, RetinaFace's training rule) and the share above 0.5: if the generated faces already
score like real ones, a detector-score loss has nothing left to teach.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np
import torch
from torch.nn import functional as F

from anoncli.detectors.retinaface_anchors import anchors_for
from anoncli.detectors.retinaface_net import RetinaFaceNet
from anoncli.faces import cut_square
from anoncli.generative.geometry import build_input, erase_ellipse
from anoncli.generative.sampling import generate, to_tensors
from anoncli.generative.weights import load_generator
from anoncli.training.dataset import FaceDataset, prepared_resolution

MATCH_IOU = 0.35


def anchor_overlap(anchors: np.ndarray, box: np.ndarray) -> np.ndarray:
    """IoU (N, A) of each image's box (N, 4; x1 y1 x2 y2) with every anchor (A, 4; cx cy w h)."""
    corners = np.hstack([anchors[:, :2] - anchors[:, 2:] / 2, anchors[:, :2] + anchors[:, 2:] / 2])
    low = np.maximum(box[:, None, :2], corners[None, :, :2])
    high = np.minimum(box[:, None, 2:], corners[None, :, 2:])
    inter = np.prod(np.clip(high - low, 0, None), axis=2)
    area_box = np.prod(box[:, 2:] - box[:, :2], axis=1)
    return inter / (area_box[:, None] + np.prod(anchors[:, 2:], axis=1)[None, :] - inter)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", type=Path, default=Path("weights/deepprivacy64.pt"))
    parser.add_argument("--faces", type=int, default=64)
    parser.add_argument("--prepared", type=Path, default=None, help="prepared UTKFace cache")
    arguments = parser.parse_args()

    generator, _ = load_generator(arguments.weights, "cpu")
    size = generator.resolution
    folder = arguments.prepared or Path("runs/prepared") / (
        "utkface" if prepared_resolution(size) == 128 else f"utkface-{prepared_resolution(size)}"
    )
    dataset = FaceDataset.load(folder)
    network = RetinaFaceNet().eval()
    inputs, reals, boxes = [], [], []
    for index in dataset.held_out_indices[: arguments.faces]:
        crop, valid = np.asarray(dataset.crops[index]), np.asarray(dataset.valid[index])
        box = tuple(np.asarray(dataset.boxes[index]).tolist())
        erase = erase_ellipse(crop.shape[:2], box, 1.1)
        generator_input, square, _ = build_input(crop, valid, erase, box, np.asarray(dataset.landmarks[index]), size)
        inputs.append(generator_input)
        real, _ = cut_square(crop * valid[:, :, None], square)
        reals.append(cv2.resize(real, (size, size), interpolation=cv2.INTER_AREA))
        factor = size / square.side
        boxes.append(
            [
                (box[0] - square.x) * factor,
                (box[1] - square.y) * factor,
                (box[2] - square.x) * factor,
                (box[3] - square.y) * factor,
            ]
        )
    condition, erased, _ = to_tensors(inputs, "cpu")
    real = torch.from_numpy(np.stack(reals)).permute(0, 3, 1, 2).float() / 127.5 - 1
    with torch.no_grad():
        fake = generate(generator, condition, erased, list(range(len(inputs)))).float() * erased + real * (1 - erased)
        print(f"{arguments.weights.name}, {len(inputs)} held-out faces, face probability on matching anchors")
        for scale in (1, 2, 3):
            side = size * scale
            overlap = torch.from_numpy(anchor_overlap(anchors_for(side, side), np.array(boxes, np.float32) * scale))
            for name, images in (("real", real), ("generated", fake), ("erased", real * (1 - erased))):
                if scale > 1:
                    images = F.interpolate(images, size=(side, side), mode="bilinear", align_corners=False)
                _, probability, _ = network(images)
                matched = torch.where(overlap >= MATCH_IOU, probability, torch.zeros_like(probability)).amax(dim=1)
                share = (matched > 0.5).float().mean()
                print(f"  {side:4d} px {name:9s} mean {matched.mean():.3f}  above 0.5: {share:.0%}")


if __name__ == "__main__":
    main()
