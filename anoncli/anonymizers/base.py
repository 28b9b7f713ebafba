"""The one interface every anonymization method implements, and the fail-closed wrapper around it.

A method receives a batch of face crops (with their masks, landmarks and per-face seeds) and returns one
replacement crop per face. The engine pastes replacements back through the mask. Baselines (blur, pixelate,
mask) and generative methods implement the same `anonymize`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np

from anoncli.attributes.base import UNKNOWN, Attributes
from anoncli.faces import Box, face_size

# Inside this mask level the face must be covered; the fail-closed checks look only there.
CORE_MASK_LEVEL = 0.99
SOLID_FILL = (0, 0, 0)


@dataclass
class FaceCrop:
    """One face handed to a method: the crop around it, in crop coordinates."""

    pixels: np.ndarray  # (h, w, 3) uint8 RGB, context included
    mask: np.ndarray  # (h, w) float32; 1 where the face must be replaced
    box: Box  # the face box, x1, y1, x2, y2
    landmarks: np.ndarray | None  # (5, 2) or None
    seed: int  # same seed → same result; a video track keeps one seed per person
    attributes: Attributes = UNKNOWN  # what the new face should keep (`--preserve`), estimated on the original

    @property
    def face_size(self) -> float:
        return face_size(self.box)


class Method(ABC):
    """Turns face crops into replacement crops of the same shape."""

    name: str = "anonymizer"
    # Crop side as a multiple of the face size: how much surroundings the method wants to see.
    context: float = 1.0
    # Mask ellipse size relative to the face box when the user does not choose one.
    default_mask_scale: float = 1.3
    # Generative methods draw a new face per seed; baselines give the same output whatever the seed.
    generative: bool = False
    # Which of ATTRIBUTE_NAMES (`--preserve`) the method can keep; it reads them from FaceCrop.attributes.
    supported_attributes: tuple[str, ...] = ()
    # Whether the method can draw skin in a colour the user asks for (`--skin-tone`), and that colour
    # (RGB; None keeps the skin tone of the face's surroundings).
    supports_skin_tone: bool = False
    skin_tone: tuple[int, int, int] | None = None
    # Which parts of the face (`--keep`: eyes, eyebrows, nose, mouth, outline) the method can keep in the
    # shape of the original's, and those it is asked to.
    supported_parts: tuple[str, ...] = ()
    keep: tuple[str, ...] = ()
    # Which attributes the method can change in the face itself (`--flip`), and those it is asked to; the
    # attributes it must be told of each face (estimated on the original, as for `--preserve`).
    supported_flips: tuple[str, ...] = ()
    flips: tuple[str, ...] = ()
    reads_attributes: tuple[str, ...] = ()
    # How many fake identities the method draws (`--identity`), and the one asked for (None: one per face,
    # chosen by its seed, so a video track keeps its own).
    identities: int = 0
    identity: int | None = None
    # Whether the method's drawing reads the face's own pixels (an attribute editor, not an eraser).
    sees_face: bool = False

    @contextmanager
    def following_tracks(self, frame_rate: float) -> Iterator[None]:
        """Within it, a seed names one track of a video, whose faces come in frame order, `frame_rate` a second:
        a method may follow a face over time (the image pipeline never enters it)."""
        yield

    @abstractmethod
    def anonymize(self, faces: Sequence[FaceCrop]) -> list[np.ndarray | StandIn]:
        """One (h, w, 3) uint8 replacement per face, same shape as its crop (a `StandIn` where the method drew
        the face by its own fallback)."""


@dataclass
class StandIn:
    """A face a method could not draw its own way and drew by its fallback instead, and why."""

    pixels: np.ndarray
    reason: str


def solid_fill(face: FaceCrop) -> np.ndarray:
    return np.broadcast_to(np.array(SOLID_FILL, np.uint8), face.pixels.shape).copy()


@dataclass
class Replacement:
    pixels: np.ndarray
    fallback_reason: str | None = None  # set when the method failed and a solid mask was used instead
    stand_in_reason: str | None = None  # set when the method drew the face by its own fallback


def anonymize_fail_closed(method: Method, faces: Sequence[FaceCrop]) -> list[Replacement]:
    """Run `method`; any face it errs on, returns malformed or leaves unchanged gets a solid fill instead.

    When a batch fails, its faces are retried one by one, so one bad face does not cost the others.
    """
    if not faces:
        return []
    try:
        outputs = method.anonymize(faces)
        if len(outputs) != len(faces):
            raise RuntimeError(f"returned {len(outputs)} crops for {len(faces)} faces")
    except Exception as error:  # whatever a method's failure, the faces must still be covered
        if len(faces) > 1:
            return [replacement for face in faces for replacement in anonymize_fail_closed(method, [face])]
        reason = f"{method.name} failed: {type(error).__name__}: {error}"
        return [Replacement(solid_fill(face), reason) for face in faces]
    return [_checked(method.name, face, output) for face, output in zip(faces, outputs)]


def _checked(method_name: str, face: FaceCrop, output: np.ndarray | StandIn) -> Replacement:
    stand_in_reason = output.reason if isinstance(output, StandIn) else None
    output = np.asarray(output.pixels if isinstance(output, StandIn) else output)
    if output.shape != face.pixels.shape or output.dtype != np.uint8:
        reason = f"{method_name} returned {output.dtype} {output.shape}, expected uint8 {face.pixels.shape}"
        return Replacement(solid_fill(face), reason)
    core = face.mask >= CORE_MASK_LEVEL
    original = face.pixels[core].astype(np.float32)
    if original.size and original.std() > 2.0:
        change = np.abs(output[core].astype(np.float32) - original).mean()
        if change < 0.5:
            return Replacement(solid_fill(face), f"{method_name} left the face unchanged")
    return Replacement(output, stand_in_reason=stand_in_reason)
