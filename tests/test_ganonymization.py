"""`--method ganonymization`: a face drawn from FaceMesh's points alone; its framing, its inputs, its training."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
import torch

import anoncli
from anoncli.anonymizers import FaceCrop, StandIn, create_method
from anoncli.anonymizers.base import CORE_MASK_LEVEL
from anoncli.anonymizers.ganonymization import DEFAULT_WEIGHTS
from anoncli.attributes.base import ATTRIBUTE_SIZE
from anoncli.composites.mesh import CHIN, FOREHEAD, LEFT_EYE_OUTER, RIGHT_EYE_OUTER, FaceMesher
from anoncli.generative.conditioning import ERASED_CONTEXT, MESH_POINTS_ONLY, regrouped
from anoncli.generative.mesh_input import FACE_HEIGHT_SHARE, framed_points, mesh_frame, points_image
from anoncli.generative.weights import load_generator
from conftest import (
    SHARED_DATA,
    assert_anonymized,
    crop_of,
    load_rgb,
    read_report,
    scrambled,
    small_training_folder,
)

CELEBS = SHARED_DATA / "identities" / "celebs13"


@pytest.fixture(scope="module")
def method():
    return create_method("ganonymization", device="cpu")


def test_an_input_layer_is_regrouped_for_another_conditioning():
    """Groups both conditionings have keep their weights, a group declared `like` another starts from that
    group's mean, and the channels before and after the conditioning stay where they are."""
    before, after = 3, ATTRIBUTE_SIZE + 1
    weight = torch.randn(4, before + ERASED_CONTEXT.channels + after, 3, 3)
    mesh = regrouped(weight, ERASED_CONTEXT, MESH_POINTS_ONLY, before, after)
    assert mesh.shape == (4, before + 1 + after, 3, 3)
    keypoints = slice(before + 5, before + 10)
    assert torch.allclose(mesh[:, before], weight[:, keypoints].mean(dim=1))
    assert torch.equal(mesh[:, :before], weight[:, :before]) and torch.equal(mesh[:, -after:], weight[:, -after:])
    assert torch.equal(regrouped(weight, ERASED_CONTEXT, ERASED_CONTEXT, before, after), weight)
    back = regrouped(mesh, MESH_POINTS_ONLY, ERASED_CONTEXT, before, after)
    assert (back[:, before : before + ERASED_CONTEXT.channels] == 0).all(), "groups it never had start at zero"


def test_a_face_is_framed_eyes_level_at_one_size_whatever_the_photo_turns(astronaut, detector):
    """The astronaut's mesh framed on the photo and on the photo turned by 25°: the points land in the same
    places of the frame, eyes level, forehead to chin FACE_HEIGHT_SHARE of the side."""
    mesher, side = FaceMesher(), 64
    face = max(detector.detect(astronaut), key=lambda f: f.size)
    height, width = astronaut.shape[:2]
    turn = cv2.getRotationMatrix2D((width / 2, height / 2), 25, 1.0)
    turned = cv2.warpAffine(astronaut, turn, (width, height), borderMode=cv2.BORDER_REFLECT)
    turned_face = max(detector.detect(turned), key=lambda f: f.size)
    framed = []
    for image, box in ((astronaut, face.box), (turned, turned_face.box)):
        mesh = mesher.fit(image, box)
        assert mesh is not None
        points = framed_points(mesh, mesh_frame(mesh, side))
        eyes = points[LEFT_EYE_OUTER] - points[RIGHT_EYE_OUTER]
        assert abs(eyes[1]) < 1e-3 * side and eyes[0] > 0
        assert np.linalg.norm(points[FOREHEAD] - points[CHIN]) <= FACE_HEIGHT_SHARE * side * 1.001
        framed.append(points)
    assert np.abs(framed[0] - framed[1]).mean() < 0.01 * side
    image = points_image(framed[0], side)
    assert image.max() == 1.0 and image.min() == 0.0 and 100 < image.sum() <= len(framed[0])


