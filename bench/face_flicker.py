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
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np

from anoncli.detectors import create_detector
from anoncli.faces import Box, Face, box_iou
from anoncli.io.video import decode_frames, probe_video

SAME_FACE_IOU = 0.5


def luma_frames(video: Path) -> Iterator[np.ndarray]:
    rotation = probe_video(video).rotation
    for frame in decode_frames(video):
        yield cv2.cvtColor(frame.upright_rgb(rotation), cv2.COLOR_RGB2GRAY)


def middle(box: Box) -> tuple[slice, slice]:
    x1, y1, x2, y2 = box
    width, height = x2 - x1, y2 - y1
    return slice(max(int(y1 + height / 4), 0), int(y2 - height / 4)), slice(
        max(int(x1 + width / 4), 0), int(x2 - width / 4)
    )


def offset_changes(original: Path, anonymized: Path, faces: list[list[Face]]) -> np.ndarray:
    """Per face followed from one frame to the next: |change of its anonymized-less-original mean luma|. The two
    videos are read side by side, a frame at a time."""
    changes: list[float] = []
    before: tuple[list[Face], list[float]] = ([], [])
    for found, original_frame, anonymized_frame in zip(faces, luma_frames(original), luma_frames(anonymized)):
        offsets = [
            float(anonymized_frame[middle(face.box)].mean()) - float(original_frame[middle(face.box)].mean())
            for face in found
        ]
        if found and before[0]:
            overlaps = box_iou(np.array([f.box for f in found]), np.array([f.box for f in before[0]]))
            for offset, row in zip(offsets, overlaps):
                if row.max() >= SAME_FACE_IOU:
                    changes.append(abs(offset - before[1][int(row.argmax())]))
        before = (found, offsets)
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
    for video in args.anonymized:
        changes = offset_changes(args.original, video, faces)
        if not len(changes):
            print(f"{video}: no face was followed from one frame to the next")
            continue
        print(
            f"{video}: {len(changes)} face-frames, brightness change per frame mean {changes.mean():.2f}, "
            f"90th percentile {np.percentile(changes, 90):.2f} grey levels"
        )


if __name__ == "__main__":
    main()
