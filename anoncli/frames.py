"""Anonymize frames: cut every face's crop, send all crops through the method at once, paste them back.

Shared by the image and the video pipeline, so both batch faces across frames the same way.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from anoncli.anonymizers import FaceCrop, Method, anonymize_fail_closed
from anoncli.anonymizers.baselines import Blur
from anoncli.attributes import UNKNOWN, Attributes
from anoncli.faces import Face
from anoncli.io.images import rgb8
from anoncli.paste import Compositor
from anoncli.regions import Region, face_region


@dataclass
class FrameJob:
    frame: np.ndarray  # (H, W, C) at the source's depth; left untouched, a copy is anonymized
    faces: list[Face]
    seeds: list[int]  # one per face
    attributes: list[Attributes] | None = None  # one per face, when attributes are to be kept


@dataclass
class FrameResult:
    frame: np.ndarray
    fallbacks: list[str] = field(default_factory=list)  # why faces got a solid mask instead
    stand_ins: list[str] = field(default_factory=list)  # why faces were drawn by the method's fallback
    unconfirmed: int = 0  # detections not confirmed as faces, blurred instead of redrawn by a generative method


# What a generative method's detections that are not confirmed as faces get: covered, but no face drawn on what
# may be a patch of jacket.
STAND_IN = Blur()
# A detection scored under UNCERTAIN_SCORE is often part of a face: the side of a turned head, a dim or
# half-hidden face found in pieces. Unless a face is drawn there, its cover reaches UNCERTAIN_MASK_SCALE times its
# box so the rest of the head is covered too; chosen on the tuning crowd photos (docs/results.md, "Coverage").
UNCERTAIN_SCORE = 0.5
UNCERTAIN_MASK_SCALE = 2.0


def face_crop(view: np.ndarray, region: Region, face: Face, seed: int, attributes: Attributes = UNKNOWN) -> FaceCrop:
    """The method's view of one face: the region's pixels, its mask, box and landmarks in crop coordinates."""
    offset = np.array([region.x1, region.y1], np.float32)
    box = (face.box[0] - region.x1, face.box[1] - region.y1, face.box[2] - region.x1, face.box[3] - region.y1)
    landmarks = None if face.landmarks is None else np.asarray(face.landmarks, np.float32) - offset
    return FaceCrop(np.ascontiguousarray(view[region.slices]), region.mask, box, landmarks, seed, attributes)


def anonymize_frames(jobs: list[FrameJob], method: Method, mask_scale: float) -> list[FrameResult]:
    """Every face of every frame replaced and pasted back, uncertain detections first (in the order given
    otherwise). A generative method's detections not confirmed as faces go to STAND_IN instead; low-score ones
    not drawn as faces are covered UNCERTAIN_MASK_SCALE wide."""
    crops: dict[Method, list[FaceCrop]] = {}
    placements: list[tuple[int, Region, Method, int]] = []  # frame, region, the method and the crop's place
    for index, job in enumerate(jobs):
        if not job.faces:
            continue
        view = rgb8(job.frame)
        height, width = view.shape[:2]
        attributes = job.attributes or [UNKNOWN] * len(job.faces)
        # Uncertain detections are pasted first: where a wide cover overlaps a face, the face's own replacement
        # is the one that stays.
        faces = sorted(zip(job.faces, job.seeds, attributes), key=lambda item: not _uncertain(item[0]))
        for face, seed, wanted in faces:
            handler = STAND_IN if method.generative and not face.confirmed else method
            wide = face.score < UNCERTAIN_SCORE and not handler.generative
            scale = max(mask_scale, UNCERTAIN_MASK_SCALE) if wide else mask_scale
            region = face_region(face, width, height, scale, handler.context)
            if region.mask.size == 0 or not region.mask.any():
                continue  # the face lies wholly outside the frame: a track predicted past the edge
            batch = crops.setdefault(handler, [])
            placements.append((index, region, handler, len(batch)))
            batch.append(face_crop(view, region, face, seed, wanted))
    replaced = {handler: anonymize_fail_closed(handler, batch) for handler, batch in crops.items()}

    results = [FrameResult(job.frame) for job in jobs]
    compositors: dict[int, Compositor] = {}
    for index, region, handler, place in placements:
        replacement = replaced[handler][place]
        results[index].unconfirmed += handler is not method
        if index not in compositors:
            results[index].frame = jobs[index].frame.copy()
            compositors[index] = Compositor(results[index].frame)
        compositors[index].paste(region, replacement.pixels)
        if replacement.fallback_reason:
            results[index].fallbacks.append(replacement.fallback_reason)
        if replacement.stand_in_reason:
            results[index].stand_ins.append(replacement.stand_in_reason)
    return results


def _uncertain(face: Face) -> bool:
    return face.score < UNCERTAIN_SCORE or not face.confirmed
