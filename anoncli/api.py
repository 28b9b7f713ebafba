"""The Python API: the same pipeline the command line runs, for data pipelines that should not shell out.

    import anoncli
    faces = anoncli.detect_faces(image)                    # image: HxWx3 uint8 RGB numpy array
    out = anoncli.anonymize_image(image, method="deepprivacy", seed=0, preserve=("age", "gender"))
    anonymizer = anoncli.Anonymizer(method="blur", device="auto")   # models loaded once
    out = anonymizer(image); outs = anonymizer.batch([img1, img2])

Fail-closed as the command line is: a face the method fails on comes back under a solid mask
(`Anonymizer.anonymize` counts them, in `fallback_faces`, and says why, in `notes`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from anoncli.anonymizers import DEFAULT_METHOD, METHODS, create_method
from anoncli.attributes import ATTRIBUTE_NAMES, DEFAULT_ESTIMATOR, AttributeEstimator, create_estimator, preserving
from anoncli.detectors.plans import DEFAULT_COVERAGE, create_face_detector
from anoncli.device import resolve_device
from anoncli.faces import Face
from anoncli.io.images import DEFAULT_MAX_MEGAPIXELS, Picture, rgb8
from anoncli.io.objects import ObjectTask
from anoncli.io.records import UserDetections
from anoncli.io.report import FileResult, Report
from anoncli.io.sources import Task, UsageError
from anoncli.pipeline.finder import DetectorFinder, FaceFinder, SuppliedFaces
from anoncli.pipeline.images import BATCH_SIZE, ImageSettings, LoadedImage, anonymize_images, anonymize_loaded, batched
from anoncli.pipeline.objects import finished_objects, merged, split_finished, stage, unless_finished
from anoncli.pipeline.on_ray import (
    RayBackend,
    anonymize_images_on_ray,
    anonymize_objects_on_ray,
    anonymize_videos_on_ray,
    file_pipeline,
)
from anoncli.pipeline.video import VIDEO_DETECTOR_OPTIONS, VideoSettings, anonymize_videos

# What `--preserve` picks when no method is named: the method that can keep those attributes.
DEFAULT_PRESERVING_METHOD = "deepprivacy"


class InputError(ValueError):
    """An image or an option the API cannot use; the message says why."""


def choose_method(method: str | None, preserve: Sequence[str] = ()) -> str:
    """The method to run: the one named, else the one that can keep `preserve`, else the default."""
    if method is not None:
        return method
    return DEFAULT_PRESERVING_METHOD if preserve else DEFAULT_METHOD


@dataclass
class AnonymizedImage:
    image: np.ndarray  # same shape and dtype as the input
    faces: list[Face]  # the faces that were replaced
    fallback_faces: int  # faces covered by a solid mask because the method failed on them
    unconfirmed_faces: int  # detections not confirmed as faces: blurred, not redrawn, by a generative method
    stand_in_faces: int  # faces the method drew by its own fallback (ksame: deepprivacy where no mesh fits)
    notes: list[str]  # why faces fell back (one per face), and anything else worth knowing


class Anonymizer:
    """A detector and an anonymization method (and, with `preserve`, an attribute estimator), loaded once.

    `method` None picks blur, or deepprivacy when `preserve` asks for attributes; `keep` names the face parts
    `shape` keeps in the original's shape; `weights` replaces a trained method's shipped weights by those
    `anoncli train` wrote. `coverage` (fast, balanced, strict) says how hard to look for faces;
    `detector` replaces its detectors by one. `faces_from` takes the faces from a `anoncli detect` JSON-lines
    file instead (files and videos only). Raises InputError for options it cannot use.
    """

    def __init__(
        self,
        method: str | None = None,
        *,
        preserve: Sequence[str] = (),
        skin_tone: tuple[int, int, int] | None = None,
        keep: Sequence[str] = (),
        flip: Sequence[str] = (),
        identity: int | None = None,
        weights: Path | None = None,
        detector: str | None = None,
        coverage: str = DEFAULT_COVERAGE,
        threshold: float | None = None,
        device: str = "auto",
        attribute_model: str | AttributeEstimator = DEFAULT_ESTIMATOR,
        mask_scale: float | None = None,
        seed: int = 0,
        faces_from: Path | None = None,
    ) -> None:
        self._arguments = {
            "method": method, "preserve": tuple(preserve), "skin_tone": skin_tone, "keep": tuple(keep),
            "flip": tuple(flip), "identity": identity, "weights": weights, "detector": detector,
            "coverage": coverage, "threshold": threshold, "device": device, "attribute_model": attribute_model,
            "mask_scale": mask_scale, "seed": seed, "faces_from": faces_from,
        }  # fmt: skip
        self.preserve = tuple(dict.fromkeys(preserve))
        unknown = [name for name in self.preserve if name not in ATTRIBUTE_NAMES]
        if unknown:
            raise InputError(f"unknown attribute {', '.join(unknown)}; choose from {', '.join(ATTRIBUTE_NAMES)}")
        self.method_name = choose_method(method, self.preserve)
        if self.method_name not in METHODS.names():
            raise InputError(f"unknown method {self.method_name!r}; choose one of: {', '.join(METHODS.names())}")
        try:
            self.device = resolve_device(device)
            self.method = create_method(
                self.method_name, self.device, self.preserve, skin_tone, tuple(keep), tuple(flip), identity, weights
            )
            self.weights = weights
        except ValueError as error:
            raise InputError(str(error)) from None
        self.describe = None
        estimated = tuple(dict.fromkeys(self.preserve + self.method.reads_attributes))
        if estimated:
            try:
                estimator = (
                    create_estimator(attribute_model, device=self.device)
                    if isinstance(attribute_model, str)
                    else attribute_model
                )
            except KeyError as error:
                raise InputError(str(error).strip("'\"")) from None
            self.describe = preserving(estimator, estimated)
        self.attribute_model = attribute_model if isinstance(attribute_model, str) else attribute_model.name
        self.mask_scale = mask_scale or self.method.default_mask_scale
        self.seed = seed
        self.detector_name = "user detections" if faces_from else detector
        self.coverage = None if faces_from else coverage
        self.threshold = threshold
        try:
            self._supplied = SuppliedFaces(UserDetections(faces_from)) if faces_from else None
        except UsageError as error:
            raise InputError(str(error)) from None
        self._finders: dict[bool, FaceFinder] = {}
        if self._supplied is None:
            self.finder()  # a bad detector name or threshold fails here, before any work

    def __reduce__(self) -> tuple:
        """Pickled as its settings: another process (a Ray worker) builds its own, loading the models there."""
        return _rebuilt_anonymizer, (self._arguments,)

    def finder(self, video: bool = False) -> FaceFinder:
        """Where faces come from: the user's detections, or the detector (set up for video frames or images)."""
        if self._supplied is not None:
            return self._supplied
        if video not in self._finders:
            # Only a method that draws faces treats a detection differently when it is not confirmed as one.
            confirm = self.method.generative
            finder = face_finder(self.detector_name, self.threshold, self.device, video, self.coverage, confirm)
            self._finders[video] = finder
        return self._finders[video]

    def detect(self, image: np.ndarray) -> list[Face]:
        """The faces the detector finds in an RGB uint8 image."""
        return _detector_finder(self).find(rgb8(_frame_checked(image)), Path("image"), 0)

    def anonymize(
        self, image: np.ndarray, faces: Sequence[Face] | None = None, name: str = "", seed: int | None = None
    ) -> AnonymizedImage:
        """Anonymize one image (HxWx3 RGB; gray, gray+alpha, RGBA and 16 bits are kept as given).

        `faces`: use these instead of detecting. `name` and `seed` (default: the anonymizer's) choose the new
        faces: the same name and seed give the same faces (the command line names a file by its path below the
        output folder).
        """
        return self.anonymize_batch([image], None if faces is None else [faces], [name], seed)[0]

    def __call__(self, image: np.ndarray, faces: Sequence[Face] | None = None) -> np.ndarray:
        return self.anonymize(image, faces).image

    def batch(self, images: Iterable[np.ndarray]) -> list[np.ndarray]:
        """Anonymize several images; their faces go to the method together, batch by batch."""
        return [result.image for result in self.anonymize_batch(list(images))]

    def anonymize_batch(
        self,
        images: Sequence[np.ndarray],
        faces: Sequence[Sequence[Face] | None] | None = None,
        names: Sequence[str] | None = None,
        seed: int | None = None,
    ) -> list[AnonymizedImage]:
        """Anonymize several images, each with its faces (None: detect) and name (default: its index)."""
        names = names or [f"{index}" for index in range(len(images))]
        given = faces or [None] * len(images)
        loaded = [
            LoadedImage(
                Task(Path(name or "image"), None, name, name),
                Picture([_frame_checked(image)], "PNG"),
                faces=None if known is None else [list(known)],
            )
            for image, known, name in zip(images, given, names)
        ]
        settings = ImageSettings(mask_scale=self.mask_scale, seed=self.seed if seed is None else seed)
        finder = None if all(known is not None for known in given) else _detector_finder(self)
        results = []
        for chunk in batched(loaded, BATCH_SIZE):
            for item in anonymize_loaded(chunk, finder, self.method, settings, self.describe):
                if item.error is not None:
                    raise RuntimeError(item.error)  # the faces could not be found: nothing may be returned
                image = item.anonymized[0]
                if image is item.picture.frames[0]:  # no face: still a new array, never the caller's own
                    image = image.copy()
                notes = list(item.picture.notes)
                results.append(
                    AnonymizedImage(
                        image, item.faces[0], item.fallback_faces, item.unconfirmed_faces, item.stand_in_faces, notes
                    )
                )
        for source, result in zip(images, results):
            if source.ndim == 2:
                result.image = result.image[:, :, 0]
        return results

    def anonymize_files(
        self,
        tasks: Iterable[Task],
        report: Report,
        *,
        batch_size: int = BATCH_SIZE,
        keep_metadata: bool = False,
        overwrite: bool = False,
        max_megapixels: float = DEFAULT_MAX_MEGAPIXELS,
        on_result: Callable[[FileResult], None] = lambda result: None,
        backend: RayBackend | None = None,
    ) -> Report:
        """Anonymize image files into their tasks' outputs (see `anoncli.io.sources.plan_outputs`), here or,
        with `backend`, on Ray workers."""
        settings = ImageSettings(
            mask_scale=self.mask_scale,
            batch_size=batch_size,
            keep_metadata=keep_metadata,
            overwrite=overwrite,
            max_megapixels=max_megapixels,
            seed=self.seed,
        )
        if backend is not None:
            return anonymize_images_on_ray(tasks, self, settings, report, backend, on_result)
        return anonymize_images(tasks, self.finder(), self.method, settings, report, on_result, self.describe)

    def anonymize_videos(
        self,
        tasks: Iterable[Task],
        report: Report,
        settings: VideoSettings,
        *,
        on_result: Callable[[FileResult], None] = lambda result: None,
        on_start: Callable[[Task], Callable[[int, int], None]] = lambda task: lambda done, total: None,
        tracks: dict | None = None,
        backend: RayBackend | None = None,
    ) -> Report:
        """Anonymize video files into their tasks' outputs, here or, with `backend`, on Ray workers (a video
        each); `tracks` (from `anoncli track`) replaces detection. `on_start(task)` returns the progress
        callback for that video (here only)."""
        settings.mask_scale = self.mask_scale
        if backend is not None:
            return anonymize_videos_on_ray(tasks, self, settings, report, backend, on_result, tracks)
        return anonymize_videos(
            tasks, self.finder(video=True), self.method, settings, report, on_result, on_start, tracks, self.describe
        )

    def anonymize_objects(
        self,
        tasks: list[ObjectTask],
        report: Report,
        settings: ImageSettings | VideoSettings,
        *,
        on_result: Callable[[FileResult], None] = lambda result: None,
        backend: RayBackend | None = None,
    ) -> Report:
        """Anonymize objects (s3://, see `anoncli.io.objects.plan_objects`) with the image or the video pipeline,
        as `settings` says, here or on Ray workers; outputs that exist are skipped unless `settings.overwrite`."""
        settings = replace(settings, mask_scale=self.mask_scale)
        if isinstance(settings, ImageSettings):
            settings = replace(settings, seed=self.seed)
        if backend is not None:
            return anonymize_objects_on_ray(tasks, self, settings, report, backend, on_result)
        finished = finished_objects(tasks, settings.overwrite)
        pipeline = file_pipeline(self, replace(settings, overwrite=True))
        size = 1 if isinstance(settings, VideoSettings) else settings.batch_size

        def results() -> Iterator[FileResult]:
            for chunk in batched(tasks, size):
                known, work = split_finished(chunk, unless_finished(finished))
                yield from merged(chunk, known, stage(work, pipeline) if work else [])

        return report.collect(results(), on_result)

    def report_settings(self) -> dict:
        """What a report says this anonymizer was."""
        return {
            "method": self.method_name,
            "detector": self.detector_name or "per coverage",
            "coverage": self.coverage,
            "threshold": self.threshold,
            "mask_scale": self.mask_scale,
            "device": self.device,
            "preserve": self.preserve,
            "attribute_model": self.attribute_model if self.describe else None,
            "skin_tone": self.method.skin_tone or "keep",
            "keep": self.method.keep,
            "flip": self.method.flips,
            "sees_face": self.method.sees_face,
            "identity": self.method.identity,
            "weights": str(self.weights) if self.weights else "shipped",
        }


