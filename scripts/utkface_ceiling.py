"""How far any generator trained on UTKFace could go on a set of photos, by evaluate's detail and FD-dlib.

    python scripts/utkface_ceiling.py ../shared/data/identities/celebs13 ../shared/data/group_photos/annotated

A generator can at best draw faces like the ones it learnt from. Real held-out UTKFace faces (other people,
never trained on) stand in for that perfect generator, measured the way `anoncli evaluate` measures:

- detail: each photo face's core (`face_core`) against held-out faces enlarged to its size (RetinaFace boxes
  matched): the median ratio of their Laplacian variance, and the share of faces within 2x;
- FD-dlib: each photo face replaced by a held-out face of the gender and age group the anoncli classifier reads
  on it, picked at random among the DONOR_CHOICES closest to it in pose (5 landmarks), warped onto its
  landmarks and blended (Poisson) into the ellipse deepprivacy erases; the mean over --draws draws.

The swap is the crude part: a donor's forehead, hairline or skin can clash with the photo where a generator
sees the context. So the FD-dlib figure says what real other people pasted in get, not a hard bound.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import NamedTuple

import cv2
import numpy as np

from anoncli.anonymizers.deepprivacy import DeepPrivacy
from anoncli.attributes import Attributes
from anoncli.attributes.classifier import UTKFaceEstimator
from anoncli.detectors import Detector, create_detector
from anoncli.evaluation.faces import DETAIL_WITHIN, face_core
from anoncli.faces import Face
from anoncli.generative.geometry import erase_ellipse
from anoncli.io.images import IMAGE_EXTENSIONS, read_picture, rgb8
from anoncli.metrics.frechet import frechet_distance
from anoncli.metrics.identity import FaceEmbedder
from anoncli.metrics.image_quality import detail
from anoncli.training.dataset import held_out_labelled

DONOR_CHOICES = 5
ENLARGED_PER_FACE = 12  # held-out faces enlarged to each photo face's size for its detail ceiling


class Models(NamedTuple):
    """Loaded once for all folders: the reference detector, evaluate's embedder and the attribute classifier."""

    detector: Detector
    embedder: FaceEmbedder
    estimator: UTKFaceEstimator


class Donor:
    def __init__(self, image: np.ndarray, face: Face, attributes: Attributes) -> None:
        self.image, self.face, self.attributes = image, face, attributes
        self.landmarks = np.asarray(face.landmarks, np.float32)


def pose_residual(points: np.ndarray, target: np.ndarray) -> float:
    """How far `points` stay from `target` after the best similarity transform, relative to the target's spread."""
    matrix, _ = cv2.estimateAffinePartial2D(points, target)
    moved = points @ matrix[:, :2].T + matrix[:, 2]
    return float(np.linalg.norm(moved - target) / np.linalg.norm(target - target.mean(axis=0)))


def enlarged_detail(donor: Donor, width: float) -> float:
    """Evaluate's detail of the donor's face core with the donor enlarged so its face box is `width` wide."""
    factor = width / donor.face.width
    image = cv2.resize(donor.image, None, fx=factor, fy=factor, interpolation=cv2.INTER_CUBIC)
    return detail(image, face_core(Face(tuple(v * factor for v in donor.face.box), 1.0)))


def swapped(image: np.ndarray, face: Face, donor: Donor) -> np.ndarray:
    """`image` with `face` replaced by the donor's face, warped onto its landmarks and blended into its ellipse."""
    height, width = image.shape[:2]
    matrix, _ = cv2.estimateAffinePartial2D(donor.landmarks, np.asarray(face.landmarks, np.float32))
    warped = cv2.warpAffine(donor.image, matrix, (width, height), flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REFLECT)
    covered = cv2.warpAffine(np.ones(donor.image.shape[:2], np.uint8), matrix, (width, height)) > 0
    region = erase_ellipse((height, width), face.box, DeepPrivacy.default_mask_scale) & covered
    ys, xs = np.nonzero(region)
    if min(ys) < 1 or min(xs) < 1 or max(ys) >= height - 2 or max(xs) >= width - 2:
        # Poisson blending needs a border around the region: at the image edge, paste.
        result = image.copy()
        result[region] = warped[region]
        return result
    centre = (int(min(xs) + max(xs) + 1) // 2, int(min(ys) + max(ys) + 1) // 2)
    return cv2.seamlessClone(warped, image, region.astype(np.uint8) * 255, centre, cv2.NORMAL_CLONE)


def load_donors(data: Path, count: int, detector: Detector) -> list[Donor]:
    donors = []
    for path, attributes in held_out_labelled(data, count):
        image = rgb8(read_picture(path).frames[0])
        faces = [face for face in detector.detect(image) if face.landmarks is not None]
        if faces:
            donors.append(Donor(image, max(faces, key=lambda face: face.size), attributes))
    return donors


def measure(folder: Path, donors: list[Donor], draws: int, models: Models, rng: np.random.Generator) -> None:
    detector, embedder, estimator = models
    originals, replaced = [], [[] for _ in range(draws)]
    ratios, widths = [], []
    for path in sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS):
        image = rgb8(read_picture(path, max_megapixels=0).frames[0])
        faces = [face for face in detector.detect(image) if face.landmarks is not None]
        for face, attributes in zip(faces, estimator.estimate(image, faces)):
            enlarged = [enlarged_detail(donors[i], face.width) for i in rng.choice(len(donors), ENLARGED_PER_FACE)]
            ratios.append(np.median(enlarged) / max(detail(image, face_core(face)), 1e-6))
            widths.append(face.width)
            alike = [donor for donor in donors if donor.attributes == attributes] or donors
            target = np.asarray(face.landmarks, np.float32)
            closest = sorted(alike, key=lambda donor: pose_residual(donor.landmarks, target))[:DONOR_CHOICES]
            originals.append(embedder.embed(image, face.box))
            for draw in replaced:
                draw.append(embedder.embed(swapped(image, face, closest[rng.integers(len(closest))]), face.box))
    ratios = np.array(ratios)
    within = np.mean((ratios >= 1 / DETAIL_WITHIN) & (ratios <= DETAIL_WITHIN))
    distances = [frechet_distance(np.array(originals), np.array(draw)) for draw in replaced]
    print(f"{folder}: {len(ratios)} faces, median width {np.median(widths):.0f} px")
    print(f"  detail, real UTKFace faces enlarged / original: median {np.median(ratios):.3f}, within 2x {within:.1%}")
    listed = ", ".join(f"{d:.3f}" for d in distances)
    print(f"  FD-dlib of real UTKFace faces swapped in: {np.mean(distances):.3f} (draws {listed})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folders", type=Path, nargs="+")
    parser.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[2] / "shared/data/utkface")
    parser.add_argument("--donors", type=int, default=200, help="held-out UTKFace faces to draw from")
    parser.add_argument("--draws", type=int, default=3)
    arguments = parser.parse_args()
    models = Models(create_detector("retinaface", device="cpu"), FaceEmbedder(), UTKFaceEstimator())
    donors = load_donors(arguments.data, arguments.donors, models.detector)
    print(f"{len(donors)} held-out UTKFace faces, median box width {np.median([d.face.width for d in donors]):.0f} px")
    for folder in arguments.folders:
        measure(folder, donors, arguments.draws, models, np.random.default_rng(0))


if __name__ == "__main__":
    main()
