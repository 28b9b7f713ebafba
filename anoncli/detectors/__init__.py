"""Face detectors, picked by name: `create_detector("retinaface", threshold=0.5, device="cpu")`."""

from __future__ import annotations

from anoncli.detectors.base import Detector
from anoncli.detectors.centerface import CenterFaceDetector
from anoncli.detectors.retinaface import RetinaFaceDetector
from anoncli.registry import Registry

DETECTORS: Registry[Detector] = Registry("detector")
DETECTORS.register("retinaface")(RetinaFaceDetector)
DETECTORS.register("centerface")(CenterFaceDetector)

DEFAULT_DETECTOR = "retinaface"


def create_detector(name: str = DEFAULT_DETECTOR, **options: object) -> Detector:
    return DETECTORS.create(name, **options)


__all__ = ["DEFAULT_DETECTOR", "DETECTORS", "Detector", "create_detector"]
