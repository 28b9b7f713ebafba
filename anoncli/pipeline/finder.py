"""Where the faces of a frame come from, for images and video alike: a detector, or faces the user supplies."""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path

import numpy as np

from anoncli.detectors import Detector
from anoncli.faces import Box, Face
from anoncli.io.records import UserDetections


class FaceFinder(ABC):
    @abstractmethod
    def find(self, image: np.ndarray, source: Path, frame: int, expected: list[Box] | None = None) -> list[Face]:
        """The faces in frame `frame` of `source`, given as RGB uint8 `image`. `expected`: where a video's
        tracks expect faces (None asks for a full search)."""


class DetectorFinder(FaceFinder):
    def __init__(self, detector: Detector) -> None:
        self.detector = detector

    def find(self, image: np.ndarray, source: Path, frame: int, expected: list[Box] | None = None) -> list[Face]:
        if expected is None:
            return self.detector.detect(image)
        return self.detector.detect_near(image, expected)


class SuppliedFaces(FaceFinder):
    """The faces of a `--detections` file; an image the file does not describe fails rather than pass."""

    def __init__(self, detections: UserDetections) -> None:
        self.detections = detections

    def find(self, image: np.ndarray, source: Path, frame: int, expected: list[Box] | None = None) -> list[Face]:
        return self.detections.faces(source, frame)
