"""Methods that draw a new face placed by the target's FaceMesh, over another method's drawing of the face.

The other method (`surroundings`: deepprivacy unless a method says otherwise) covers the whole erased region
(hair, ears, the face's surroundings). Where FaceMesh fits no mesh (blurred, cut or small faces, turned heads),
a method with a template mesh places it by the detector's five landmarks if they show the face frontal; a face
with neither keeps the surroundings' drawing. A method here draws inside the mesh's face outline (and a margin
past it) from the mesh and the seed alone, colour-matched to the surroundings' skin below the eyes and blended
band by band. Neither sees the face's pixels, so the privacy test holds for every method here: with the meshes
fixed, scrambling the faces gives the same output. In a video the mesh and the colour match are smoothed along
each track.
"""

from __future__ import annotations

from abc import abstractmethod
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import cv2
import numpy as np

from anoncli.anonymizers.base import FaceCrop, Method, StandIn
from anoncli.anonymizers.deepprivacy import DeepPrivacy
from anoncli.composites.blend import colour_shift, colour_shifted, multiband
from anoncli.composites.mesh import (
    LEFT_EYE_LOWER,
    MEDIAPIPE_INSTALL,
    RIGHT_EYE_LOWER,
    FaceMesher,
    posed_on_landmarks,
    similarity,
)
from anoncli.faces import Box, box_centre, face_size
from anoncli.generative.geometry import CONTEXT
from anoncli.smoothing import OneEuroFilter

# The new face's colour is matched to the drawn skin in a band this share of the face size wide along its
# edge (below the eyes: above them lies hair), and faded into it over a feather of this share.
BAND_SHARE = 0.08
FEATHER_SHARE = 0.03
# In video a track's mesh shape is smoothed (One-Euro): at rest below MESH_MIN_CUTOFF Hz, the cutoff rising by
# MESH_BETA Hz per face size a second of change; chosen with bench/mesh_jitter.py on a clip not evaluated on.
MESH_MIN_CUTOFF = 1.0
MESH_BETA = 1.0
# ... and the new face's colour shift (Lab) low-passed at COLOUR_CUTOFF Hz: the drawing it is matched on changes
# from frame to frame more than the light on a face does (0.5 Hz, the first setting tried; 0.2 measured the same,
# docs/results.md).
COLOUR_CUTOFF = 0.5
TRACKS_FOLLOWED = 256  # the tracks seen last; an older one starts afresh should it come back
NO_MESH = "FaceMesh fitted no mesh to this face"
NOR_LANDMARKS = "and the detector's landmarks show it turned (or it has none)"
TOO_LITTLE = "too little of the face lies in the photo, or it is too small to blend in"


@dataclass
class Blended:
    pixels: np.ndarray  # (h, w, 3) float32, the new face over the base
    texture: np.ndarray  # (h, w, 3) float32, the new face colour-matched
    weight: np.ndarray  # (h, w) float32, how much of the new face each pixel holds
    inner: np.ndarray  # (h, w) bool, the new face less its colour-matching band


def blend_in(
    texture: np.ndarray,
    covered: np.ndarray,
    base: np.ndarray,
    mesh: np.ndarray,
    size: float,
    reference: np.ndarray | None = None,
    steady: Callable[[np.ndarray], np.ndarray] | None = None,
) -> Blended | None:
    """`texture` (float RGB, drawn where `covered`) over `base`: colour-matched to `base` below the eyes of
    `mesh` on `reference` (a bool map; by default the band along the edge of `covered`), faded in over a feather
    and blended band by band. `steady` filters the colour shift (in a video, along the face's track). None when
    too little of the reference or the face lies in the crop."""
    inner = cv2.erode(covered.astype(np.uint8), _disc(BAND_SHARE * size)).astype(bool)
    band = covered & (~inner if reference is None else reference)
    band[: max(int(mesh[list(RIGHT_EYE_LOWER + LEFT_EYE_LOWER), 1].max()), 0)] = False
    if band.sum() < 16 or not inner.any():
        return None
    shift = colour_shift(texture, base, band)
    texture = colour_shifted(texture, shift if steady is None else steady(shift))
    weight = np.where(covered, cv2.GaussianBlur(inner.astype(np.float32), (0, 0), FEATHER_SHARE * size), 0.0)
    blended = multiband(texture, base.astype(np.float32), weight)
    return Blended(blended, texture, weight.astype(np.float32), inner)


class TrackMesh:
    """One track's face mesh over time. Each fit is split into its pose (the similarity onto it from the track's
    first mesh) and its shape in that first mesh's frame; the shape is One-Euro filtered and posed again as
    fitted, so the new face keeps up with the head (and a shaking camera) while its points stop jittering."""

    def __init__(self, step: float, min_cutoff: float, beta: float) -> None:
        self.shape = OneEuroFilter(step, min_cutoff, beta)
        self.reference: np.ndarray | None = None
        self.reference_size = 1.0

    def __call__(self, mesh: np.ndarray, face_size: float) -> np.ndarray:
        if self.reference is None:
            self.reference, self.reference_size = mesh, face_size
        pose = similarity(self.reference, mesh)
        smoothed = self.shape(pose.undo(mesh), scale=self.reference_size)
        return pose.apply(smoothed).astype(mesh.dtype)


@dataclass
class FollowedFace:
    """What is kept of one track's face from frame to frame: its mesh and colour filters, and its last mesh with
    the box it was found in."""

    mesh: TrackMesh
    colour: OneEuroFilter
    last: tuple[np.ndarray, Box] | None = None


