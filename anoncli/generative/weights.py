"""Shipped generator weights: a state dict file plus a JSON manifest that names, checks and describes it."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch

from anoncli.generative.networks import Generator

WEIGHTS_DIR = Path(__file__).resolve().parent.parent.parent / "weights"


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


def load_generator(weights: Path, device: str) -> tuple[Generator, dict]:
    """The EMA generator from `weights`, checked against its manifest's sha256, in eval mode on `device`."""
    manifest_file = manifest_path(weights)
    if not weights.exists() or not manifest_file.exists():
        raise WeightsError(f"generator weights {weights} or its manifest {manifest_file.name} are missing")
    manifest = json.loads(manifest_file.read_text())
    actual = sha256_of(weights)
    if actual != manifest["sha256"]:
        raise WeightsError(
            f"{weights} does not match its manifest (sha256 {actual[:12]}…, expected {manifest['sha256'][:12]}…)"
        )
    architecture = manifest["architecture"]
    generator = Generator(architecture["resolution"], tuple(architecture["channels"]))
    state = torch.load(weights, map_location="cpu", weights_only=True)
    generator.load_state_dict({name: tensor.float() for name, tensor in state.items()})
    generator.eval().requires_grad_(False)
    if device == "cuda":
        generator = generator.half()
    return generator.to(device), manifest


def save_generator(generator: Generator, weights: Path, manifest: dict) -> None:
    """Write the generator in fp16 and its manifest (sha256 filled in), each atomically."""
    weights.parent.mkdir(parents=True, exist_ok=True)
    temporary = weights.with_suffix(".pt.tmp")
    torch.save({name: tensor.detach().half().cpu() for name, tensor in generator.state_dict().items()}, temporary)
    temporary.replace(weights)
    manifest = dict(manifest, file=weights.name, sha256=sha256_of(weights))
    manifest["architecture"] = {
        "name": "unet-inpainter",
        "resolution": generator.resolution,
        "channels": list(generator.channels),
    }
    manifest_temporary = manifest_path(weights).with_suffix(".json.tmp")
    manifest_temporary.write_text(json.dumps(manifest, indent=2) + "\n")
    manifest_temporary.replace(manifest_path(weights))
