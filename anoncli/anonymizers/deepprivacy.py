"""`deepprivacy`: a new face inpainted into the erased face region by the project's own conditional GAN.

The generator sees the context around the face with the face ellipse erased (at full resolution, before any
resizing), the 5 landmarks as pose, noise drawn from the face's seed and, with `--preserve`, the gender and
age group estimated on the original (labels only); never the face itself. Its output is colour-matched to the
ring around the face, or shifted to a skin colour the user asks for, and handed back for feathered paste-back.
Large faces get the generator grown to 128² when those weights are shipped and their manifest says from which
square size (source pixels) they were measured to do better than the 64² one; a refiner still in training has
no such entry and is not used.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch

from anoncli.anonymizers.base import CORE_MASK_LEVEL, FaceCrop, Method
from anoncli.faces import Square, face_size
from anoncli.generative.geometry import CONTEXT, build_input, erase_ellipse
from anoncli.generative.sampling import generate, to_tensors
from anoncli.generative.skin import skin_sample
from anoncli.generative.weights import WEIGHTS_DIR, load_generator, read_manifest
from anoncli.io.images import LUMA_WEIGHTS

DEFAULT_WEIGHTS = WEIGHTS_DIR / "deepprivacy64.pt"
# The same generator grown to 128² (progressive), for faces whose square would otherwise be enlarged a lot.
REFINED_WEIGHTS = WEIGHTS_DIR / "deepprivacy128.pt"
TINT_ROUNDS = 2
# `--skin-tone`: luma (BT.601) and the two colour differences B - luma and R - luma. Shading lives in luma
# and is kept by a gain; skin colour lives in the colour differences, whose spread over a generated face (pale
# highlights beside warmer cheeks) is halved so the skin reads as the asked colour, not as a mixture around it.
LUMA_CHROMA = np.vstack([LUMA_WEIGHTS, np.eye(3, dtype=np.float32)[[2, 0]] - LUMA_WEIGHTS])
RGB_FROM_LUMA_CHROMA = np.linalg.inv(LUMA_CHROMA).astype(np.float32)
CHROMA_SPREAD = 0.5
# A gain that lifts a drawn face to a light target pushed its highlights past white: 18-77 % of the inner
# face clipped on celebs13 with a light target, leaving only the shaded rest to read as skin, 10-20 % darker
# than asked on some faces. Luma above the target's is rolled off instead (continuous in value and slope)
# towards the brightest luma the target's colour can take before a channel clips; the gain is found on the
# skin sample so the rolled-off skin still averages the target's luma.
GAIN_ITERATIONS = 8
# Generated faces vary in colour half again as much as real faces framed the same way (median distance of the
# colour differences from the face's median: 11.2 against 7.1 levels over 26 celebs13 faces), the excess in
# rainbow-coloured speckle and blotches. Their colour differences are smoothed over this share of the square's
# side and their spread around the face's median scaled to the real level (drawn / real 1.52 -> 0.97 in
# `test_new_faces_vary_in_colour_no_more_than_real_faces`); shading (luma) is left as drawn.
CALM_CHROMA_SIGMA = 1 / 64
CALM_CHROMA_SPREAD = 0.7
# A face cut by the image edge has its box clamped to the image, a shape the generator never saw in training.
# It is given the whole face instead: the box grown past the edge to this width / height (the median of whole
# RetinaFace boxes on celebs13 and the group photos, 0.68-0.79 for 80 % of them), the part beyond the edge
# erased and unknown, and only the part inside the image is kept.
FACE_ASPECT = 0.73
# The generator's copy of the ring around the face carries some of its new face's skin colour outwards, so
# the ring's colour difference from the original points away from skin colour (-6.5 of 39 levels along it, on
# 132 faces of the unannotated group photos); applied to the face too, it greyed the skin (median saturation
# 0.80 of the real face's over 75 celebs13 faces; 0.92 now). Brightness is matched over the whole window;
# colour fades out over the face, across this share of the window's side.
RING_COLOUR_FADE = 0.05
# The generator draws crisp faces whatever the photo's focus; among blurred onlookers they looked pasted in.
# Focus is measured with the window shrunk to at most FOCUS_SIDE pixels (where defocus shows whatever the
# face's size), as the blur (Gaussian sigma, in those pixels) of the strongest edges: how much their gradient
# drops when blurred once more by FOCUS_REBLUR tells how blurred they were (the re-blur estimate). The rings
# around 346 faces of celebs13 and the group photos measure 0.9 (median; 98th percentile 1.7), those around
# blurred onlookers 2.1-2.8, as do the onlookers' faces; generated faces measure 0.7-1.2. From
# FOCUS_DEFOCUSED on, the generated window is blurred until its face's edges are as blurred as the ring's;
# below FOCUS_IN_FOCUS it is left as drawn, and in between blurred by a linearly growing share of that, so
# a face whose ring hovers around the limit in video does not flicker between sharp and blurred.
FOCUS_SIDE = 64
FOCUS_REBLUR = 1.0
FOCUS_IN_FOCUS = 1.7
FOCUS_DEFOCUSED = 2.0
FOCUS_EDGE_SHARE = 0.2  # the strongest fifth of the gradients are the edges ...
FOCUS_MIN_GRADIENT = 6.0  # ... if above this (levels per pixel): weaker ones are noise
FOCUS_MIN_EDGES = 8
# Share of the window's side over which generated context fades into the original at its edge; the
# generator's own output is least sure near the edge of what it was shown.
WINDOW_FADE = 0.05


@dataclass
class WholeFace:
    """A face on a canvas that reaches past the image edges that cut its box."""

    face: FaceCrop  # in canvas coordinates, its box grown past those edges
    valid: np.ndarray  # (h, w) uint8: 1 over the crop, 0 beyond the image edge
    erase: np.ndarray  # (h, w) bool: the crop's mask core and, beyond the edge, the whole face's ellipse
    offset: tuple[int, int]  # (x, y) of the crop on the canvas


def whole_face(face: FaceCrop) -> WholeFace:
    """`face` completed past the crop edges that cut its box (those are the image's edges: the crop holds
    context on every other side). A face not cut keeps its crop as the canvas."""
    height, width = face.pixels.shape[:2]
    x1, y1, x2, y2 = face.box
    left, right = _growth(FACE_ASPECT * (y2 - y1) - (x2 - x1), x1 <= 0.5, x2 >= width - 0.5)
    top, bottom = _growth((x2 - x1) / FACE_ASPECT - (y2 - y1), y1 <= 0.5, y2 >= height - 0.5)
    core = face.mask >= CORE_MASK_LEVEL
    if not left + right + top + bottom:
        return WholeFace(face, np.ones(core.shape, np.uint8), core, (0, 0))
    pad = ((top, bottom), (left, right))
    valid = np.pad(np.ones(core.shape, np.uint8), pad)
    box = (x1, y1, x2 + left + right, y2 + top + bottom)  # the crop's box moved by (left, top), then grown
    landmarks = None if face.landmarks is None else face.landmarks + np.array([left, top], np.float32)
    canvas = FaceCrop(
        np.pad(face.pixels, (*pad, (0, 0))), np.pad(face.mask, pad), box, landmarks, face.seed, face.attributes
    )
    # Beyond the edge the whole face's ellipse is erased too, so the generator draws a whole face.
    erase = np.pad(core, pad) | (erase_ellipse(valid.shape, box, 1.0) & (valid == 0))
    return WholeFace(canvas, valid, erase, (left, top))


def rolled_off(luma: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Luma as given up to the target's (`target`: luma and colour differences), above it bent smoothly
    towards the brightest luma at which the target's colour still fits below 255 in every channel."""
    ceiling = 255.0 - (np.array([0.0, *target[1:]], np.float32) @ RGB_FROM_LUMA_CHROMA.T).max()
    headroom = max(ceiling - target[0], 1.0)
    above = np.maximum(luma - target[0], 0.0)
    return np.where(luma > target[0], target[0] + headroom * -np.expm1(-above / headroom), luma)


