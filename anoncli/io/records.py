"""Detections as files: what `anoncli detect` writes and what `anonymize --detections` reads back."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable
from pathlib import Path
from typing import TextIO

from anoncli.faces import LANDMARK_NAMES, Face
from anoncli.io.sources import UsageError

CSV_COLUMNS = ["path", "frame", "width", "height", "x1", "y1", "x2", "y2", "score"] + [
    f"{name}_{axis}" for name in LANDMARK_NAMES for axis in "xy"
]


def image_record(path: str, frame: int, frames: int, width: int, height: int, faces: list[Face]) -> dict:
    record: dict = {"path": path}
    if frames > 1:
        record["frame"] = frame
    record.update(width=width, height=height, faces=[face.to_json() for face in faces])
    return record


def write_jsonl(records: Iterable[dict], stream: TextIO) -> None:
    for record in records:
        stream.write(json.dumps(record, ensure_ascii=False) + "\n")
        stream.flush()


def csv_rows(record: dict) -> list[list]:
    """One row per face; an image without faces still gets one row with empty face columns."""
    head = [record["path"], record.get("frame", 0), record["width"], record["height"]]
    if not record["faces"]:
        return [head + [""] * (len(CSV_COLUMNS) - len(head))]
    rows = []
    for face in record["faces"]:
        points = [value for point in (face["landmarks"] or [[""] * 2] * 5) for value in point]
        rows.append(head + face["box"] + [face["score"]] + points)
    return rows


def csv_writer(stream: TextIO) -> csv.writer:
    writer = csv.writer(stream)
    writer.writerow(CSV_COLUMNS)
    return writer


class UserDetections:
    """Faces the user supplies per image (JSON lines as `anoncli detect` writes them), keyed by real path."""

    def __init__(self, path: Path) -> None:
        self._faces: dict[tuple[Path, int], list[Face]] = {}
        self._unusable: dict[tuple[Path, int], str] = {}  # a bad face fails its own image, not the run
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except OSError as error:
            raise UsageError(f"cannot read detections file {path}: {error.strerror}") from None
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
                key = (Path(record["path"]).resolve(), int(record.get("frame", 0)))
                faces = record["faces"]
            except (ValueError, KeyError, TypeError, OSError) as error:
                raise UsageError(f"{path}, line {number}: not a detection record ({error})") from None
            try:
                self._faces.setdefault(key, []).extend(Face.from_json(face) for face in faces)
            except (ValueError, KeyError, TypeError) as error:
                self._unusable[key] = f"{path}, line {number}: unusable face ({error})"

    def faces(self, image: Path, frame: int) -> list[Face]:
        key = (image.resolve(), frame)
        if key in self._unusable:
            raise ValueError(self._unusable[key])
        if key not in self._faces:
            raise LookupError("no detections for this image in the --detections file")
        return self._faces[key]


def load_tracks(path: Path) -> dict[int, list[tuple[int, Face, bool]]]:
    """Per frame index, (track id, face, detected) as `anoncli track` writes them (JSON lines)."""
    frames: dict[int, list[tuple[int, Face, bool]]] = {}
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as error:
        raise UsageError(f"cannot read tracks file {path}: {error.strerror}") from None
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            frames[int(record["frame"])] = [
                (int(face["track_id"]), Face.from_json(face), bool(face.get("detected", True)))
                for face in record["faces"]
            ]
        except (ValueError, KeyError, TypeError) as error:
            raise UsageError(f"{path}, line {number}: not a track record ({error})") from None
    return frames


def track_record(frame: int, seconds: float | None, faces: Iterable[tuple[int, Face, bool]]) -> dict:
    """One frame of `anoncli track`'s JSON lines, as `load_tracks` reads it back."""
    return {
        "frame": frame,
        "time": None if seconds is None else round(seconds, 6),
        "faces": [
            {"track_id": track_id, "detected": detected, **face.to_json()}
            for track_id, face, detected in sorted(faces, key=lambda entry: entry[0])
        ],
    }


def mot_rows(frame: int, faces: Iterable[tuple[int, Face, bool]]) -> list[str]:
    """One frame in MOTChallenge CSV (frame from 1, id, left, top, width, height, score; predicted boxes 0)."""
    rows = []
    for track_id, face, detected in sorted(faces, key=lambda entry: entry[0]):
        x1, y1, x2, y2 = face.box
        score = face.score if detected else 0
        rows.append(f"{frame + 1},{track_id},{x1:.1f},{y1:.1f},{x2 - x1:.1f},{y2 - y1:.1f},{score:.4f},-1,-1,-1\n")
    return rows
