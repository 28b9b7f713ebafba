"""What `--preserve` keeps: a face's gender and age group, estimated on the original before it is erased.

Attributes travel as plain labels (never pixels) from the estimator to the method. A generative method takes
them as a one-hot conditioning vector; an attribute left out (not asked for, or not estimated) is all zeros.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from anoncli.faces import Face

GENDERS = ("male", "female")
AGE_GROUPS = ("0-19", "20-29", "30-39", "40+")
ATTRIBUTE_NAMES = ("gender", "age")
# One-hot gender, then one-hot age group.
ATTRIBUTE_SIZE = len(GENDERS) + len(AGE_GROUPS)


def age_group_of(age: float) -> str:
    for bound, group in zip((20, 30, 40), AGE_GROUPS):
        if age < bound:
            return group
    return AGE_GROUPS[-1]


@dataclass(frozen=True)
class Attributes:
    gender: str | None = None  # one of GENDERS
    age_group: str | None = None  # one of AGE_GROUPS

    def only(self, names: Iterable[str]) -> Attributes:
        """These attributes with every one not in `names` forgotten."""
        names = set(names)
        return Attributes(self.gender if "gender" in names else None, self.age_group if "age" in names else None)

    def vector(self) -> np.ndarray:
        """(ATTRIBUTE_SIZE,) float32 one-hot conditioning; zeros for what is unknown."""
        vector = np.zeros(ATTRIBUTE_SIZE, np.float32)
        if self.gender is not None:
            vector[GENDERS.index(self.gender)] = 1
        if self.age_group is not None:
            vector[len(GENDERS) + AGE_GROUPS.index(self.age_group)] = 1
        return vector


UNKNOWN = Attributes()


def vote(estimates: Sequence[Attributes]) -> Attributes:
    """The most common gender and age group among several estimates of one person (ties: the earliest)."""

    def most_common(values: list[str]) -> str | None:
        return Counter(values).most_common(1)[0][0] if values else None

    return Attributes(
        most_common([e.gender for e in estimates if e.gender is not None]),
        most_common([e.age_group for e in estimates if e.age_group is not None]),
    )


class AttributeEstimator(ABC):
    """Estimates gender and age group of faces in an image."""

    name: str = "estimator"

    @abstractmethod
    def estimate(self, image: np.ndarray, faces: Sequence[Face]) -> list[Attributes]:
        """One estimate per face of an RGB uint8 image."""


# (RGB uint8 image, its faces) → the attributes to keep, one per face.
Describer = Callable[[np.ndarray, Sequence[Face]], list[Attributes]]


def preserving(estimator: AttributeEstimator, names: Iterable[str]) -> Describer:
    """A describer that estimates faces' attributes and keeps only those named (e.g. {"age", "gender"})."""
    kept = tuple(names)

    def describe(image: np.ndarray, faces: Sequence[Face]) -> list[Attributes]:
        return [estimate.only(kept) for estimate in estimator.estimate(image, faces)]

    return describe


class TrackVotes:
    """Attributes per video track: estimates gather as frames are tracked; the first time a track's
    attributes are asked for, the vote so far is locked, so a person's fake face never changes gender or age
    group between frames."""

    def __init__(self) -> None:
        self.estimates: dict[int, list[Attributes]] = {}
        self.locked: dict[int, Attributes] = {}

    def add(self, track_id: int, estimate: Attributes) -> None:
        if track_id not in self.locked:
            self.estimates.setdefault(track_id, []).append(estimate)

    def decided(self, track_id: int) -> Attributes:
        if track_id not in self.locked:
            self.locked[track_id] = vote(self.estimates.pop(track_id, []))
        return self.locked[track_id]
