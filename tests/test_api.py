"""The Python API, as a data pipeline uses it: arrays in, arrays out, the same guarantees as the CLI."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

import anoncli
from anoncli.anonymizers import Method
from anoncli.io.images import read_picture
from conftest import ANNOTATED, ROOT, SAMPLE_DATA, assert_anonymized, detector_faces


@pytest.fixture(scope="module")
def group() -> np.ndarray:
    return np.asarray(Image.open(ANNOTATED / "2008_002470.jpg").convert("RGB"))


def test_detect_faces_finds_the_faces(astronaut, group):
    faces = anoncli.detect_faces(astronaut)
    assert len(faces) == 1 and faces[0].score > 0.9 and len(faces[0].landmarks) == 5
    assert len(anoncli.detect_faces(group)) >= 5


def test_anonymize_image_replaces_every_face_and_keeps_the_input(group):
    before = group.copy()
    out = anoncli.anonymize_image(group, method="blur")
    assert out.shape == group.shape and out.dtype == np.uint8 and out is not group
    assert np.array_equal(group, before), "the input array is never modified"
    assert_anonymized(group.astype(np.float32), out.astype(np.float32), detector_faces(group))


def test_deepprivacy_with_preserve_is_seeded(astronaut):
    first = anoncli.anonymize_image(astronaut, method="deepprivacy", seed=0, preserve=("age", "gender"))
    again = anoncli.anonymize_image(astronaut, method="deepprivacy", seed=0, preserve=("age", "gender"))
    other = anoncli.anonymize_image(astronaut, method="deepprivacy", seed=1, preserve=("age", "gender"))
    assert np.array_equal(first, again), "same seed, same face"
    assert not np.array_equal(first, other), "another seed, another face"
    assert_anonymized(astronaut.astype(np.float32), first.astype(np.float32), detector_faces(astronaut))


def test_the_api_gives_what_the_cli_writes(tmp_path, cli, group):
    """One pipeline behind both: a PNG through the CLI and its pixels through the API come out identical."""
    Image.fromarray(group).save(tmp_path / "group.png")
    assert cli("anonymize", tmp_path / "group.png", "-o", tmp_path / "out", "-m", "pixelate").exit_code == 0
    written = read_picture(tmp_path / "out" / "group.png").frames[0]
    anonymizer = anoncli.Anonymizer(method="pixelate", device="auto")
    assert np.array_equal(anonymizer.anonymize(group, name="group.png").image, written)


def test_an_anonymizer_loads_once_and_batches(astronaut, group):
    anonymizer = anoncli.Anonymizer(method="mask", device="auto")
    outs = anonymizer.batch([astronaut, group, np.zeros((50, 60, 3), np.uint8)])
    assert [out.shape for out in outs] == [astronaut.shape, group.shape, (50, 60, 3)]
    assert np.array_equal(outs[0], anonymizer(astronaut))
    assert np.array_equal(outs[2], np.zeros((50, 60, 3), np.uint8)), "no face, nothing changed"


def test_gray_and_rgba_keep_their_layout(astronaut):
    anonymizer = anoncli.Anonymizer(method="blur")
    gray = np.asarray(Image.fromarray(astronaut).convert("L"))
    assert anonymizer(gray).shape == gray.shape
    rgba = np.dstack([astronaut, np.full(astronaut.shape[:2], 200, np.uint8)])
    out = anonymizer(rgba)
    assert out.shape == rgba.shape and np.array_equal(out[:, :, 3], rgba[:, :, 3])


class Exploding(Method):
    name = "exploding"

    def anonymize(self, faces):
        raise RuntimeError("out of memory")


def test_a_failing_method_fails_closed(astronaut):
    anonymizer = anoncli.Anonymizer(method="blur")
    anonymizer.method = Exploding()
    result = anonymizer.anonymize(astronaut)
    assert result.fallback_faces == 1 and "out of memory" in result.notes[0]
    face = result.faces[0]
    x1, y1, x2, y2 = (int(v) for v in face.box)
    core = result.image[y1 + (y2 - y1) // 4 : y2 - (y2 - y1) // 4, x1 + (x2 - x1) // 4 : x2 - (x2 - x1) // 4]
    assert core.max() == 0, "the face comes back under a solid mask"


def test_faces_given_are_used(astronaut):
    anonymizer = anoncli.Anonymizer(method="mask")
    faces = anonymizer.detect(astronaut)
    assert np.array_equal(anonymizer(astronaut, faces=faces), anonymizer(astronaut))
    assert np.array_equal(anonymizer(astronaut, faces=[]), astronaut)


@pytest.mark.parametrize(
    ("image", "message"),
    [
        ([[1, 2], [3, 4]], "numpy array"),
        (np.zeros((10, 10, 3), np.float32), "uint8"),
        (np.zeros((10, 10, 5), np.uint8), "shape"),
        (np.zeros((0, 10, 3), np.uint8), "no pixels"),
    ],
)
def test_bad_images_get_clear_errors(image, message):
    with pytest.raises(anoncli.InputError, match=message):
        anoncli.anonymize_image(image, method="blur")


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"method": "smudge"}, "unknown method"),
        ({"method": "blur", "preserve": ("age",)}, "cannot preserve"),
        ({"preserve": ("height",)}, "unknown attribute"),
        ({"detector": "eyeball"}, "unknown detector"),
        ({"device": "tpu"}, "device"),
    ],
)
def test_bad_options_get_clear_errors(options, message):
    with pytest.raises(anoncli.InputError, match=message):
        anoncli.Anonymizer(**options)


def test_preserve_without_a_method_picks_the_one_that_can():
    assert anoncli.Anonymizer(preserve=("gender",)).method_name == "deepprivacy"
    assert anoncli.Anonymizer().method_name == "blur"


def test_the_package_exports_the_api():
    assert {"Anonymizer", "anonymize_image", "detect_faces", "InputError", "Face"} <= set(anoncli.__all__)


def test_the_readme_python_example_runs(tmp_path, monkeypatch):
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    example = text.split("```python\n", 1)[1].split("```", 1)[0]
    (tmp_path / "sample_data").symlink_to(SAMPLE_DATA)
    monkeypatch.chdir(tmp_path)
    exec(compile(example, "README.md", "exec"), {})
    assert Image.open(tmp_path / "astronaut_anonymized.png").size == (512, 512)
