"""Turning prepared inputs into generator tensors and running the generator with per-face seeds."""

from __future__ import annotations

import numpy as np
import torch

from anoncli.generative.geometry import GeneratorInput
from anoncli.generative.networks import LATENT_SIZE, Generator


def to_tensors(inputs: list[GeneratorInput], device: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Condition (N, 10, R, R), erased map (N, 1, R, R) and known map (N, 1, R, R) as torch tensors."""
    pixels = torch.from_numpy(np.stack([item.pixels for item in inputs])).permute(0, 3, 1, 2).float() / 127.5 - 1
    known = torch.from_numpy(np.stack([item.known for item in inputs]))[:, None]
    erased = torch.from_numpy(np.stack([item.erased for item in inputs]))[:, None]
    keypoints = torch.from_numpy(np.stack([item.keypoints for item in inputs]))
    condition = torch.cat([pixels * known, known, erased, keypoints], dim=1)
    return condition.to(device), erased.to(device), known.to(device)


IDENTITY_CODE_LENGTH = LATENT_SIZE**0.5  # the expected length of the latent noise vector


def one_hot_identities(identities: list[int], count: int, device: str) -> torch.Tensor:
    """(N, count) one-hot codes of fake identities, as long as the latent noise vector they join: a code of
    length 1 beside LATENT_SIZE noise numbers moves the face too little for an identity to be learnt."""
    one_hot = torch.nn.functional.one_hot(torch.tensor(identities, dtype=torch.long), count).float()
    return (one_hot * IDENTITY_CODE_LENGTH).to(device)


def generate(
    generator: Generator,
    condition: torch.Tensor,
    erased: torch.Tensor,
    seeds: list[int],
    attributes: torch.Tensor | None = None,
    identity: torch.Tensor | None = None,
) -> torch.Tensor:
    """Run the generator with per-face seeds (the same seed gives the same face), attribute vectors
    (N, ATTRIBUTE_SIZE; None: no attribute asked for) and, for a generator of fake identities, their one-hot
    codes (N, identities)."""
    size = condition.shape[-1]
    noises, latents = [], []
    for seed in seeds:
        rng = torch.Generator().manual_seed(int(seed))
        noises.append(torch.randn(1, size, size, generator=rng))
        latents.append(torch.randn(LATENT_SIZE, generator=rng))
    dtype = next(generator.parameters()).dtype
    noise = torch.stack(noises).to(condition.device, dtype) * erased.to(dtype)
    latent = torch.stack(latents).to(condition.device, dtype)
    if attributes is None:
        attributes = torch.zeros(len(seeds), generator.attribute_size)
    if generator.identities and identity is None:
        raise ValueError("this generator draws fake identities: say which, one per face")
    if identity is not None:
        identity = identity.to(condition.device, dtype)
    return generator(condition.to(dtype), noise, latent, attributes.to(condition.device, dtype), identity)
