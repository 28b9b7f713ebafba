"""How far apart the copies of a widened generator's channels compute, layer by layer.

    python scripts/widened_copies.py runs/wide/deepprivacy64.pt ../shared/data/utkface [--state CHECKPOINT]

`anoncli train deepprivacy --widen-from` repeats each channel; training has to make the copies different
channels, or the wider generator is only the narrow one repeated. For held-out faces erased as in training,
this prints per convolution the distance between each copy's activations and the first copy's, relative to
the first copy's (0: still copies). It reads the generator that trains, from the `.train.pt` beside the
weights or from a full checkpoint (`--state`): the weight average lags behind it.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from anoncli.generative.geometry import erase_ellipse, prepare_input
from anoncli.generative.networks import Generator
from anoncli.generative.sampling import generate, to_tensors
from anoncli.generative.weights import read_manifest
from anoncli.training.dataset import held_out_files
from anoncli.training.widening import repeats

FACES = 16
FACE_BOX = (0.25, 0.225, 0.75, 0.825)  # of a UTKFace chip's side, as the training tests erase it


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("weights", type=Path, help="a widened run's weights (its manifest names what it widened)")
    parser.add_argument("data", type=Path, help="the training data (its held-out faces are used)")
    parser.add_argument("--state", type=Path, help="a full checkpoint (default: the .train.pt beside the weights)")
    arguments = parser.parse_args()
    manifest = read_manifest(arguments.weights)
    channels = tuple(manifest["architecture"]["channels"])
    factors = repeats(tuple(manifest["training"]["widens"]["channels"]), channels)
    saved = torch.load(arguments.state or arguments.weights.with_suffix(".train.pt"), weights_only=True)
    generator = Generator(manifest["architecture"]["resolution"], channels).eval()
    generator.load_state_dict({name: tensor.float() for name, tensor in saved["generator"].items()})

    chips = [np.asarray(Image.open(path).convert("RGB")) for path in held_out_files(arguments.data)[:FACES]]
    inputs = []
    for chip in chips:
        height, width = chip.shape[:2]
        box = (FACE_BOX[0] * width, FACE_BOX[1] * height, FACE_BOX[2] * width, FACE_BOX[3] * height)
        erase = erase_ellipse((height, width), box, 1.1)
        inputs.append(prepare_input(chip, np.ones((height, width), bool), erase, None, generator.resolution))
    condition, erased, _ = to_tensors(inputs, "cpu")
    activations: dict[str, torch.Tensor] = {}
    for name, module in generator.named_modules():
        if isinstance(module, torch.nn.Conv2d) and module.out_channels in channels:
            module.register_forward_hook(lambda _m, _i, output, name=name: activations.__setitem__(name, output))
    with torch.no_grad():
        generate(generator, condition, erased, list(range(len(chips))))

    print(f"step {saved['state']['step']}, {len(chips)} held-out faces: copies' activations apart (0 = copies)")
    for name, output in activations.items():
        factor = factors[channels.index(output.shape[1])]
        copies = output.unflatten(1, (factor, output.shape[1] // factor))
        first = copies[:, :1]
        apart = ((copies[:, 1:] - first).norm() / (first.norm() * (factor - 1) ** 0.5)).item()
        print(f"  {name:<12} {output.shape[1]:4d} channels  {apart:.3f}")


if __name__ == "__main__":
    main()