def luma_gain(skin_luma: np.ndarray, target: np.ndarray) -> float:
    """The gain that, followed by `rolled_off`, brings the skin's mean luma to the target's."""
    gain = target[0] / max(float(skin_luma.mean()), 1.0)
    for _ in range(GAIN_ITERATIONS):
        gain *= target[0] / max(float(rolled_off(skin_luma * gain, target).mean()), 1.0)
    return gain


def calm_chroma(image: np.ndarray, face: np.ndarray) -> np.ndarray:
    """`image` (float RGB, 0-255) with its colour differences smoothed and their spread around their median
    over `face` (bool map) scaled by CALM_CHROMA_SPREAD; luma as it was."""
    pixels = image @ LUMA_CHROMA.T
    chroma = cv2.GaussianBlur(np.ascontiguousarray(pixels[..., 1:]), (0, 0), CALM_CHROMA_SIGMA * image.shape[0])
    centre = np.median(chroma[face], axis=0) if face.any() else chroma.reshape(-1, 2).mean(axis=0)
    pixels[..., 1:] = centre + (chroma - centre) * CALM_CHROMA_SPREAD
    return np.clip(pixels @ RGB_FROM_LUMA_CHROMA.T, 0, 255)


def _gradient(luma: np.ndarray) -> np.ndarray:
    return np.hypot(cv2.Sobel(luma, cv2.CV_32F, 1, 0), cv2.Sobel(luma, cv2.CV_32F, 0, 1)) / 8


