"""Re-identification with dlib's 128-D face embedding (face-recognition-models, CC0), the offline standard.

Two faces closer than 0.6 are the same person by dlib's own threshold.
"""

from __future__ import annotations

from importlib.util import find_spec
from pathlib import Path

import numpy as np

from anoncli.faces import Box

SAME_PERSON_DISTANCE = 0.6


def _model_folder() -> Path:
    # face_recognition_models locates its files through pkg_resources, which recent setuptools dropped.
    spec = find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("face-recognition-models is not installed (pip install 'anoncli[eval]')")
    return Path(next(iter(spec.submodule_search_locations))) / "models"


class FaceEmbedder:
    """dlib ResNet embeddings of faces given by boxes in RGB uint8 images."""

    def __init__(self) -> None:
        import dlib

        folder = _model_folder()
        self._dlib = dlib
        self._landmarks = dlib.shape_predictor(str(folder / "shape_predictor_5_face_landmarks.dat"))
        self._network = dlib.face_recognition_model_v1(str(folder / "dlib_face_recognition_resnet_model_v1.dat"))

    def embed(self, image: np.ndarray, box: Box) -> np.ndarray:
        rectangle = self._dlib.rectangle(*(round(v) for v in box))
        shape = self._landmarks(np.ascontiguousarray(image), rectangle)
        return np.asarray(self._network.compute_face_descriptor(np.ascontiguousarray(image), shape))


def distances(queries: np.ndarray, gallery: np.ndarray) -> np.ndarray:
    """Euclidean distances (Q, G) between embeddings."""
    return np.linalg.norm(queries[:, None, :] - gallery[None, :, :], axis=2)
