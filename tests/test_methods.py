"""The method interface: masks, strength scaled to face size, paste-back, and failing closed."""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from anoncli.anonymizers import METHODS, FaceCrop, Method, anonymize_fail_closed, create_method
from anoncli.faces import Face
from anoncli.frames import face_crop
from anoncli.paste import Compositor
from anoncli.regions import face_region


def crops_of(image: np.ndarray, faces: list[Face], context: float = 1.0) -> list[FaceCrop]:
    height, width = image.shape[:2]
    return [face_crop(image, face_region(f, width, height, 1.3, context), f, seed) for seed, f in enumerate(faces)]


def test_mask_covers_the_scaled_ellipse_fully_and_fades_outside_it():
    face = Face((100, 100, 200, 220), 1.0)
    region = face_region(face, 400, 400, mask_scale=1.3, context=1.0)
    mask = region.mask
    centre = (160 - region.y1, 150 - region.x1)
    assert mask[centre] == 1.0
    # On the ellipse itself (1.3 × half the box height above the centre) the face is still fully covered.
    assert mask[round(160 - 1.3 * 60) - region.y1 + 1, 150 - region.x1] == 1.0
    assert mask[0, 0] == 0.0 and 0.0 < mask.mean() < 1.0


def test_region_is_clipped_at_the_image_border():
    region = face_region(Face((-10, -10, 40, 50), 1.0), 100, 80, 1.3, 2.0)
    assert (region.x1, region.y1) == (0, 0) and region.mask.shape == (region.y2, region.x2)


def test_blur_and_pixelate_strength_grows_with_face_size(astronaut, detector):
    face = detector.detect(astronaut)[0]
    small_image = cv2.resize(astronaut, (128, 128), interpolation=cv2.INTER_AREA)
    small_face = detector.detect(small_image)[0]
    for name in ("blur", "pixelate"):
        method = create_method(name)
        detail = []
        for image, found in ((astronaut, face), (small_image, small_face)):
            crop = crops_of(image, [found], method.context)[0]
            out = method.anonymize([crop])[0].astype(np.float32)
            core = crop.mask >= 0.99
            # Detail left per face: gradient energy relative to face size stays alike at both scales.
            gradient = np.abs(np.diff(out, axis=1))[core[:, 1:]].mean() * crop.face_size
            detail.append(gradient)
        assert 0.4 < detail[0] / detail[1] < 2.5, (name, detail)


class Broken(Method):
    name = "broken"

    def anonymize(self, faces: Sequence[FaceCrop]) -> list[np.ndarray]:
        raise RuntimeError("out of memory")


class Lazy(Method):
    name = "lazy"

    def anonymize(self, faces: Sequence[FaceCrop]) -> list[np.ndarray]:
        return [face.pixels.copy() for face in faces]


def test_a_failing_or_lazy_method_gets_solid_masks_and_says_why(astronaut, detector):
    crops = crops_of(astronaut, detector.detect(astronaut))
    for method, phrase in ((Broken(), "out of memory"), (Lazy(), "unchanged")):
        (replacement,) = anonymize_fail_closed(method, crops)
        assert phrase in replacement.fallback_reason
        assert (replacement.pixels == 0).all()


def test_every_registered_method_changes_a_real_face(astronaut, detector):
    crops = crops_of(astronaut, detector.detect(astronaut))
    for name in METHODS.names():
        (replacement,) = anonymize_fail_closed(create_method(name), crops)
        assert replacement.fallback_reason is None, name


def test_overlapping_faces_never_uncover_each_other():
    """A later face's feathered edge must not paste original pixels back over an earlier face."""
    rng = np.random.default_rng(0)
    frame = rng.integers(0, 256, (200, 300, 3), dtype=np.uint8)
    original = frame.copy()
    first, second = Face((60, 60, 120, 130), 1.0), Face((110, 60, 170, 130), 1.0)
    compositor = Compositor(frame)
    for face, colour in ((first, 0), (second, 255)):
        region = face_region(face, 300, 200, 1.3, 1.0)
        # A method that fills its own ellipse but hands back the original pixels around it.
        replacement = np.where(region.mask[:, :, None] >= 0.99, colour, original[region.slices]).astype(np.uint8)
        compositor.paste(region, replacement)
    core_of_first = face_region(first, 300, 200, 1.3, 1.0)
    covered = core_of_first.mask >= 0.99
    kept_original = frame[core_of_first.slices][covered] == original[core_of_first.slices][covered]
    assert kept_original.all(axis=1).mean() < 0.01
