"""Shared fixtures: real face images from sample_data/ and ../shared/data/, and pixel checks."""

from __future__ import annotations

import functools
import json
import shutil
import signal
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from anoncli.anonymizers import FaceCrop
from anoncli.anonymizers.base import CORE_MASK_LEVEL
from anoncli.attributes import Attributes
from anoncli.cli.main import app
from anoncli.detectors import create_detector
from anoncli.faces import Face
from anoncli.frames import face_crop
from anoncli.regions import face_region
from anoncli.training.dataset import held_out_labelled

ROOT = Path(__file__).resolve().parent.parent
SAMPLE_DATA = ROOT / "sample_data"
SHARED_DATA = ROOT.parent / "shared" / "data"
ANNOTATED = SHARED_DATA / "group_photos" / "annotated"
UTKFACE = SHARED_DATA / "utkface"


@functools.cache
def _shared_detector():
    return create_detector("retinaface", device="cpu")


@pytest.fixture(scope="session")
def detector():
    return _shared_detector()


def detector_faces(image: np.ndarray) -> list[Face]:
    """RetinaFace's faces in an RGB image (float or uint8)."""
    return _shared_detector().detect(np.asarray(image).astype(np.uint8))


@pytest.fixture(scope="session")
def astronaut() -> np.ndarray:
    return np.asarray(Image.open(SAMPLE_DATA / "astronaut.jpg").convert("RGB"))


def _invoker():
    runner = CliRunner()

    def invoke(*args: object):
        return runner.invoke(app, [str(a) for a in args], catch_exceptions=False)

    return invoke


@pytest.fixture
def cli():
    """Run `anoncli ARGS...` in-process; returns click's Result (exit_code, output)."""
    return _invoker()


@pytest.fixture(scope="module")
def cli_module():
    return _invoker()


def annotated_boxes() -> dict[str, np.ndarray]:
    """The 43 hand-drawn face boxes of dlib's example photos, x1 y1 x2 y2 per image."""
    truth: dict[str, np.ndarray] = {}
    for name in ("training.xml", "testing.xml"):
        for image in ET.parse(ANNOTATED / name).getroot().iter("image"):
            boxes = [
                [
                    float(b.get("left")),
                    float(b.get("top")),
                    float(b.get("left")) + float(b.get("width")),
                    float(b.get("top")) + float(b.get("height")),
                ]
                for b in image.iter("box")
            ]
            truth[image.get("file")] = np.array(boxes)
    return truth


def load_rgb(path: Path) -> np.ndarray:
    from PIL import ImageOps

    image = ImageOps.exif_transpose(Image.open(path))
    if image.mode.startswith("I;16"):  # PIL's own RGB conversion clips 16-bit values instead of scaling
        gray = np.asarray(image).astype(np.float32) / 257.0
        return np.repeat(gray[:, :, None], 3, axis=2)
    return np.asarray(image.convert("RGB")).astype(np.float32)


def face_core(face: Face, shrink: float = 0.6) -> tuple[slice, slice]:
    """The central part of a face box: it must always be replaced."""
    x1, y1, x2, y2 = face.box
    cx, cy, hw, hh = (x1 + x2) / 2, (y1 + y2) / 2, (x2 - x1) * shrink / 2, (y2 - y1) * shrink / 2
    return slice(int(cy - hh), int(cy + hh)), slice(int(cx - hw), int(cx + hw))


def far_from_faces(shape: tuple[int, int], faces: list[Face], distance: float = 1.5) -> np.ndarray:
    """Pixels farther than `distance` face sizes from every face centre."""
    ys, xs = np.mgrid[0 : shape[0], 0 : shape[1]]
    far = np.ones(shape, bool)
    for face in faces:
        cx, cy = (face.box[0] + face.box[2]) / 2, (face.box[1] + face.box[3]) / 2
        far &= np.hypot(xs - cx, ys - cy) > distance * face.size
    return far


def assert_anonymized(
    original: np.ndarray,
    result: np.ndarray,
    faces: list[Face],
    far_tolerance: float = 3.0,
    least_change: float = 8.0,
    covered: list[Face] = (),
):
    """Every face core changed clearly (mean |Δ| above `least_change`); the image far from faces and from what
    else was `covered` (the run's own detections) kept (up to re-encoding noise)."""
    assert original.shape == result.shape
    assert faces, "the test image must contain faces"
    for face in faces:
        core = face_core(face)
        change = np.abs(original[core] - result[core]).mean()
        assert change > least_change, f"face {face.box} barely changed (mean |Δ| = {change:.1f})"
    far = far_from_faces(original.shape[:2], [*faces, *covered])
    if far.any():
        assert np.abs(original[far] - result[far]).mean() < far_tolerance


def read_report(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def held_out_utkface(count: int) -> list[tuple[Path, Attributes]]:
    """Labelled UTKFace chips that training never used (the 5 % held out by file name), spread over all ages."""
    return held_out_labelled(UTKFACE, count)


def start_anoncli(*args) -> subprocess.Popen:
    """The installed `anoncli` as its own process, to be interrupted the way a user or a scheduler would."""
    anoncli = Path(sys.executable).parent / "anoncli"
    # As from a terminal: tests started in the background by a shell without job control inherit SIGINT
    # ignored, and a program that starts with SIGINT ignored rightly goes on ignoring Ctrl-C.
    return subprocess.Popen(
        [str(anoncli), *map(str, args)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )


def wait_for(condition: Callable[[], bool], process: subprocess.Popen, seconds: float = 120) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert process.poll() is None and time.monotonic() < deadline, "the run ended before the moment came"
        time.sleep(0.02)


@pytest.fixture(scope="session")
def ray_here():
    """A local Ray in the test process, started once: commands run with --backend ray join it (as they join
    any Ray already started in their process) instead of starting their own."""
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    yield ray
    ray.shutdown()


def scrambled(crop: FaceCrop, seed: int = 3, level: float = CORE_MASK_LEVEL) -> FaceCrop:
    """`crop` with every pixel its mask reaches `level` at (the erased core unless told) replaced by random
    colours."""
    pixels = crop.pixels.copy()
    core = crop.mask >= level
    pixels[core] = np.random.default_rng(seed).integers(0, 256, (int(core.sum()), 3))
    return FaceCrop(pixels, crop.mask, crop.box, crop.landmarks, crop.seed, crop.attributes)


def crop_of(image: np.ndarray, face: Face, seed: int, context: float, mask_scale: float = 1.1) -> FaceCrop:
    """The crop a method with `context` is handed for `face`, as the engine cuts it."""
    return face_crop(image, face_region(face, image.shape[1], image.shape[0], mask_scale, context), face, seed)


def small_training_folder(folder: Path) -> Path:
    """16 UTKFace photos copied into `folder` (a training run's --data)."""
    folder.mkdir(parents=True, exist_ok=True)
    for name in sorted(path.name for path in UTKFACE.glob("*.jpg"))[1000:1400:25]:
        shutil.copy(UTKFACE / name, folder)
    return folder
