"""How private and how useful an anonymization is, measured face by face on pairs of images.

Faces are found in the originals by a reference detector. For each face: was its region changed, does a
*different* detector still find a face there afterwards, and how far has dlib's identity embedding moved.
Over a set: re-identification Recall@1 and verification rate (the share of faces exposed by the rule of
`evaluation.exposure`: unchanged, or found again by the reference detector and re-identified within a threshold
calibrated on the originals, reported beside it), a Fréchet distance over embeddings (FD-dlib),
how well the background outside the faces was kept (PSNR, SSIM), and, per attribute estimator, how often the
anonymized face keeps the original's gender and age group. Realism at the face's real size: its detail
(Laplacian variance of the face core) against the original's, and the edge strength on the ring where a
replacement meets its surroundings against the original's (a visible seam raises it, smearing lowers it).
"""

from __future__ import annotations

import csv
import time
from dataclasses import dataclass, field
from itertools import pairwise
from pathlib import Path
from typing import TYPE_CHECKING

import cv2
import numpy as np

from anoncli.attributes import AttributeEstimator, Attributes
from anoncli.detectors import Detector
from anoncli.evaluation.exposure import DLIB_ONLY, Calibration, calibrate, calibration_summary, exposed
from anoncli.evaluation.realism import texture_features, two_sample_auc
from anoncli.faces import (
    Box,
    Face,
    box_iou,
    centred_square,
    cut_square,
    ellipse_distance_squared,
    ellipse_radii,
    face_size,
)
from anoncli.io.images import read_picture, rgb8
from anoncli.metrics.emotion import EmotionClassifier
from anoncli.metrics.frechet import frechet_distance
from anoncli.metrics.identity import FaceEmbedder, distances
from anoncli.metrics.image_quality import background_psnr, background_ssim, detail, edge_strength
from anoncli.regions import face_region

if TYPE_CHECKING:  # torch loads only when FID weights are given
    from anoncli.metrics.inception import InceptionFeatures

CHANGED_LEVEL = 8.0  # mean absolute change (0–255) in a face's core that counts as "changed"
DETECTED_IOU = 0.4
BACKGROUND_MASK_SCALE = 2.0  # pixels beyond this many half-box sizes from every face count as background
# Where replacements meet their surroundings: an elliptical ring, in half-box radii, that holds the feathered
# edge of every method's paste mask.
SEAM_RING = (1.0, 1.7)
DETAIL_WITHIN = 2.0  # a face's detail counts as kept within this factor of the original's
# Face sizes (larger side of the box, pixels) the figures that depend on size are also given for: a method
# drawn at a fixed resolution is enlarged more for larger faces.
SIZE_BANDS = (48, 96, 192, 384)
# Seeds a generative method is anonymized with: its figures are the mean over them, and its diversity compares
# the faces of the first two.
GENERATIVE_DRAWS = 2
# Random halves of the originals that the strangers' reference for FD-dlib averages over.
STRANGER_SPLITS = 50


