"""How much the faces of anonymized videos flicker in brightness, which `evaluate`'s tOF (a comparison of optical
flow) hardly sees: a face that brightens and darkens from frame to frame moves little in the flow.

    .venv/bin/python bench/face_flicker.py ORIGINAL ANONYMIZED [ANONYMIZED ...] [--min-size 60]

The reference detector (`evaluate`'s) finds the faces of the original's frames; each face of at least
--min-size pixels is followed to the previous frame by its box's overlap (IoU ≥ 0.5). Per face and frame: the
mean luma of the middle half of its box in the anonymized frame less that in the original (what anonymization
added), and its change from the previous frame. Printed per video: mean and 90th percentile of that change, in
grey levels (0: the new face keeps its brightness as steadily as the original does).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np

from anoncli.detectors import create_detector
from anoncli.faces import Box, Face, box_iou
from anoncli.io.video import decode_frames, probe_video

SAME_FACE_IOU = 0.5


def lumas(video: Path) -> list[np.ndarray]:
    rotation = probe_video(video).rotation
    return [cv2.cvtColor(f.upright_rgb(rotation), cv2.COLOR_RGB2GRAY).astype(np.float32) for f in decode_frames(video)]


def middle(box: Box) -> tuple[slice, slice]:
    x1, y1, x2, y2 = box
    width, height = x2 - x1, y2 - y1
    return slice(max(int(y1 + height / 4), 0), int(y2 - height / 4)), slice(
        max(int(x1 + width / 4), 0), int(x2 - width / 4)
    )


def offset_changes(original: list[np.ndarray], anonymized: list[np.ndarray], faces: list[list[Face]]) -> np.ndarray:
    """Per face followed from one frame to the next: |change of its anonymized-less-original mean luma|."""

    def offset(frame: int, box: Box) -> float:
        where = middle(box)
        return float(anonymized[frame][where].mean() - original[frame][where].mean())

    changes = []
    for frame in range(1, min(len(original), len(anonymized))):
        now, before = faces[frame], faces[frame - 1]
        if not now or not before:
            continue
        overlaps = box_iou(np.array([f.box for f in now]), np.array([f.box for f in before]))
        for face, row in zip(now, overlaps):
            if row.max() >= SAME_FACE_IOU:
                previous = before[int(row.argmax())]
                changes.append(abs(offset(frame, face.box) - offset(frame - 1, previous.box)))
    return np.array(changes)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("original", type=Path)
    parser.add_argument("anonymized", type=Path, nargs="+")
    parser.add_argument("--min-size", type=float, default=60.0, help="faces smaller than this (pixels) are left out")
    args = parser.parse_args()
    detector = create_detector("retinaface", device="cpu")
    rotation = probe_video(args.original).rotation
    faces = [
        [face for face in detector.detect(frame.upright_rgb(rotation)) if face.size >= args.min_size]
        for frame in decode_frames(args.original)
    ]
    original = lumas(args.original)
    for video in args.anonymized:
        changes = offset_changes(original, lumas(video), faces)
        print(
            f"{video}: {len(changes)} face-frames, brightness change per frame mean {changes.mean():.2f}, "
            f"90th percentile {np.percentile(changes, 90):.2f} grey levels"
        )


if __name__ == "__main__":
    main()
