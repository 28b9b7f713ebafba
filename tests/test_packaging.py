"""A regular (non-editable) install carries the shipped weights, so `--method deepprivacy` works from a wheel."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from conftest import ROOT, SAMPLE_DATA

SHIPPED = {"deepprivacy64.pt", "deepprivacy64.json", "attributes64.pt", "attributes64.json"}


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation", "-w", str(folder), "."],
        cwd=ROOT,
        check=True,
    )
    return next(folder.glob("anoncli-*.whl"))


def test_the_wheel_carries_the_weights_but_not_the_training_state(wheel: Path):
    names = {Path(name).name for name in zipfile.ZipFile(wheel).namelist() if name.startswith("anoncli/weights/")}
    assert names >= SHIPPED
    assert not any(name.endswith(".train.pt") for name in names)
    # Runs still in training (weights/experiments/) stay in the repository.
    assert not any("/experiments/" in name for name in zipfile.ZipFile(wheel).namelist())


def test_deepprivacy_runs_from_an_installed_wheel(wheel: Path, tmp_path: Path):
    target = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target", str(target), str(wheel)],
        check=True,
    )
    photo = SAMPLE_DATA / "astronaut.jpg"
    script = (
        "import sys; from anoncli.cli import run; from anoncli.generative import weights; "
        "print(weights.WEIGHTS_DIR, file=sys.stderr); run()"
    )
    result = subprocess.run(
        [sys.executable, "-c", script, "anonymize", str(photo), "-o", str(tmp_path / "out"), "--method", "deepprivacy"],
        env={**os.environ, "PYTHONPATH": str(target)},
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    assert str(target) in result.stderr.splitlines()[0]  # the wheel's copy, not the repository's
    assert (tmp_path / "out" / photo.name).exists()


def test_the_python_api_runs_from_an_installed_wheel(wheel: Path, tmp_path: Path):
    target = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target", str(target), str(wheel)],
        check=True,
    )
    script = (
        "import sys, numpy as np, anoncli; from PIL import Image; "
        "image = np.asarray(Image.open(sys.argv[1]).convert('RGB')); "
        "faces = anoncli.detect_faces(image); "
        "out = anoncli.anonymize_image(image, method='deepprivacy', seed=0, preserve=('age', 'gender')); "
        "outs = anoncli.Anonymizer(method='blur', device='auto').batch([image, image]); "
        "print(len(faces), out.shape == image.shape, len(outs), anoncli.__file__)"
    )
    result = subprocess.run(
        [sys.executable, "-c", script, str(SAMPLE_DATA / "astronaut.jpg")],
        env={**os.environ, "PYTHONPATH": str(target)},
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    count, same_shape, batch, location = result.stdout.split()
    assert (count, same_shape, batch) == ("1", "True", "2")
    assert location.startswith(str(target)), "the wheel's copy, not the repository's"