@dataclass
class FaceRecord:
    path: str
    box: Box
    changed: float  # mean |Δ| in the face core
    still_detected: bool  # by the second detector, at IoU ≥ 0.4
    seen_before: bool  # whether the second detector finds this face in the original at all
    original_embedding: np.ndarray
    anonymized_embedding: np.ndarray
    identity: str | None = None
    thumbnails: tuple[np.ndarray, np.ndarray] | None = None  # (original, anonymized) face crops for reports
    # estimator name → (attributes of the original face, of the anonymized face)
    attributes: dict[str, tuple[Attributes, Attributes]] = field(default_factory=dict)
    emotions: tuple[np.ndarray, np.ndarray] | None = None  # expression probabilities, original and anonymized
    detail: tuple[float, float] = (0.0, 0.0)  # Laplacian variance of the face core, original and anonymized
    seam: tuple[float, float] = (0.0, 0.0)  # edge strength on the paste ring, original and anonymized
    # What `evaluation.exposure` decides by, besides `changed` and `distance`. A record made without them counts
    # as exposed only when its face is untouched.
    background_change: float = 0.0  # mean |Δ| of the image's background
    found_again: bool = False  # by the reference detector in the anonymized image, at IoU ≥ 0.4
    calibration: Calibration = DLIB_ONLY
    texture: tuple[np.ndarray, np.ndarray] | None = None  # realism features of the original and anonymized face

    @property
    def distance(self) -> float:
        return float(np.linalg.norm(self.original_embedding - self.anonymized_embedding))

    @property
    def cosine_distance(self) -> float:
        """1 - cosine similarity of the two embeddings: GANonymization's anonymization figure (0 for the same
        embedding, not float rounding's -0.000)."""
        original, anonymized = self.original_embedding, self.anonymized_embedding
        norms = float(np.linalg.norm(original) * np.linalg.norm(anonymized))
        return max(0.0, 1.0 - float(original @ anonymized) / max(norms, 1e-12))

    @property
    def exposed(self) -> bool:
        """Still the same person by the rule of `evaluation.exposure`."""
        return exposed(self.changed, self.background_change, self.found_again, lambda: self.distance, self.calibration)

    @property
    def detail_ratio(self) -> float:
        return self.detail[1] / max(self.detail[0], 1e-6)

    @property
    def seam_ratio(self) -> float:
        return self.seam[1] / max(self.seam[0], 1e-6)

    def figures(self) -> dict:
        """What was measured on this one face, for a pipeline to find the faces a method failed on."""
        return {
            "path": self.path,
            "box": [round(float(v), 1) for v in self.box],
            "identity": self.identity,
            "changed": round(self.changed, 2),
            "distance": round(self.distance, 4),
            "exposed": self.exposed,
            "found_again": self.found_again,
            "reid_threshold": round(self.calibration.threshold, 4),
            "still_detected": self.still_detected,
            "seen_before": self.seen_before,
            "detail_ratio": round(self.detail_ratio, 4),
            "seam_ratio": round(self.seam_ratio, 4),
            "attributes": {
                name: {"original": vars(before), "anonymized": vars(after)}
                for name, (before, after) in self.attributes.items()
            },
        }


@dataclass
class Evaluation:
    name: str
    records: list[FaceRecord] = field(default_factory=list)
    images: int = 0
    missing: list[str] = field(default_factory=list)
    psnr: list[float] = field(default_factory=list)
    ssim: list[float] = field(default_factory=list)
    seconds: float = 0.0
    diversity: list[float] = field(default_factory=list)  # distances between two seeds' faces
    fid: float | None = None  # true FID over face crops, with user-supplied Inception weights

    def summary(self) -> dict:
        records = self.records
        faces = len(records)
        distances_ = np.array([r.distance for r in records])
        finite_psnr = [p for p in self.psnr if np.isfinite(p)]
        return {
            "method": self.name,
            "images": self.images,
            "faces": faces,
            "changed_share": _share(r.changed > CHANGED_LEVEL for r in records),
            "recall_at_1": recall_at_1(records),
            "verification_rate": _share(r.exposed for r in records),
            **calibration_summary([r.calibration for r in records]),
            "mean_distance": float(distances_.mean()) if faces else float("nan"),
            "mean_cosine_distance": float(np.mean([r.cosine_distance for r in records])) if faces else float("nan"),
            "still_detected": _share(r.still_detected for r in records),
            "c2st_auc": realism_auc(records),
            "fd_dlib": frechet_distance(
                np.array([r.original_embedding for r in records]), np.array([r.anonymized_embedding for r in records])
            ),
            **strangers_reference(records),
            "background_psnr": float(np.mean(finite_psnr)) if finite_psnr else float("inf"),
            "background_ssim": float(np.mean(self.ssim)) if self.ssim else float("nan"),
            "diversity": float(np.mean(self.diversity)) if self.diversity else float("nan"),
            **size_dependent(records),
            "fid": self.fid if self.fid is not None else float("nan"),
            "attribute_agreement": attribute_agreement(records),
            **emotion_agreement(records),
            "seconds_per_image": self.seconds / self.images if self.images else 0.0,
            "by_face_size": by_face_size(records),
            "missing": self.missing,
        }


