"""Coverage against faces a person marked: was each face's inner part changed enough that nobody is left
recognisable? Independent of any detector, so the faces a detector misses count.

A face's inner part is the central 60 % of its marked box (`evaluation.faces.face_core`); a pixel there counts
as changed when one of its channels moved by at least CHANGED_LEVEL (re-encoding alone moves few pixels that
far). A face is **exposed** when under half of its inner part changed, **fully covered** when at least 90 % did.
Faces under MIN_FACE pixels (the box's larger side) are left out: too small to recognise.
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from anoncli.evaluation.faces import face_core
from anoncli.faces import Box, Face, face_size
from anoncli.io.images import read_picture, rgb8

CHANGED_LEVEL = 10
EXPOSED_BELOW = 0.5
COVERED_FROM = 0.9
MIN_FACE = 20.0


@dataclass(frozen=True)
class MarkedFace:
    box: Box
    view: str = ""  # how the face is seen, when the box file says (frontal, profile, away, ...)


@dataclass(frozen=True)
class FaceCoverage:
    path: str
    face: MarkedFace
    changed: float  # share of the inner part changed

    @property
    def exposed(self) -> bool:
        return self.changed < EXPOSED_BELOW

    @property
    def fully_covered(self) -> bool:
        return self.changed >= COVERED_FROM


def read_boxes(path: Path) -> dict[str, list[MarkedFace]]:
    """Marked faces per image path (relative to the originals), from JSON lines as `anoncli detect` writes them
    (an optional `view` per face), or from WIDER FACE's text format (file; count; `x y w h ...` per face)."""
    text = path.read_text(encoding="utf-8")
    if text.lstrip().startswith("{"):
        marked: dict[str, list[MarkedFace]] = {}
        for number, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
                faces = [MarkedFace(Face.from_json(face).box, face.get("view", "")) for face in record["faces"]]
            except (ValueError, KeyError, TypeError) as error:
                raise ValueError(f"{path}, line {number}: not a detection record ({error})") from None
            marked.setdefault(record["path"], []).extend(faces)
        return marked
    return _read_wider(path, text)


def _read_wider(path: Path, text: str) -> dict[str, list[MarkedFace]]:
    lines = iter(line.strip() for line in text.splitlines() if line.strip())
    marked: dict[str, list[MarkedFace]] = {}
    for name in lines:
        try:
            count = int(next(lines))
            rows = [next(lines).split() for _ in range(max(count, 1))]  # a count of 0 has one line of zeros
            faces = []
            for row in rows[:count]:
                x, y, width, height = (float(value) for value in row[:4])
                if width > 0 and height > 0:
                    faces.append(MarkedFace((x, y, x + width, y + height)))
        except (StopIteration, ValueError):
            raise ValueError(f"{path}: not a WIDER FACE box file near {name!r}") from None
        marked[name] = faces
    return marked


def changed_share(original: np.ndarray, anonymized: np.ndarray, box: Box) -> float:
    """The share of the box's inner part (`face_core`, as `evaluate` measures change) where a pixel changed, in
    RGB uint8 images of one size."""
    core = face_core(Face(box, 1.0))
    before, after = original[core].astype(np.int16), anonymized[core].astype(np.int16)
    if before.size == 0:
        return 1.0  # nothing of the face lies inside the image
    return float((np.abs(after - before).max(axis=2) >= CHANGED_LEVEL).mean())


def measure_coverage(
    marked: dict[str, list[MarkedFace]], originals: Path, anonymized: Path
) -> tuple[list[FaceCoverage], list[str]]:
    """Every marked face of MIN_FACE pixels or more, with the share of it changed in `anonymized` (paired by
    relative path); and the images that could not be compared (a missing output counts its faces exposed)."""
    results: list[FaceCoverage] = []
    problems: list[str] = []
    for name, faces in sorted(marked.items()):
        faces = [face for face in faces if face_size(face.box) >= MIN_FACE]
        try:
            before = rgb8(read_picture(originals / name).frames[0])
        except Exception as error:  # the box file names an image that is not there: say so, measure the rest
            problems.append(f"{name}: original not readable ({error})")
            continue
        try:
            after = rgb8(read_picture(anonymized / name).frames[0])
            if after.shape != before.shape:
                raise ValueError(
                    f"size {after.shape[1]}×{after.shape[0]}, original {before.shape[1]}×{before.shape[0]}"
                )
        except Exception as error:  # a face that was not written out anonymized is exposed
            problems.append(f"{name}: anonymized copy not comparable ({error})")
            results.extend(FaceCoverage(name, face, 0.0) for face in faces)
            continue
        results.extend(FaceCoverage(name, face, changed_share(before, after, face.box)) for face in faces)
    return results, problems


def coverage_summary(results: list[FaceCoverage]) -> dict:
    """Exposed and fully covered shares, overall and per view."""

    def shares(items: list[FaceCoverage]) -> dict:
        count = len(items)
        return {
            "faces": count,
            "exposed": sum(item.exposed for item in items) / count if count else float("nan"),
            "fully_covered": sum(item.fully_covered for item in items) / count if count else float("nan"),
        }

    by_view: dict[str, list[FaceCoverage]] = defaultdict(list)
    for item in results:
        by_view[item.face.view or "unknown"].append(item)
    return {
        **shares(results),
        "exposed_faces": [{"path": item.path, "box": list(item.face.box)} for item in results if item.exposed],
        "by_view": {view: shares(items) for view, items in sorted(by_view.items())},
    }