def moved_with_box(mesh: np.ndarray, before: Box, after: Box) -> np.ndarray:
    """`mesh` of the face in box `before` moved and scaled as the box moved to `after`."""
    scale = face_size(after) / max(face_size(before), 1e-6)
    start = np.array([*box_centre(before), 0.0], np.float32)
    end = np.array([*box_centre(after), 0.0], np.float32)
    return ((mesh - start) * scale + end).astype(np.float32)


def _disc(diameter: float) -> np.ndarray:
    side = max(int(diameter) | 1, 3)
    return cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (side, side))


class MeshDrawn(Method):
    context = CONTEXT
    # A frontal mesh the detector's landmarks place where FaceMesh fits none (None: the surroundings draw it).
    template: np.ndarray | None = None
    default_mask_scale = DeepPrivacy.default_mask_scale
    generative = True
    supports_skin_tone = True

    def __init__(self, device: str = "cpu", surroundings: Method | None = None) -> None:
        try:
            self.mesher = FaceMesher()
        except ImportError:
            raise ValueError(f"method {self.name} needs MediaPipe's FaceMesh: {MEDIAPIPE_INSTALL}") from None
        self.surroundings = surroundings or DeepPrivacy(device=device)
        self._frame_step: float | None = None  # seconds between frames, in a video
        self._followed: OrderedDict[int, FollowedFace] = OrderedDict()

    @contextmanager
    def following_tracks(self, frame_rate: float) -> Iterator[None]:
        self._frame_step = 1.0 / frame_rate
        try:
            yield
        finally:
            self._frame_step = None
            self._followed.clear()

    def meshes(self, faces: Sequence[FaceCrop]) -> list[np.ndarray | None]:
        """FaceMesh of each face on its crop; where it fits none (a blurred or cut face, often), the template
        placed by the detector's landmarks if they show the face frontal; else None. In a video, smoothed along
        its track so that the new face does not jitter, and where the tracker predicted the face (no landmarks),
        the track's last mesh moved with the box, so the face is not drawn by turns."""
        meshes = [self._mesh(face) for face in faces]
        if self._frame_step is None:
            return meshes
        return [self._followed_mesh(face, mesh) for face, mesh in zip(faces, meshes)]

    def _followed_mesh(self, face: FaceCrop, mesh: np.ndarray | None) -> np.ndarray | None:
        followed = self._follow(face)
        if mesh is not None:
            mesh = followed.mesh(mesh, face.face_size)
            followed.last = (mesh, face.box)
        elif face.landmarks is None and followed.last is not None:
            mesh = moved_with_box(*followed.last, face.box)
        else:
            followed.last = None
        return mesh

    def _mesh(self, face: FaceCrop) -> np.ndarray | None:
        mesh = self.mesher.fit(face.pixels, face.box)
        if mesh is None and self.template is not None and face.landmarks is not None:
            mesh = posed_on_landmarks(self.template, np.asarray(face.landmarks, np.float32))
        return mesh

    def _follow(self, face: FaceCrop) -> FollowedFace:
        """The state kept along `face`'s track (its seed), started on its first frame."""
        if face.seed not in self._followed:
            self._followed[face.seed] = FollowedFace(
                TrackMesh(self._frame_step, MESH_MIN_CUTOFF, MESH_BETA),
                OneEuroFilter(self._frame_step, COLOUR_CUTOFF, beta=0.0),
            )
            if len(self._followed) > TRACKS_FOLLOWED:
                self._followed.popitem(last=False)
        self._followed.move_to_end(face.seed)
        return self._followed[face.seed]

    def steady_colour(self, face: FaceCrop) -> Callable[[np.ndarray], np.ndarray] | None:
        """In a video, the filter of `face`'s colour shift along its track (for `blend_in`); else None."""
        return None if self._frame_step is None else self._follow(face).colour

    def anonymize(self, faces: Sequence[FaceCrop]) -> list[np.ndarray | StandIn]:
        return self.draw(faces, self.meshes(faces))

    def draw(self, faces: Sequence[FaceCrop], meshes: Sequence[np.ndarray | None]) -> list[np.ndarray | StandIn]:
        """The new faces, given each face's mesh (None: the face the surroundings drew stands in)."""
        fitted = [index for index, mesh in enumerate(meshes) if mesh is not None]
        bases = self.bases(faces, fitted)
        drawn = dict(
            zip(
                fitted,
                self.draw_meshed([faces[i] for i in fitted], [meshes[i] for i in fitted], [bases[i] for i in fitted]),
            )
        )
        outputs: list[np.ndarray | StandIn] = []
        for index, base in enumerate(bases):
            if index not in drawn:
                reason = NO_MESH if self.template is None else f"{NO_MESH} {NOR_LANDMARKS}"
                outputs.append(StandIn(base, f"{self.name}: {reason}; {self.surroundings.name} drew it"))
            elif drawn[index] is None:
                outputs.append(StandIn(base, f"{self.name}: {TOO_LITTLE}; {self.surroundings.name} drew it"))
            else:
                outputs.append(drawn[index])
        return outputs

    def bases(self, faces: Sequence[FaceCrop], fitted: Sequence[int]) -> list[np.ndarray]:
        """What each face is drawn over (and, where it has no mesh, what stands in for it): the surroundings'
        drawing."""
        if self.surroundings.supports_skin_tone:
            self.surroundings.skin_tone = self.skin_tone
        return [base.pixels if isinstance(base, StandIn) else base for base in self.surroundings.anonymize(faces)]

    @abstractmethod
    def draw_meshed(
        self, faces: Sequence[FaceCrop], meshes: Sequence[np.ndarray], bases: Sequence[np.ndarray]
    ) -> list[np.ndarray | None]:
        """Each face drawn over its base (the surroundings' drawing) from its mesh and seed alone; None where it
        cannot be."""