def realism_auc(records: list[FaceRecord]) -> float:
    """The classifier two-sample test's AUC (`evaluation.realism`) on texture features and dlib embeddings, halves
    by person when identities are known, else by face."""
    usable = [r for r in records if r.texture is not None]
    if not usable:
        return float("nan")
    real = np.array([np.concatenate([r.texture[0], r.original_embedding]) for r in usable])
    anonymized = np.array([np.concatenate([r.texture[1], r.anonymized_embedding]) for r in usable])
    people = np.array([r.identity if r.identity is not None else f"{r.path}@{r.box}" for r in usable])
    return two_sample_auc(real, anonymized, people)


def size_dependent(records: list[FaceRecord]) -> dict[str, float]:
    """The figures that depend on how large the faces are: still a face among those the second detector finds
    in the originals (its own misses are not the method's doing), detail and seam against the original's."""
    return {
        "still_detected_of_seen": _share(r.still_detected for r in records if r.seen_before),
        "detail_ratio": _median(r.detail_ratio for r in records),
        "detail_kept": _share(1 / DETAIL_WITHIN <= r.detail_ratio <= DETAIL_WITHIN for r in records),
        "seam_ratio": _median(r.seam_ratio for r in records),
    }


def by_face_size(records: list[FaceRecord]) -> dict[str, dict[str, float]]:
    """Per band of SIZE_BANDS that holds faces: how many, and their `size_dependent` figures."""
    edges = (0, *SIZE_BANDS, float("inf"))
    bands = {}
    for low, high in pairwise(edges):
        inside = [r for r in records if low <= face_size(r.box) < high]
        if inside:
            name = f"<{high}" if low == 0 else f">={low}" if high == float("inf") else f"{low}-{high}"
            bands[name] = {"faces": len(inside), **size_dependent(inside)}
    return bands


