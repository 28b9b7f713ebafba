"""Anonymization methods, picked by name: `create_method("blur", device="cpu")`."""

from __future__ import annotations

from anoncli.anonymizers.base import Anonymizer, FaceCrop, Replacement, anonymize_fail_closed
from anoncli.anonymizers.baselines import Blur, Mask, Pixelate
from anoncli.registry import Registry

METHODS: Registry[Anonymizer] = Registry("method")
METHODS.register("blur")(lambda device="cpu": Blur())
METHODS.register("pixelate")(lambda device="cpu": Pixelate())
METHODS.register("mask")(lambda device="cpu": Mask())


@METHODS.register("deepprivacy")
def _deepprivacy(device: str = "cpu") -> Anonymizer:
    # Imported here: torch costs a second to load, and the baselines do not need it.
    from anoncli.anonymizers.deepprivacy import DeepPrivacy

    return DeepPrivacy(device=device)


DEFAULT_METHOD = "blur"


def create_method(name: str = DEFAULT_METHOD, device: str = "cpu") -> Anonymizer:
    return METHODS.create(name, device=device)


__all__ = [
    "DEFAULT_METHOD",
    "METHODS",
    "Anonymizer",
    "FaceCrop",
    "Replacement",
    "anonymize_fail_closed",
    "create_method",
]
