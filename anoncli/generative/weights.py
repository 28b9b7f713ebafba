"""Shipped weights: a state dict file plus a JSON manifest that names, checks and describes it."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch

from anoncli.generative.conditioning import ERASED_CONTEXT, conditioning_named
from anoncli.generative.networks import Generator, Refiner

# The repository's weights/ (anoncli/weights links to it), packaged inside anoncli when a wheel is built, so
# an editable and a regular install find the same files.
WEIGHTS_DIR = Path(__file__).resolve().parent.parent / "weights"


class WeightsError(ValueError):
    """Missing or damaged weights: the message says which file and what to do."""


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def manifest_path(weights: Path) -> Path:
    return weights.with_suffix(".json")


def read_manifest(weights: Path) -> dict:
    """The manifest beside `weights` (the weights file itself is not read)."""
    manifest_file = manifest_path(weights)
    if not weights.exists() or not manifest_file.exists():
        raise WeightsError(f"weights {weights} or their manifest {manifest_file.name} are missing")
    return json.loads(manifest_file.read_text())


def load_checked(weights: Path) -> tuple[dict[str, torch.Tensor], dict]:
    """A state dict (as float32) and its manifest, after checking the file against the manifest's sha256."""
    manifest = read_manifest(weights)
    actual = sha256_of(weights)
    if actual != manifest["sha256"]:
        raise WeightsError(
            f"{weights} does not match its manifest (sha256 {actual[:12]}…, expected {manifest['sha256'][:12]}…)"
        )
    state = torch.load(weights, map_location="cpu", weights_only=True)
    return {name: tensor.float() for name, tensor in state.items()}, manifest


def save_checked(state: dict[str, torch.Tensor], weights: Path, manifest: dict) -> None:
    """Write a state dict in fp16 and its manifest (file and sha256 filled in), each atomically."""
    weights.parent.mkdir(parents=True, exist_ok=True)
    temporary = weights.with_suffix(".pt.tmp")
    torch.save({name: tensor.detach().half().cpu() for name, tensor in state.items()}, temporary)
    temporary.replace(weights)
    manifest = dict(manifest, file=weights.name, sha256=sha256_of(weights))
    manifest_temporary = manifest_path(weights).with_suffix(".json.tmp")
    manifest_temporary.write_text(json.dumps(manifest, indent=2) + "\n")
    manifest_temporary.replace(manifest_path(weights))


def build_generator(architecture: dict) -> Generator | Refiner:
    """An untrained network of the architecture a manifest describes (conditioned on the erased context unless it
    names another conditioning)."""
    conditioning = conditioning_named(architecture.get("conditioning", ERASED_CONTEXT.name))
    if "base_resolution" in architecture:
        base = Generator(architecture["base_resolution"], tuple(architecture["channels"]), conditioning)
        return Refiner(base, architecture["head_width"], architecture.get("detail_sigma"))
    resolution, channels = architecture["resolution"], tuple(architecture["channels"])
    return Generator(resolution, channels, conditioning, architecture.get("identities", 0))


def describe_generator(generator: Generator | Refiner) -> dict:
    architecture = {
        "name": "unet-inpainter",
        "resolution": generator.resolution,
        "channels": list(generator.channels),
        "attributes": generator.attribute_size,
        "conditioning": generator.conditioning.name,
    }
    if generator.identities:
        architecture["identities"] = generator.identities
    if isinstance(generator, Refiner):
        architecture.update(name="unet-inpainter-refined", base_resolution=generator.base.resolution)
        architecture["head_width"] = generator.width
        if generator.detail_sigma is not None:
            architecture["detail_sigma"] = generator.detail_sigma
    return architecture


def load_generator(weights: Path, device: str) -> tuple[Generator | Refiner, dict]:
    """The EMA generator from `weights`, in eval mode on `device` (fp16 on CUDA).

    Weights trained before attribute conditioning load too; they ignore the attributes asked for. Weights
    whose manifest records a framing of the face other than the code's for their conditioning are refused.
    """
    state, manifest = load_checked(weights)
    architecture = manifest["architecture"]
    generator = build_generator(architecture)
    # Weights from before framing was recorded were all trained with a wider window than the code's.
    framing, expected = manifest.get("geometry", "not recorded"), generator.conditioning.framing
    if framing != expected:
        raise WeightsError(
            f"{weights} were trained with faces framed as {framing}, this version frames them as {expected}; "
            "use the weights shipped with this version"
        )
    if "attributes" in architecture:
        generator.load_state_dict(state)
    else:
        load_grown(generator, state)
    generator.eval().requires_grad_(False)
    if device == "cuda":
        generator = generator.half()
    return generator.to(device), manifest


def load_grown(module: torch.nn.Module, state: dict[str, torch.Tensor]) -> list[str]:
    """Load `state` into `module`, which may have grown since it was saved: a layer that gained inputs keeps
    its old weights and starts the new inputs at zero; a new layer keeps its initialisation. Returns what grew."""
    grown = []
    current = module.state_dict()
    for name, tensor in current.items():
        saved = state.get(name)
        if saved is None:
            grown.append(f"{name} (new)")
            continue
        if saved.shape != tensor.shape:
            widened = torch.zeros_like(tensor)
            widened[tuple(slice(0, size) for size in saved.shape)] = saved
            saved = widened
            grown.append(f"{name} {tuple(state[name].shape)}→{tuple(tensor.shape)}")
        current[name] = saved.float()
    module.load_state_dict(current)
    return grown


def save_generator(generator: Generator | Refiner, weights: Path, manifest: dict) -> None:
    manifest = dict(manifest, architecture=describe_generator(generator))
    save_checked(generator.state_dict(), weights, manifest)
