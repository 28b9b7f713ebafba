"""`--method stargan`: the face itself translated to another gender and age group. It sees the face, and says so."""

from __future__ import annotations

import json

import numpy as np
import pytest

import anoncli
from anoncli.anonymizers import FaceCrop, StandIn, create_method
from anoncli.anonymizers.base import CORE_MASK_LEVEL
from anoncli.anonymizers.stargan import DEFAULT_WEIGHTS, flipped
from anoncli.attributes.base import Attributes
from anoncli.generative.conditioning import FACE_PIXELS
from anoncli.generative.weights import load_generator
from conftest import SHARED_DATA, assert_anonymized, crop_of, load_rgb, read_report, scrambled, small_training_folder

CELEBS = SHARED_DATA / "identities" / "celebs13"


@pytest.fixture(scope="module")
def method():
    return create_method("stargan", device="cpu")


def test_flips_turn_the_asked_attributes_and_keep_the_others():
    woman_in_her_twenties = Attributes("female", "20-29")
    assert flipped(woman_in_her_twenties, ("gender", "age"), seed=0) == Attributes("male", "40+")
    assert flipped(woman_in_her_twenties, ("gender",), seed=0) == Attributes("male", "20-29")
    assert flipped(Attributes("male", "40+"), ("age",), seed=0) == Attributes("male", "20-29")
    unknown = [flipped(Attributes(), ("gender",), seed) for seed in range(20)]
    assert {a.gender for a in unknown} == {"male", "female"}, "an unknown gender is drawn by the seed"
    assert unknown == [flipped(Attributes(), ("gender",), seed) for seed in range(20)]


def test_it_is_labelled_as_seeing_the_face_and_does(method, detector, cli, tmp_path):
    """Unlike every other method, scrambling the face changes stargan's output: it reads the face. Its --help
    and its report say so."""
    image = load_rgb(CELEBS / "img10.jpg").astype(np.uint8)
    face = max(detector.detect(image), key=lambda f: f.size)
    crop = crop_of(image, face, 5, method.context)
    crop = FaceCrop(crop.pixels, crop.mask, crop.box, crop.landmarks, crop.seed, Attributes("female", "30-39"))
    (mesh,) = method.meshes([crop])
    assert mesh is not None
    (first,), (second,) = method.draw([crop], [mesh]), method.draw([scrambled(crop)], [mesh])
    core = crop.mask >= CORE_MASK_LEVEL
    assert not isinstance(first, StandIn)
    assert np.abs(first[core].astype(float) - second[core]).mean() > 3
    assert method.sees_face and not create_method("deepprivacy").sees_face
    result = cli("anonymize", "--help")
    assert "stargan SEES THE FACE" in " ".join(result.output.split())
    out = tmp_path / "out"
    result = cli("anonymize", CELEBS / "img10.jpg", "-o", out, "-m", "stargan", "--report", tmp_path / "r.json")
    assert result.exit_code == 0, result.output
    settings = read_report(tmp_path / "r.json")["settings"]
    assert settings["sees_face"] is True and settings["flip"] == ["gender", "age"]


def test_the_shipped_weights_translate_the_face_and_say_where_they_started():
    generator, manifest = load_generator(DEFAULT_WEIGHTS, "cpu")
    assert generator.conditioning == FACE_PIXELS and manifest["method"] == "stargan"
    assert manifest["training"]["starts_from"]["file"] == "deepprivacy64.pt"
    assert manifest["training"]["hyperparameters"]["cycle"] > 0


def test_every_face_is_changed_and_flip_is_checked(tmp_path, cli):
    source = CELEBS / "selfie-many-people.jpg"
    result = cli(
        "anonymize",
        source,
        "-o",
        tmp_path / "out",
        "-m",
        "stargan",
        "--flip",
        "gender",
        "--report",
        tmp_path / "r.json",
    )
    assert result.exit_code == 0, result.output
    file = read_report(tmp_path / "r.json")["files"][0]
    assert file["faces"] >= 6 and file["fallback_faces"] == 0
    original, anonymized = load_rgb(source), load_rgb(tmp_path / "out" / source.name)
    found = anoncli.Anonymizer("stargan").detect(original.astype(np.uint8))
    confident = [face for face in found if face.score > 0.9]
    # Translated, not erased: each face changes, though less than a drawn face would.
    assert_anonymized(original.astype(float), anonymized.astype(float), confident, least_change=4, covered=found)
    for arguments, message in (
        (("-m", "stargan", "--flip", "nose"), "--flip: unknown attribute nose"),
        (("-m", "blur", "--flip", "gender"), "cannot flip gender"),
    ):
        result = cli("anonymize", source, "-o", tmp_path / "refused", *arguments)
        assert result.exit_code == 2 and message in " ".join(result.output.split()), result.output


def test_training_starts_from_deepprivacy_and_resumes(tmp_path, cli):
    """`anoncli train stargan` on 16 faces: two steps from deepprivacy's weights, then one more resumed."""
    data = small_training_folder(tmp_path / "faces")
    out, work, survey = tmp_path / "s.pt", tmp_path / "run", tmp_path / "survey.npz"
    arguments = ["train", "stargan", "--data", data, "--out", out, "--work-dir", work, "--batch-size", "4"]
    result = cli(*arguments, "--steps", "2", "--survey", survey)
    assert result.exit_code == 0, result.output
    assert "started from weights/deepprivacy64.pt" in result.output
    manifest = json.loads(out.with_suffix(".json").read_text())
    assert manifest["training"]["steps"] == 2 and manifest["architecture"]["conditioning"] == FACE_PIXELS.name
    assert "cycle" in manifest["training"]["losses"] and "cycle" in manifest["curve"][-1]
    result = cli(*arguments, "--steps", "1", "--survey", survey, "--resume")
    assert result.exit_code == 0, result.output
    assert json.loads(out.with_suffix(".json").read_text())["training"]["steps"] == 3