def _rebuilt_anonymizer(arguments: dict) -> Anonymizer:
    return Anonymizer(**arguments)


def face_finder(
    detector: str | None = None,
    threshold: float | None = None,
    device: str = "auto",
    video: bool = False,
    coverage: str = DEFAULT_COVERAGE,
    confirm: bool = True,
) -> FaceFinder:
    """The faces a coverage plan finds (`detector`, when given, replaces the plan's detectors), set up for
    images or for video frames; InputError for a bad name or threshold."""
    options: dict = {"device": resolve_device(device), **(VIDEO_DETECTOR_OPTIONS if video else {})}
    try:
        return DetectorFinder(create_face_detector(coverage, detector, threshold, confirm, **options))
    except (KeyError, ValueError) as error:
        raise InputError(str(error).strip("'\"")) from None


def _detector_finder(anonymizer: Anonymizer) -> FaceFinder:
    if anonymizer._supplied is not None:
        raise InputError("an Anonymizer with faces_from= works on files only; pass faces= for arrays")
    return anonymizer.finder()


def _frame_checked(image: np.ndarray) -> np.ndarray:
    """The image as an (H, W, C) frame, C in 1-4, uint8 or uint16; InputError for anything else."""
    if not isinstance(image, np.ndarray):
        raise InputError(f"image must be a numpy array (H, W, 3) of uint8 RGB, got {type(image).__name__}")
    if image.dtype not in (np.uint8, np.uint16):
        raise InputError(f"image must be uint8 (or uint16), got {image.dtype}; convert with .astype(np.uint8)")
    frame = image[:, :, None] if image.ndim == 2 else image
    if frame.ndim != 3 or frame.shape[2] not in (1, 2, 3, 4):
        raise InputError(f"image must be (H, W, 3) RGB (or gray, gray+alpha, RGBA), got shape {image.shape}")
    if frame.shape[0] == 0 or frame.shape[1] == 0:
        raise InputError(f"image has no pixels ({image.shape[1] if image.ndim > 1 else 0}×{image.shape[0]})")
    return np.ascontiguousarray(frame)


