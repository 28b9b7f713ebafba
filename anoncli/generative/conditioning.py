"""What a generator is shown of a face: named groups of input channels, declared once per kind of method.

The U-Net, its discriminator and the training loop are the same for every generative method; a method differs in
the channels it feeds them (`Conditioning`) and in how a face is framed for them (`framing`, recorded in the
weights' manifest and checked on loading). A new group that a trained network lacks starts from the weights of
the group named in its `like` (averaged over that group's channels), so a method can fine-tune from another
method's weights instead of training from nothing.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from anoncli.generative.geometry import FRAMING
from anoncli.generative.mesh_input import MESH_FRAMING


@dataclass(frozen=True)
class ChannelGroup:
    name: str
    size: int
    like: str | None = None  # a group of another conditioning whose trained weights this one starts from


@dataclass(frozen=True)
class Conditioning:
    name: str
    groups: tuple[ChannelGroup, ...]
    framing: dict
    # Whether the discriminator judges an image together with its conditioning. Not when the conditioning is
    # the real face itself (a translator's input): a pair whose image equals its conditioning would be real.
    judged: bool = True

    @property
    def judged_groups(self) -> Conditioning:
        """The part of the conditioning the discriminator sees."""
        return self if self.judged else Conditioning(self.name, (), self.framing)

    @property
    def channels(self) -> int:
        return sum(group.size for group in self.groups)

    def spans(self) -> dict[str, tuple[int, int]]:
        """Each group's first channel and its end, in input order."""
        spans, start = {}, 0
        for group in self.groups:
            spans[group.name] = (start, start + group.size)
            start += group.size
        return spans


# deepprivacy: the photo with the face erased (masked RGB, known map, erased map) and 5 landmark heat maps.
ERASED_CONTEXT = Conditioning(
    "erased-context",
    (ChannelGroup("pixels", 3), ChannelGroup("known", 1), ChannelGroup("erased", 1), ChannelGroup("keypoints", 5)),
    FRAMING,
)
# ganonymization: FaceMesh's points drawn white on black in the mesh's own frame, nothing of the photo.
MESH_POINTS_ONLY = Conditioning("mesh-points", (ChannelGroup("mesh", 1, like="keypoints"),), MESH_FRAMING)

# ciagan: the photo with the face inside its outline erased, and the points of the nose, mouth and jaw line (not
# the eyes), in the mesh's frame.
ERASED_LANDMARKS = Conditioning(
    "erased-landmarks",
    (
        ChannelGroup("pixels", 3),
        ChannelGroup("known", 1),
        ChannelGroup("erased", 1),
        ChannelGroup("landmarks", 1, like="keypoints"),
    ),
    MESH_FRAMING,
)
# stargan: the face itself, in the mesh's frame; the attributes asked for are the translation's target.
FACE_PIXELS = Conditioning("face-pixels", (ChannelGroup("pixels", 3),), MESH_FRAMING, judged=False)

CONDITIONINGS = {
    conditioning.name: conditioning
    for conditioning in (ERASED_CONTEXT, MESH_POINTS_ONLY, ERASED_LANDMARKS, FACE_PIXELS)
}


def conditioning_named(name: str) -> Conditioning:
    if name not in CONDITIONINGS:
        raise ValueError(f"unknown conditioning {name!r}; known: {', '.join(CONDITIONINGS)}")
    return CONDITIONINGS[name]


def regrouped(
    weight: torch.Tensor, source: Conditioning, target: Conditioning, before: int, after: int
) -> torch.Tensor:
    """An input layer's `weight` (out, in, ...) trained on `source`'s channels, rearranged for `target`'s.

    The layer's inputs are `before` channels, then the conditioning, then `after` channels (kept as they are).
    A group both have keeps its weights; a group with a `like` starts from the mean of that group's weights; any
    other starts at zero, so the network begins by ignoring it.
    """
    source_spans, pieces = source.spans(), [weight[:, :before]]
    for group in target.groups:
        name = group.name if group.name in source_spans else group.like
        shape = (weight.shape[0], group.size, *weight.shape[2:])
        if name in source_spans:
            start, end = source_spans[name]
            trained = weight[:, before + start : before + end]
            pieces.append(trained if name == group.name else trained.mean(dim=1, keepdim=True).expand(shape))
        else:
            pieces.append(weight.new_zeros(shape))
    pieces.append(weight[:, weight.shape[1] - after :])
    return torch.cat(pieces, dim=1).contiguous()
