"""Would a person or body detector that ships offline find the heads that show no face (turned away, cut by the
border)? The two at hand, on the tuning photos of `tests/data/crowd_boxes.jsonl`:

- OpenCV's Haar upper-body cascade (`cv2.data.haarcascades`, opencv-python's wheel);
- MediaPipe's BlazePose person detector (`pose_detection.tflite` in the mediapipe 0.10.21 wheel), run directly
  so that it returns every person (`mp.solutions.pose` keeps one), on the whole photo and on half-overlapping
  tiles of 1/2 and 3/10 of its long side.

    .venv/bin/python bench/head_finders.py [--split tuning]

Per photo: the marked heads of 20 px or more whose view is `away` or `edge` with their centre inside a detection,
and the detections that hold no marked face (false alarms).
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path

import cv2
import mediapipe
import numpy as np
from ai_edge_litert.interpreter import Interpreter

from anoncli.detectors.base import non_max_suppression
from anoncli.faces import box_iou
from anoncli.io.images import read_picture, rgb8

ROOT = Path(__file__).resolve().parent.parent
PHOTOS = ROOT.parent / "shared" / "data" / "group_photos" / "unannotated"
BOXES = ROOT / "tests" / "data" / "crowd_boxes.jsonl"
FACELESS_VIEWS = ("away", "edge")
POSE_INPUT = 224
POSE_SCORE = 0.5


def haar_upper_bodies(rgb: np.ndarray) -> np.ndarray:
    cascade = cv2.CascadeClassifier(cv2.data.haarcascades + "haarcascade_upperbody.xml")
    gray = cv2.equalizeHist(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY))
    found = cascade.detectMultiScale(gray, scaleFactor=1.1, minNeighbors=3, minSize=(40, 40))
    return np.array([[x, y, x + w, y + h] for x, y, w, h in found], dtype=np.float32).reshape(-1, 4)


class BlazePosePersons:
    """BlazePose's SSD person detector: 2,254 fixed-size anchors on 28², 14² and 7² grids (2, 2 and 6 per cell)."""

    def __init__(self) -> None:
        model = Path(mediapipe.__file__).parent / "modules" / "pose_detection" / "pose_detection.tflite"
        self.interpreter = Interpreter(model_path=str(model), num_threads=1)
        self.interpreter.allocate_tensors()
        centres = []
        for cells, per_cell in ((28, 2), (14, 2), (7, 6)):
            for y in range(cells):
                for x in range(cells):
                    centres += [((x + 0.5) / cells, (y + 0.5) / cells)] * per_cell
        self.anchors = np.array(centres, dtype=np.float32)

    def _window(self, rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        height, width = rgb.shape[:2]
        scale = POSE_INPUT / max(height, width)
        new_h, new_w = round(height * scale), round(width * scale)
        canvas = np.zeros((POSE_INPUT, POSE_INPUT, 3), np.float32)
        top, left = (POSE_INPUT - new_h) // 2, (POSE_INPUT - new_w) // 2
        canvas[top : top + new_h, left : left + new_w] = cv2.resize(rgb, (new_w, new_h)) / 127.5 - 1
        self.interpreter.set_tensor(self.interpreter.get_input_details()[0]["index"], canvas[None])
        self.interpreter.invoke()
        outputs = {d["name"]: self.interpreter.get_tensor(d["index"])[0] for d in self.interpreter.get_output_details()}
        scores = 1 / (1 + np.exp(-np.clip(outputs["Identity_1"][:, 0], -80, 80)))
        keep = scores >= POSE_SCORE
        regression = outputs["Identity"][keep, :4] / POSE_INPUT
        scores = scores[keep]
        centre = regression[:, :2] + self.anchors[keep]
        boxes = np.concatenate([centre - regression[:, 2:] / 2, centre + regression[:, 2:] / 2], axis=1)
        boxes = (boxes * POSE_INPUT - np.array([left, top, left, top])) / scale
        return boxes, scores

    def __call__(self, rgb: np.ndarray) -> np.ndarray:
        height, width = rgb.shape[:2]
        found = [self._window(rgb)]
        for share in (0.5, 0.3):
            side = int(max(height, width) * share)
            for top in range(0, max(1, height - side // 2), side // 2):
                for left in range(0, max(1, width - side // 2), side // 2):
                    boxes, scores = self._window(rgb[top : top + side, left : left + side])
                    found.append((boxes + np.array([left, top, left, top]), scores))
        boxes = np.concatenate([b for b, _ in found]).reshape(-1, 4)
        return boxes[non_max_suppression(boxes, np.concatenate([s for _, s in found]), 0.3)]


def centre_inside(boxes: np.ndarray, detections: np.ndarray) -> np.ndarray:
    """For each box, whether its centre lies inside any detection."""
    centres = (boxes[:, None, :2] + boxes[:, None, 2:]) / 2
    inside = (centres >= detections[None, :, :2]) & (centres <= detections[None, :, 2:])
    return inside.all(axis=2).any(axis=1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--split", default="tuning", choices=("tuning", "held_out"))
    args = parser.parse_args()
    finders: dict[str, Callable[[np.ndarray], np.ndarray]] = {
        "haar upper body": haar_upper_bodies,
        "blazepose persons": BlazePosePersons(),
    }
    totals = {name: [0, 0, 0, 0] for name in finders}  # heads found, heads, false alarms, photos
    for line in BOXES.read_text().splitlines():
        record = json.loads(line)
        if record["split"] != args.split:
            continue
        rgb = rgb8(read_picture(PHOTOS / record["path"]).frames[0])
        marked = np.array([f["box"] for f in record["faces"] if f["box"][2] - f["box"][0] >= 20]).reshape(-1, 4)
        faceless = np.array(
            [f["box"] for f in record["faces"] if f["view"] in FACELESS_VIEWS and f["box"][2] - f["box"][0] >= 20]
        ).reshape(-1, 4)
        for name, finder in finders.items():
            found = finder(rgb)
            heads = int(centre_inside(faceless, found).sum()) if len(found) else 0
            on_face = np.zeros(len(found), bool)
            if len(found) and len(marked):
                holds_face = np.array([centre_inside(marked, box[None]).any() for box in found])
                on_face = (box_iou(found, marked) > 0.3).any(axis=1) | centre_inside(found, marked) | holds_face
            alarms = int((~on_face).sum())
            totals[name] = [t + v for t, v in zip(totals[name], (heads, len(faceless), alarms, 1))]
            print(f"{name:<18} {record['path']:<36} faceless heads {heads}/{len(faceless)}  false alarms {alarms}")
    for name, (heads, count, alarms, photos) in totals.items():
        print(f"{name}: faceless heads found {heads} of {count}, false alarms {alarms / photos:.1f} per image")


if __name__ == "__main__":
    main()