_shared_anonymizers: dict[tuple, Anonymizer] = {}
_shared_finders: dict[tuple, FaceFinder] = {}


def _shared_anonymizer(**options: object) -> Anonymizer:
    """One Anonymizer per set of options, so repeated calls do not load the models again."""
    key = tuple(sorted(options.items()))
    if key not in _shared_anonymizers:
        _shared_anonymizers[key] = Anonymizer(**options)
    return _shared_anonymizers[key]


def detect_faces(
    image: np.ndarray, detector: str | None = None, threshold: float | None = None, coverage: str = "fast"
) -> list[Face]:
    """The faces in an RGB uint8 image (H, W, 3): boxes, scores and five landmarks each, and whether a closer
    look confirmed each as a face. RetinaFace alone by default, as `anoncli detect`; `coverage="strict"` finds
    what `anonymize_image` covers."""
    key = (detector, threshold, coverage)
    if key not in _shared_finders:
        _shared_finders[key] = face_finder(detector, threshold, coverage=coverage)
    return _shared_finders[key].find(rgb8(_frame_checked(image)), Path("image"), 0)


def anonymize_image(
    image: np.ndarray,
    method: str | None = None,
    *,
    seed: int = 0,
    preserve: Sequence[str] = (),
    faces: Sequence[Face] | None = None,
    device: str = "auto",
) -> np.ndarray:
    """Anonymize every face of one image; returns a new array of the same shape and dtype."""
    anonymizer = _shared_anonymizer(method=method, preserve=tuple(preserve), device=device)
    return anonymizer.anonymize(image, faces, seed=seed).image
