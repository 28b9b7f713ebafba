"""Anonymization methods, picked by name: `create_method("blur", device="cpu")`."""

from __future__ import annotations

from pathlib import Path

from anoncli.anonymizers.base import FaceCrop, Method, Replacement, StandIn, anonymize_fail_closed
from anoncli.anonymizers.baselines import Blur, Mask, Pixelate
from anoncli.registry import Registry

METHODS: Registry[Method] = Registry("method")
# A trained method takes `weights` (None: the shipped ones); the baselines have none to take.
UNTRAINED_METHODS = ("blur", "pixelate", "mask")
METHODS.register("blur")(lambda device="cpu": Blur())
METHODS.register("pixelate")(lambda device="cpu": Pixelate())
METHODS.register("mask")(lambda device="cpu": Mask())


@METHODS.register("deepprivacy")
def _deepprivacy(device: str = "cpu", weights: Path | None = None) -> Method:
    # Imported here: torch costs a second to load, and the baselines do not need it.
    from anoncli.anonymizers.deepprivacy import DeepPrivacy

    if weights is None:
        return DeepPrivacy(device=device)
    # The shipped 128² refiner grows the shipped 64² weights, not these.
    return DeepPrivacy(device=device, weights=weights, refined_weights=None)


@METHODS.register("ksame")
def _ksame(device: str = "cpu", weights: Path | None = None) -> Method:
    from anoncli.anonymizers.ksame import KSame

    return KSame(device=device) if weights is None else KSame(device=device, bank=weights)


@METHODS.register("ganonymization")
def _ganonymization(device: str = "cpu", weights: Path | None = None) -> Method:
    from anoncli.anonymizers.ganonymization import GANonymization

    return GANonymization(device=device, weights=weights)


@METHODS.register("shape")
def _shape(device: str = "cpu", weights: Path | None = None) -> Method:
    from anoncli.anonymizers.shape import Shape

    return Shape(device=device, weights=weights)


@METHODS.register("ciagan")
def _ciagan(device: str = "cpu", weights: Path | None = None) -> Method:
    from anoncli.anonymizers.ciagan import CIAGAN

    return CIAGAN(device=device, weights=weights)


@METHODS.register("stargan")
def _stargan(device: str = "cpu", weights: Path | None = None) -> Method:
    from anoncli.anonymizers.stargan import StarGAN

    return StarGAN(device=device, weights=weights)


DEFAULT_METHOD = "blur"


def create_method(
    name: str = DEFAULT_METHOD,
    device: str = "cpu",
    preserve: tuple[str, ...] = (),
    skin_tone: tuple[int, int, int] | None = None,
    keep: tuple[str, ...] = (),
    flip: tuple[str, ...] = (),
    identity: int | None = None,
    weights: Path | None = None,
) -> Method:
    """The method `name`, with its shipped weights or `weights` (what `anoncli train` wrote); ValueError when it
    takes no weights or cannot keep the attributes in `preserve`, draw `skin_tone`, keep the face parts in
    `keep`, change the attributes in `flip` or draw the fake `identity`."""
    if weights is None:
        method = METHODS.create(name, device=device)
    elif name in UNTRAINED_METHODS:
        raise ValueError(f"method {name} is not trained: it takes no --weights")
    else:
        method = METHODS.create(name, device=device, weights=weights)
    unsupported = [attribute for attribute in preserve if attribute not in method.supported_attributes]
    if unsupported:
        kept = ", ".join(method.supported_attributes) or "no attributes"
        raise ValueError(f"method {name} cannot preserve {', '.join(unsupported)} (it keeps {kept})")
    if skin_tone is not None:
        if not method.supports_skin_tone:
            raise ValueError(f"method {name} cannot draw a chosen skin tone; use deepprivacy")
        method.skin_tone = skin_tone
    if keep:
        unsupported = [part for part in keep if part not in method.supported_parts]
        if unsupported:
            kept = f"it keeps {', '.join(method.supported_parts)}" if method.supported_parts else "use shape"
            raise ValueError(f"method {name} cannot keep the face's {', '.join(unsupported)} ({kept})")
        method.keep = tuple(keep)
    if flip:
        unsupported = [attribute for attribute in flip if attribute not in method.supported_flips]
        if unsupported:
            raise ValueError(f"method {name} cannot flip {', '.join(unsupported)} (use stargan: gender, age)")
        method.flips = tuple(flip)
    if identity is not None:
        if not method.identities:
            raise ValueError(f"method {name} draws no chosen identity; use ciagan")
        if not 0 <= identity < method.identities:
            raise ValueError(f"identity {identity}: {name} draws identities 0 to {method.identities - 1}")
        method.identity = identity
    return method


__all__ = [
    "DEFAULT_METHOD",
    "METHODS",
    "FaceCrop",
    "Method",
    "Replacement",
    "StandIn",
    "anonymize_fail_closed",
    "create_method",
]
