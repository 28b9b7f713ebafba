"""Widening a trained generator: more channels per level, starting from exactly what it draws now.

Each level's channels are repeated a whole number of times, and every layer reading a repeated group divides
its weights among the copies, so each layer's sum is unchanged. PixelNorm normalizes over channels by their
mean square, which whole repeats leave unchanged too, so the widened network computes the same image (Net2Net's
function-preserving widening, fitted to PixelNorm).

Copies must grow apart in training, or the wider network is only the narrow one repeated. Split equally and
nudged apart by 1 % noise, they receive nearly equal gradients: 1,500 steps after widening the shipped
generator their filters were still only 1-5 % apart. Split in random shares, copies compute the same values
but pass different gradients back (each reader weighs them differently), so they grow apart from the first
step while the network still draws exactly what it drew.
"""

from __future__ import annotations

import torch

Segments = list[int | None]


def _layout(levels: int) -> dict[str, tuple[int | None, Segments]]:
    """The generator's convolutions by name: the channel level of their output and of each segment of their
    input, in order. Levels count from the full-resolution one (0) to the bottleneck; `None` is a size that does
    not widen (RGB, the conditioning)."""
    bottom = levels - 1
    layout: dict[str, tuple[int | None, Segments]] = {"stem.0": (0, [None])}
    for index in range(bottom):
        layout[f"down.{index}.0.0"] = (index + 1, [index])
        layout[f"down.{index}.1.0"] = (index + 1, [index + 1])
    layout["middle.0"] = (bottom, [bottom, bottom])
    for index in range(bottom):
        deep, skip = bottom - index, bottom - index - 1
        layout[f"up.{index}.0.0"] = (skip, [deep, skip])
        layout[f"up.{index}.1.0"] = (skip, [skip])
    layout["to_rgb"] = (None, [0])
    return layout


def repeats(old: tuple[int, ...], new: tuple[int, ...]) -> list[int]:
    """How many times each level's channels are repeated; a ValueError unless each new width is a whole
    multiple of the old one."""
    if len(old) != len(new) or any(n % o or n < o for o, n in zip(old, new)):
        raise ValueError(f"channels {tuple(new)} are not whole multiples of {tuple(old)}, level by level")
    return [n // o for o, n in zip(old, new)]


def _split(weight: torch.Tensor, factor: int, generator: torch.Generator | None) -> torch.Tensor:
    """`weight` (out, in, kh, kw) repeated `factor` times along its inputs, each copy taking a share of it:
    equal shares without `generator`, random ones with it."""
    if generator is None:
        return weight.repeat(1, factor, 1, 1) / factor
    shares = torch.rand((factor, *weight.shape), generator=generator)
    shares /= shares.sum(dim=0)
    return torch.cat(list(weight * shares), dim=1)


def widen_generator_state(
    state: dict[str, torch.Tensor],
    old: tuple[int, ...],
    new: tuple[int, ...],
    generator: torch.Generator | None = None,
) -> dict[str, torch.Tensor]:
    """`state` of a `Generator` with channels `old`, widened to channels `new`.

    Each weight reading a repeated channel is split among its copies: equally, or with `generator` in random
    shares (drawn per weight, summing to 1) so the copies can grow apart in training.
    """
    factors = repeats(old, new)
    widths = list(old)
    widened = dict(state)
    for layer, (output, inputs) in _layout(len(old)).items():
        weight, bias = state[f"{layer}.weight"].float(), state[f"{layer}.bias"].float()
        if output is not None:
            weight, bias = weight.repeat(factors[output], 1, 1, 1), bias.repeat(factors[output])
        pieces, start = [], 0
        fixed = weight.shape[1] - sum(widths[level] for level in inputs if level is not None)
        for level in inputs:
            size = fixed if level is None else widths[level]
            piece = weight[:, start : start + size]
            pieces.append(piece if level is None else _split(piece, factors[level], generator))
            start += size
        weight = torch.cat(pieces, dim=1)
        widened[f"{layer}.weight"], widened[f"{layer}.bias"] = weight, bias
    # The latent's output is the bottleneck's channels, each a block of bottom × bottom values.
    bottom_level = len(old) - 1
    latent_weight, latent_bias = state["latent.weight"].float(), state["latent.bias"].float()
    blocks = widths[bottom_level]
    widened["latent.weight"] = (
        latent_weight.view(blocks, -1, latent_weight.shape[1]).repeat(factors[bottom_level], 1, 1).flatten(0, 1)
    )
    widened["latent.bias"] = latent_bias.view(blocks, -1).repeat(factors[bottom_level], 1).flatten()
    return widened