def focus_scale(image: np.ndarray) -> float:
    """The factor that shrinks `image` to at most FOCUS_SIDE pixels, where focus is compared."""
    return min(1.0, FOCUS_SIDE / max(image.shape[:2]))


def at_focus_scale(image: np.ndarray, where: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The luma of `image` (RGB) and the bool map `where`, shrunk by `focus_scale`."""
    scale = focus_scale(image)

    def shrunk(array: np.ndarray) -> np.ndarray:
        return cv2.resize(array.astype(np.float32), None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)

    return np.ascontiguousarray(shrunk(image) @ LUMA_CHROMA[0]), shrunk(where) > 0.5


def edge_blur(luma: np.ndarray, where: np.ndarray) -> float | None:
    """Gaussian sigma of the blur of `luma`'s strongest edges over `where` (bool map), see FOCUS_REBLUR; None
    with too few edges to tell."""
    if not where.any():
        return None
    gradient, reblurred = _gradient(luma), _gradient(cv2.GaussianBlur(luma, (0, 0), FOCUS_REBLUR))
    strong = np.quantile(gradient[where], 1 - FOCUS_EDGE_SHARE)
    edges = where & (gradient > FOCUS_MIN_GRADIENT) & (gradient >= strong)
    if edges.sum() < FOCUS_MIN_EDGES:
        return None
    drop = np.maximum(gradient[edges] / np.maximum(reblurred[edges], 1e-3), 1 + 1e-4)
    return float(np.median(FOCUS_REBLUR / np.sqrt(drop**2 - 1)))


def matched_focus(generated: np.ndarray, core: np.ndarray, original: np.ndarray, ring: np.ndarray) -> np.ndarray:
    """`generated` (float RGB) blurred so the edges of its face `core` are as blurred as the `original`'s in
    the `ring` around the face, when that ring is out of focus (see FOCUS_DEFOCUSED); otherwise as it was."""
    photo = edge_blur(*at_focus_scale(original, ring))
    if photo is None or photo <= FOCUS_IN_FOCUS:
        return generated
    drawn = edge_blur(*at_focus_scale(generated, core))
    if drawn is None or drawn >= photo:
        return generated
    share = min((photo - FOCUS_IN_FOCUS) / (FOCUS_DEFOCUSED - FOCUS_IN_FOCUS), 1.0)
    return cv2.GaussianBlur(generated, (0, 0), share * math.sqrt(photo**2 - drawn**2) / focus_scale(generated))


def _window_fade(window: Square, height: int, width: int) -> np.ndarray:
    """(height, width) weights: 1 inside `window` up to WINDOW_FADE of its side from its edges, falling
    linearly to 0 at them, 0 outside."""
    fade = max(WINDOW_FADE * window.side, 1.0)
    ys = np.arange(height, dtype=np.float32) + 0.5 - window.y
    xs = np.arange(width, dtype=np.float32) + 0.5 - window.x
    to_edge_y = np.minimum(ys, window.side - ys)
    to_edge_x = np.minimum(xs, window.side - xs)
    return np.clip(np.minimum(to_edge_y[:, None], to_edge_x[None, :]) / fade, 0.0, 1.0)


def _growth(missing: float, at_start: bool, at_end: bool) -> tuple[int, int]:
    """Pixels to add before and after a box side that is `missing` pixels short, on the cut sides only."""
    if missing <= 0 or not (at_start or at_end):
        return 0, 0
    share = math.ceil(missing / (at_start + at_end))
    return share * at_start, share * at_end


class DeepPrivacy(Method):
    name = "deepprivacy"
    context = CONTEXT
    # The erased region is the mask's core: a little beyond the face box, as in training.
    default_mask_scale = 1.1
    generative = True
    supported_attributes = ("gender", "age")
    supports_skin_tone = True

    def __init__(
        self,
        device: str = "cpu",
        weights: Path = DEFAULT_WEIGHTS,
        refined_weights: Path | None = REFINED_WEIGHTS,
        batch_size: int = 64,
    ) -> None:
        self.device = device
        self.generator, self.manifest = load_generator(weights, device)
        self.refiner, self.refine_from_side = None, float("inf")
        if refined_weights is not None and refined_weights.exists():
            # A refiner still in training names no size to be used from: it is not loaded at all.
            side = read_manifest(refined_weights).get("inference", {}).get("from_square_side")
            if side is not None:
                self.refiner, _ = load_generator(refined_weights, device)
                self.refine_from_side = float(side)
        self.batch_size = batch_size

    def anonymize(self, faces: Sequence[FaceCrop]) -> list[np.ndarray]:
        outputs: list[np.ndarray] = [np.empty(0)] * len(faces)
        large = [CONTEXT * face_size(face.box) >= self.refine_from_side for face in faces]
        for generator, wanted in ((self.generator, False), (self.refiner, True)):
            chosen = [index for index, is_large in enumerate(large) if is_large == wanted]
            for start in range(0, len(chosen), self.batch_size):
                batch = chosen[start : start + self.batch_size]
                for index, image in zip(batch, self._anonymize_batch(generator, [faces[i] for i in batch])):
                    outputs[index] = image
        return outputs

    @torch.inference_mode()
    def _anonymize_batch(self, generator: torch.nn.Module, faces: Sequence[FaceCrop]) -> list[np.ndarray]:
        inputs, placements, wholes = [], [], []
        for face in faces:
            whole = whole_face(face)
            generator_input, square, window = build_input(
                whole.face.pixels, whole.valid, whole.erase, whole.face.box, whole.face.landmarks, generator.resolution
            )
            inputs.append(generator_input)
            placements.append((square, window))
            wholes.append(whole)
        condition, erased, _ = to_tensors(inputs, self.device)
        attributes = torch.from_numpy(np.stack([face.attributes.vector() for face in faces]))
        generated = generate(generator, condition, erased, [face.seed for face in faces], attributes)
        images = ((generated.float().clamp(-1, 1) + 1) * 127.5).permute(0, 2, 3, 1).cpu().numpy()
        outputs = []
        for face, whole, placement, generator_input, image in zip(faces, wholes, placements, inputs, images):
            (left, top), (height, width) = whole.offset, face.pixels.shape[:2]
            calm = calm_chroma(image, generator_input.erased > 0.5)
            outputs.append(self._place(whole.face, *placement, calm)[top : top + height, left : left + width])
        return outputs

    def _place(self, face: FaceCrop, square: Square, window: Square, generated: np.ndarray) -> np.ndarray:
        """Generated pixels inside the window (which holds the whole erased face), the original outside,
        brought to the focus, the brightness and, around the face, the colour of the ring around the face so
        the paste-back shows no seam, then, with a skin tone asked for, scaled so the new face's skin has that
        mean colour."""
        height, width = face.pixels.shape[:2]
        scaled = cv2.resize(generated, (square.side, square.side), interpolation=cv2.INTER_CUBIC)
        original = face.pixels.astype(np.float32)
        placed = original.copy()
        top, left = max(window.y, 0), max(window.x, 0)
        bottom, right = min(window.y + window.side, height), min(window.x + window.side, width)
        inside = np.s_[top:bottom, left:right]
        placed[inside] = scaled[top - square.y : bottom - square.y, left - square.x : right - square.x]
        ring = (face.mask > 0) & (face.mask < CORE_MASK_LEVEL)
        ring[:top] = ring[bottom:] = False
        ring[:, :left] = ring[:, right:] = False
        core = face.mask >= CORE_MASK_LEVEL
        if ring.any():
            placed[inside] = matched_focus(placed[inside], core[inside], original[inside], ring[inside])
            shift = (original[ring] - placed[ring]).mean(axis=0) @ LUMA_CHROMA.T
            over_face = cv2.GaussianBlur(core.astype(np.float32), (0, 0), RING_COLOUR_FADE * window.side)[..., None]
            luma_chroma = np.concatenate([np.broadcast_to(shift[:1], over_face.shape), shift[1:] * (1 - over_face)], -1)
            placed[inside] += (luma_chroma @ RGB_FROM_LUMA_CHROMA.T)[inside]
        # The paste feather can reach past the window, where the original is kept: fading the generated
        # context into it before the window's edge leaves no line there. The erased core stays generated,
        # exactly: at weight 1 this sum holds no trace of the original's values, whatever the rounding.
        weight = np.maximum(_window_fade(window, height, width), core)[:, :, None]
        placed = placed * weight + original * (1 - weight)
        if self.skin_tone is not None:
            placed = self._tinted(placed, core, face.mask)
        return np.clip(np.rint(placed), 0, 255).astype(np.uint8)

    def _tinted(self, placed: np.ndarray, core: np.ndarray, weight: np.ndarray) -> np.ndarray:
        """The generated skin brought to the target colour: brightness by a gain (shading is kept), colour
        moved onto the target's with only CHROMA_SPREAD of its spread around the skin's mean kept; the change
        fades out with the paste mask; highlights are rolled off below white. A second round makes up for what
        clipping still took away."""
        target = np.array(self.skin_tone, np.float32) @ LUMA_CHROMA.T
        rows, columns = np.flatnonzero(weight.any(axis=1)), np.flatnonzero(weight.any(axis=0))
        if not len(rows):
            return placed
        # Only the pixels the mask reaches change: the rest of the crop is not converted.
        reach = np.s_[rows[0] : rows[-1] + 1, columns[0] : columns[-1] + 1]
        region, fade = placed[reach], weight[reach][:, :, None]
        for _ in range(TINT_ROUNDS):
            sample = skin_sample(np.clip(placed, 0, 255), core)
            if sample is None:
                break
            skin = sample @ LUMA_CHROMA.T
            gain = luma_gain(skin[:, 0], target)
            pixels = region @ LUMA_CHROMA.T
            luma = rolled_off(pixels[..., :1] * gain, target)
            chroma = target[1:] + (pixels[..., 1:] - skin[:, 1:].mean(axis=0)) * CHROMA_SPREAD
            tinted = np.concatenate([luma, chroma], axis=-1) @ RGB_FROM_LUMA_CHROMA.T
            region[...] = np.clip(region + (tinted - region) * fade, 0, 255)
        return placed