def test_the_shipped_weights_draw_from_mesh_points_and_say_where_they_started():
    generator, manifest = load_generator(DEFAULT_WEIGHTS, "cpu")
    assert generator.conditioning == MESH_POINTS_ONLY and manifest["method"] == "ganonymization"
    assert manifest["training"]["starts_from"]["file"] == "deepprivacy64.pt"
    assert manifest["training"]["hyperparameters"]["attribute_loss"] == 0


def test_the_new_face_is_drawn_from_the_mesh_points_alone(method, detector):
    """With the mesh held fixed, randomizing every pixel of the erased face leaves the output bit-identical;
    another seed draws another face."""
    image = load_rgb(CELEBS / "img10.jpg").astype(np.uint8)
    face = max(detector.detect(image), key=lambda f: f.size)
    crop = crop_of(image, face, seed=5, context=method.context)
    (mesh,) = method.meshes([crop])
    assert mesh is not None
    (first,), (second,) = method.draw([crop], [mesh]), method.draw([scrambled(crop)], [mesh])
    assert not isinstance(first, StandIn) and first.shape == crop.pixels.shape
    assert np.array_equal(first, second)
    core = crop.mask >= CORE_MASK_LEVEL
    other = FaceCrop(crop.pixels, crop.mask, crop.box, crop.landmarks, seed=6)
    (third,) = method.draw([other], [mesh])
    assert np.abs(third[core].astype(float) - first[core]).mean() > 3


def test_faces_are_anonymized_and_faces_without_a_mesh_are_counted(tmp_path, cli):
    source = CELEBS / "selfie-many-people.jpg"
    result = cli("anonymize", source, "-o", tmp_path / "out", "-m", "ganonymization", "--report", tmp_path / "r.json")
    assert result.exit_code == 0, result.output
    file = read_report(tmp_path / "r.json")["files"][0]
    assert file["faces"] >= 6 and file["fallback_faces"] == 0
    assert 0 < file["stand_in_faces"] < file["faces"], "most faces are drawn from their mesh, the rest by deepprivacy"
    original, anonymized = load_rgb(source), load_rgb(tmp_path / "out" / source.name)
    found = anoncli.Anonymizer("ganonymization").detect(original.astype(np.uint8))
    confident = [face for face in found if face.score > 0.9]
    assert_anonymized(original.astype(float), anonymized.astype(float), confident, covered=found)


def test_training_starts_from_deepprivacy_and_resumes(tmp_path, cli):
    """`anoncli train ganonymization` on 16 faces: two steps from deepprivacy's weights, then one more resumed."""
    data = small_training_folder(tmp_path / "faces")
    out, work = tmp_path / "g.pt", tmp_path / "run"
    arguments = ["train", "ganonymization", "--data", data, "--out", out, "--work-dir", work, "--batch-size", "4"]
    result = cli(*arguments, "--steps", "2", "--survey", tmp_path / "survey.npz")
    assert result.exit_code == 0, result.output
    assert "started from weights/deepprivacy64.pt" in result.output
    manifest = json.loads(out.with_suffix(".json").read_text())
    assert manifest["training"]["steps"] == 2 and manifest["architecture"]["conditioning"] == MESH_POINTS_ONLY.name
    assert manifest["data"]["faces"] >= 12 and manifest["curve"][-1]["steps"] == 2
    result = cli(*arguments, "--steps", "1", "--survey", tmp_path / "survey.npz")
    assert result.exit_code != 0 and "--resume" in result.output
    result = cli(*arguments, "--steps", "1", "--survey", tmp_path / "survey.npz", "--resume")
    assert result.exit_code == 0, result.output
    assert "surveyed before" in result.output
    assert json.loads(out.with_suffix(".json").read_text())["training"]["steps"] == 3
    generator, _ = load_generator(out, "cpu")
    assert generator.conditioning == MESH_POINTS_ONLY