def strangers_reference(records: list[FaceRecord]) -> dict[str, float]:
    """FD-dlib on a scale set by real faces of other people in photos of the same kind.

    The originals are split in two halves at random, STRANGER_SPLITS times: by person when identities are
    known, else by face (as if every face were another person). `fd_dlib_strangers` is the mean FD-dlib
    between one half's originals and the other half's, the figure that real faces of other people get.
    `fd_dlib_halves` is the method's own on the same halves: one half's anonymized faces against that half's
    originals. Halves hold fewer faces than the whole set, which raises both above `fd_dlib`, so their ratio
    (`fd_dlib_vs_strangers`) is the figure to compare: 1 is as close to the originals as real strangers are.
    The splits depend only on the originals, so every method is measured on the same halves.
    """
    labelled = [r for r in records if r.identity is not None]
    pool = labelled or records
    unit_of = (lambda r: r.identity) if labelled else (lambda r: (r.path, r.box))
    units = sorted({unit_of(r) for r in pool}, key=str)
    if len(units) < 4:
        return {"fd_dlib_strangers": float("nan"), "fd_dlib_halves": float("nan"), "fd_dlib_vs_strangers": float("nan")}
    originals = np.array([r.original_embedding for r in pool])
    anonymized = np.array([r.anonymized_embedding for r in pool])
    position = {unit: number for number, unit in enumerate(units)}
    unit_numbers = np.array([position[unit_of(r)] for r in pool])
    rng = np.random.default_rng(0)
    strangers, halves = [], []
    for _ in range(STRANGER_SPLITS):
        in_first = np.isin(unit_numbers, rng.permutation(len(units))[: len(units) // 2])
        strangers.append(frechet_distance(originals[in_first], originals[~in_first]))
        halves.append(frechet_distance(originals[in_first], anonymized[in_first]))
    reference, own = float(np.mean(strangers)), float(np.mean(halves))
    return {"fd_dlib_strangers": reference, "fd_dlib_halves": own, "fd_dlib_vs_strangers": own / reference}


def _share(flags) -> float:
    values = list(flags)
    return sum(bool(v) for v in values) / len(values) if values else float("nan")


def _median(values) -> float:
    values = list(values)
    return float(np.median(values)) if values else float("nan")


def attribute_agreement(records: list[FaceRecord]) -> dict[str, dict[str, float]]:
    """Per estimator: share of faces whose anonymized gender / age group equals the original's."""
    result: dict[str, dict[str, float]] = {}
    for estimator in sorted({name for r in records for name in r.attributes}):
        pairs = [r.attributes[estimator] for r in records if estimator in r.attributes]
        result[estimator] = {
            "gender": _share(before.gender == after.gender for before, after in pairs),
            "age_group": _share(before.age_group == after.age_group for before, after in pairs),
        }
    return result


def emotion_agreement(records: list[FaceRecord]) -> dict[str, float]:
    """Share of faces whose most likely expression is kept, and the mean change of the expression
    distribution (total variation distance: 0 unchanged, 1 nothing in common)."""
    pairs = [r.emotions for r in records if r.emotions is not None]
    if not pairs:
        return {"emotion_agreement": float("nan"), "emotion_change": float("nan")}
    return {
        "emotion_agreement": _share(before.argmax() == after.argmax() for before, after in pairs),
        "emotion_change": float(np.mean([0.5 * np.abs(before - after).sum() for before, after in pairs])),
    }


def recall_at_1(records: list[FaceRecord]) -> float:
    """Share of anonymized faces whose nearest original is the right one.

    Without identities the right one is the face's own original, among all original faces. With identities
    (CIAGAN's protocol) it is any *other* photo of the same person: the face's own original is left out.
    """
    labelled = [r for r in records if r.identity is not None]
    if labelled:
        gallery = np.array([r.original_embedding for r in labelled])
        query = np.array([r.anonymized_embedding for r in labelled])
        matrix = distances(query, gallery)
        np.fill_diagonal(matrix, np.inf)
        nearest = matrix.argmin(axis=1)
        return float(np.mean([labelled[i].identity == labelled[j].identity for i, j in enumerate(nearest)]))
    if not records:
        return float("nan")
    gallery = np.array([r.original_embedding for r in records])
    query = np.array([r.anonymized_embedding for r in records])
    return float(np.mean(distances(query, gallery).argmin(axis=1) == np.arange(len(records))))


def load_identities(path: Path) -> dict[str, str]:
    """file name → identity, from a CSV with a file column and an identity (or cluster_id) column."""
    with path.open(newline="", encoding="utf-8") as file:
        rows = list(csv.DictReader(file))
    if not rows:
        return {}
    key = next((k for k in ("identity", "cluster_id", "person", "label") if k in rows[0]), None)
    if "file" not in rows[0] or key is None:
        raise ValueError(f"{path}: needs a 'file' column and an 'identity' (or 'cluster_id') column")
    return {row["file"]: row[key] for row in rows}


@dataclass
class _Original:
    rgb: np.ndarray
    faces: list[Face]
    embeddings: list[np.ndarray]
    attributes: dict[str, list[Attributes]]  # estimator name → one per face
    emotions: list[np.ndarray] | None  # expression probabilities per face
    seen_by_second: list[bool]  # per face: found by the second detector in the original
    textures: list[np.ndarray]  # per face: realism features
    calibrations: list[Calibration]  # per face: how close an anonymized face must come to be re-identified


class Evaluator:
    """Compares originals with anonymized copies; caches what it learns about each original."""

    def __init__(
        self,
        reference: Detector,
        second: Detector,
        identities: dict[str, str] | None = None,
        estimators: list[AttributeEstimator] | None = None,
        emotions: EmotionClassifier | None = None,
        inception: InceptionFeatures | None = None,
    ) -> None:
        self.reference, self.second = reference, second
        self.embedder = FaceEmbedder()
        self.identities = identities or {}
        self.estimators = estimators or []
        self.emotions = emotions
        self.inception = inception
        self._originals: dict[Path, _Original] = {}

    def _original(self, path: Path) -> _Original:
        if path not in self._originals:
            rgb = rgb8(read_picture(path, max_megapixels=0).frames[0])
            faces = self.reference.detect(rgb)
            embeddings = [self.embedder.embed(rgb, f.box) for f in faces]
            self._originals[path] = _Original(
                rgb,
                faces,
                embeddings,
                {estimator.name: estimator.estimate(rgb, faces) for estimator in self.estimators},
                [self.emotions.probabilities(rgb, f.box) for f in faces] if self.emotions else None,
                found_again(faces, self.second.detect(rgb)),
                [texture_features(rgb, f.box) for f in faces],
                calibrate(rgb, faces, embeddings, self.embedder),
            )
        return self._originals[path]

    def evaluate(self, name: str, pairs: list[tuple[str, Path, Path]]) -> Evaluation:
        """`pairs`: (label, original path, anonymized path)."""
        started = time.perf_counter()
        evaluation = Evaluation(name)
        for label, original_path, anonymized_path in pairs:
            if not anonymized_path.exists():
                evaluation.missing.append(label)
                continue
            original = self._original(original_path)
            anonymized = rgb8(read_picture(anonymized_path, max_megapixels=0).frames[0])
            if anonymized.shape != original.rgb.shape:
                evaluation.missing.append(f"{label} (size differs)")
                continue
            evaluation.images += 1
            still_found = found_again(original.faces, self.second.detect(anonymized))
            # Whether a face is left to re-identify is asked of the detector that found the originals, around them.
            near = self.reference.detect_near(anonymized, [face.box for face in original.faces])
            reference_found = found_again(original.faces, near)
            background = background_mask(original.rgb.shape[:2], original.faces)
            background_moved = background_change(original.rgb, anonymized, background)
            largest = max(original.faces, key=lambda f: f.size, default=None)
            identity = self.identities.get(original_path.name)
            after_attributes = {e.name: e.estimate(anonymized, original.faces) for e in self.estimators}
            for number, (face, embedding) in enumerate(zip(original.faces, original.embeddings)):
                core = face_core(face)
                change = core_change(original.rgb, anonymized, face)
                around, ring = _seam_ring(face, original.rgb.shape[:2])
                evaluation.records.append(
                    FaceRecord(
                        label,
                        face.box,
                        change,
                        still_found[number],
                        original.seen_by_second[number],
                        embedding,
                        self.embedder.embed(anonymized, face.box),
                        identity if face is largest else None,
                        (thumbnail(original.rgb, face), thumbnail(anonymized, face)),
                        {
                            name: (original.attributes[name][number], estimates[number])
                            for name, estimates in after_attributes.items()
                        },
                        None
                        if original.emotions is None
                        else (original.emotions[number], self.emotions.probabilities(anonymized, face.box)),
                        (detail(original.rgb, core), detail(anonymized, core)),
                        (edge_strength(original.rgb, ring, around), edge_strength(anonymized, ring, around)),
                        background_change=background_moved,
                        found_again=reference_found[number],
                        calibration=original.calibrations[number],
                        texture=(original.textures[number], texture_features(anonymized, face.box)),
                    )
                )
            evaluation.psnr.append(background_psnr(original.rgb, anonymized, background))
            evaluation.ssim.append(background_ssim(original.rgb, anonymized, background))
        if self.inception is not None and evaluation.records:
            before = self.inception.features([r.thumbnails[0] for r in evaluation.records])
            after = self.inception.features([r.thumbnails[1] for r in evaluation.records])
            evaluation.fid = frechet_distance(before, after)
        evaluation.seconds = time.perf_counter() - started
        return evaluation


def found_again(faces: list[Face], found: list[Face]) -> list[bool]:
    """Per face: whether one of `found` lies on it (IoU ≥ DETECTED_IOU)."""
    boxes = np.array([f.box for f in found]).reshape(-1, 4)
    return [bool(len(boxes)) and box_iou(np.array(face.box), boxes).max() >= DETECTED_IOU for face in faces]


THUMBNAIL_SIDE = 96


def thumbnail(image: np.ndarray, face: Face) -> np.ndarray:
    """A square crop of 1.6 face sizes around the face, THUMBNAIL_SIDE pixels wide, for contact sheets."""
    pixels, _ = cut_square(image, centred_square(face.box, 1.6 * face.size))
    return cv2.resize(pixels, (THUMBNAIL_SIDE, THUMBNAIL_SIDE), interpolation=cv2.INTER_AREA)


def measure_diversity(draws: list[Evaluation]) -> None:
    """dlib distance between the faces two anonymizations (different seeds) drew for the same original face;
    every draw keeps the distances, so each draw's summary gives them."""
    first, second = draws[0], draws[1]
    other = {(r.path, r.box): r.anonymized_embedding for r in second.records}
    spread = [
        float(np.linalg.norm(other[(r.path, r.box)] - r.anonymized_embedding))
        for r in first.records
        if (r.path, r.box) in other
    ]
    for draw in draws:
        draw.diversity = spread


def summarize_draws(draws: list[Evaluation]) -> dict:
    """One summary for one or more draws of a method (seeds 0, 1, … of a generative one) on the same originals:
    every figure is the mean over the draws, so that which face one seed happens to draw moves it less."""
    return {**_mean_of(draw.summary() for draw in draws), "draws": len(draws)}


def _mean_of(summaries) -> dict:
    """Figures equal in every summary (counts of images and faces) keep their type; lists (missing files) are
    joined; nested figures are averaged the same way."""
    summaries = list(summaries)
    merged: dict = {}
    for key, value in summaries[0].items():
        values = [summary.get(key) for summary in summaries]
        if isinstance(value, dict):
            merged[key] = _mean_of(v if isinstance(v, dict) else {} for v in values)
        elif isinstance(value, list):
            merged[key] = list(dict.fromkeys(item for v in values for item in v or []))
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            numbers = [v for v in values if isinstance(v, (int, float))]
            merged[key] = value if all(v == value for v in numbers) else float(np.mean(numbers))
        else:
            merged[key] = value
    return merged


def face_core(face: Face) -> tuple[slice, slice]:
    """The central 60 % of a face box, where evaluate measures change and detail."""
    x1, y1, x2, y2 = face.box
    cx, cy, hw, hh = (x1 + x2) / 2, (y1 + y2) / 2, (x2 - x1) * 0.3, (y2 - y1) * 0.3
    return slice(max(0, int(cy - hh)), int(cy + hh)), slice(max(0, int(cx - hw)), int(cx + hw))


def core_change(original: np.ndarray, anonymized: np.ndarray, face: Face) -> float:
    """Mean |Δ| (0–255) over the face's core in two RGB uint8 images of one size."""
    core = face_core(face)
    return float(np.abs(original[core].astype(np.float32) - anonymized[core]).mean())


def background_change(original: np.ndarray, anonymized: np.ndarray, background: np.ndarray) -> float:
    """Mean |Δ| (0–255) over the background mask (`background_mask`): what re-encoding alone moved; 0 when
    faces leave no background, so that only an untouched face then counts as unchanged."""
    if not background.any():
        return 0.0
    return float(np.abs(original[background].astype(np.float32) - anonymized[background]).mean())


def _seam_ring(face: Face, shape: tuple[int, int]) -> tuple[tuple[slice, slice], np.ndarray]:
    """The crop around a face and, over it, the SEAM_RING ellipse band."""
    centre_x, centre_y, radius_x, radius_y = ellipse_radii(face.box)
    outer = SEAM_RING[1]
    top, bottom = max(0, int(centre_y - outer * radius_y)), min(shape[0], int(np.ceil(centre_y + outer * radius_y)))
    left, right = max(0, int(centre_x - outer * radius_x)), min(shape[1], int(np.ceil(centre_x + outer * radius_x)))
    distance = np.sqrt(ellipse_distance_squared(face.box, 1.0, left, top, right, bottom))
    return (slice(top, bottom), slice(left, right)), (distance >= SEAM_RING[0]) & (distance <= outer)


def background_mask(shape: tuple[int, int], faces: list[Face]) -> np.ndarray:
    """Where no anonymization reaches: pixels beyond BACKGROUND_MASK_SCALE half-box sizes from every face."""
    background = np.ones(shape, bool)
    for face in faces:
        region = face_region(face, shape[1], shape[0], BACKGROUND_MASK_SCALE, 0.0)
        background[region.slices] &= region.mask == 0
    return background


def pair_files(originals: Path, anonymized: Path, extensions: frozenset[str]) -> list[tuple[str, Path, Path]]:
    """(relative path, original, anonymized) for every image under `originals`, paired by relative path."""
    if originals.is_file():
        return [(originals.name, originals, anonymized if anonymized.is_file() else anonymized / originals.name)]
    files = sorted(p for p in originals.rglob("*") if p.suffix.lower() in extensions and p.is_file())
    return [(str(p.relative_to(originals)), p, anonymized / p.relative_to(originals)) for p in files]
