"""`--method ciagan`: the erased face drawn as a chosen fake identity; its identity judge, inputs and training."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import anoncli
from anoncli.anonymizers import StandIn, create_method
from anoncli.anonymizers.base import CORE_MASK_LEVEL
from anoncli.anonymizers.ciagan import DEFAULT_WEIGHTS
from anoncli.generative.conditioning import ERASED_LANDMARKS
from anoncli.generative.weights import load_generator, read_manifest
from anoncli.training.identities import load_judge, pseudo_identities
from conftest import (
    SAMPLE_DATA,
    SHARED_DATA,
    UTKFACE,
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
    return create_method("ciagan", device="cpu")


def test_pseudo_identities_are_seeded_clusters_on_the_sphere():
    rng = np.random.default_rng(0)
    groups = np.repeat(np.eye(3, 128), 20, axis=0) + rng.normal(0, 0.05, (60, 128))
    lengths = rng.uniform(0.5, 2, (60, 1))
    centres, assigned = pseudo_identities(groups * lengths, 3, seed=1)
    assert np.allclose(np.linalg.norm(centres, axis=1), 1, atol=1e-5)
    assert sorted(np.bincount(assigned).tolist()) == [20, 20, 20], "the three groups, whatever their lengths"
    assert len(set(assigned[:20])) == len(set(assigned[20:40])) == len(set(assigned[40:])) == 1
    again, _ = pseudo_identities(groups * lengths, 3, seed=1)
    assert np.array_equal(again, centres)


def test_the_shipped_weights_and_judge_belong_together():
    generator, manifest = load_generator(DEFAULT_WEIGHTS, "cpu")
    assert generator.conditioning == ERASED_LANDMARKS and manifest["method"] == "ciagan"
    assert manifest["training"]["starts_from"]["file"] == "deepprivacy64.pt"
    judge_file = DEFAULT_WEIGHTS.with_name(manifest["training"]["identity_judge"]["file"])
    judge = load_judge(judge_file, "cpu")
    assert judge.manifest["sha256"] == manifest["training"]["identity_judge"]["sha256"]
    assert judge.identities == generator.identities == manifest["architecture"]["identities"]
    assert read_manifest(judge_file)["metrics"]["held_out_cosine"] > 0.5


def test_the_new_face_never_sees_the_erased_face_and_follows_the_identity(method, detector):
    """With the mesh held fixed, randomizing every pixel of the erased face leaves the output bit-identical;
    the identity asked for reaches the face (weakly, at the shipped weights' training: see the manifest)."""
    image = load_rgb(CELEBS / "img10.jpg").astype(np.uint8)
    face = max(detector.detect(image), key=lambda f: f.size)
    crop = crop_of(image, face, seed=5, context=method.context)
    (mesh,) = method.meshes([crop])
    assert mesh is not None
    (first,), (second,) = method.draw([crop], [mesh]), method.draw([scrambled(crop)], [mesh])
    assert not isinstance(first, StandIn) and first.shape == crop.pixels.shape
    assert np.array_equal(first, second)
    core = crop.mask >= CORE_MASK_LEVEL
    _, identity = method.codes([crop])
    assert identity.argmax().item() == 5 % method.identities
    other = create_method("ciagan", identity=6 % method.identities)
    (third,) = other.draw([crop], [mesh])
    assert np.abs(third[core].astype(float) - first[core]).mean() > 0.1


def test_faces_are_anonymized_and_identity_is_checked(tmp_path, cli):
    source = CELEBS / "selfie-many-people.jpg"
    out, report = tmp_path / "out", tmp_path / "r.json"
    result = cli("anonymize", source, "-o", out, "-m", "ciagan", "--identity", "7", "--report", report)
    assert result.exit_code == 0, result.output
    data = read_report(report)
    file = data["files"][0]
    assert data["settings"]["identity"] == 7 and data["settings"]["sees_face"] is False
    assert file["faces"] >= 6 and file["fallback_faces"] == 0
    assert 0 < file["stand_in_faces"] < file["faces"]
    original, anonymized = load_rgb(source), load_rgb(out / source.name)
    found = anoncli.Anonymizer("ciagan").detect(original.astype(np.uint8))
    confident = [face for face in found if face.score > 0.9]
    assert_anonymized(original.astype(float), anonymized.astype(float), confident, covered=found)
    for arguments, message in (
        (("-m", "ciagan", "--identity", "100"), "draws identities 0 to 99"),
        (("-m", "blur", "--identity", "3"), "draws no chosen identity"),
        (("-m", "blur", "--weights", DEFAULT_WEIGHTS), "blur is not trained"),
        (("-m", "stargan", "--weights", DEFAULT_WEIGHTS), "they are not stargan's"),
    ):
        result = cli("anonymize", source, "-o", tmp_path / "refused", *arguments)
        assert result.exit_code == 2 and message in " ".join(result.output.split()), result.output


def test_video_keeps_one_identity_per_person(tmp_path, cli):
    video = SAMPLE_DATA / "videos" / "walking.mp4"
    result = cli("video", video, "-o", tmp_path / "out", "-m", "ciagan", "--report", tmp_path / "r.json")
    assert result.exit_code == 0, result.output
    file = read_report(tmp_path / "r.json")["files"][0]
    assert file["status"] == "ok" and file["faces"] > 0 and file["fallback_faces"] == 0


def test_training_builds_its_judge_starts_from_deepprivacy_and_resumes(tmp_path, cli):
    """`anoncli train ciagan` on 16 faces: dlib embeds them, 4 pseudo-identities and a judge are made, two
    steps train from deepprivacy's weights, then one more resumed."""
    data = small_training_folder(tmp_path / "faces")
    out, work, survey = tmp_path / "c.pt", tmp_path / "run", tmp_path / "survey.npz"
    arguments = ["train", "ciagan", "--data", data, "--out", out, "--work-dir", work, "--batch-size", "4"]
    arguments += ["--survey", survey, "--identities", "4", "--embedded-faces", "16"]
    result = cli(*arguments, "--steps", "2")
    assert result.exit_code == 0, result.output
    assert "identity judge written" in result.output and "started from weights/deepprivacy64.pt" in result.output
    manifest = json.loads(out.with_suffix(".json").read_text())
    assert manifest["training"]["steps"] == 2 and manifest["architecture"]["identities"] == 4
    assert "identity cross-entropy" in manifest["training"]["losses"] and "identity_pull" in manifest["curve"][-1]
    judge = load_judge(out.with_name("c_identities.pt"), "cpu")
    assert judge.identities == 4 and torch.allclose(judge.centres.norm(dim=1), torch.ones(4), atol=1e-3)
    result = cli(*arguments, "--steps", "1", "--resume")
    assert result.exit_code == 0, result.output
    assert "identity judge written" not in result.output
    assert json.loads(out.with_suffix(".json").read_text())["training"]["steps"] == 3
    # Every export is kept, and weights of one's own are used with --weights.
    kept = sorted(path.name for path in (work / "snapshots").glob("*.pt"))
    assert kept == ["c-step0000002.pt", "c-step0000003.pt"]
    photo, report = sorted(data.glob("*.jpg"))[0], tmp_path / "r.json"
    own = work / "snapshots" / kept[0]
    result = cli("anonymize", photo, "-o", tmp_path / "own", "-m", "ciagan", "--weights", own, "--report", report)
    assert result.exit_code == 0, result.output
    written = read_report(report)
    assert written["settings"]["weights"] == str(own) and written["files"][0]["faces"] == 1
    assert not np.array_equal(load_rgb(photo), load_rgb(tmp_path / "own" / photo.name))


def test_the_judge_pulls_towards_the_asked_identity_and_pushes_from_the_source(detector):
    """On real faces cut in their mesh frames: the pull is least towards the centre nearest the face's own
    reading, and the push counts only similarity to the source beyond the margin."""
    from anoncli.composites.mesh import FaceMesher
    from anoncli.generative.mesh_input import into_frame, mesh_frame
    from anoncli.generative.sampling import one_hot_identities

    judge = load_judge(DEFAULT_WEIGHTS.with_name("ciagan64_identities.pt"), "cpu")
    mesher, crops = FaceMesher(), []
    for name in sorted(path.name for path in UTKFACE.glob("*.jpg"))[:40:10]:
        image = load_rgb(UTKFACE / name).astype(np.uint8)
        mesh = mesher.fit(image, max(detector.detect(image), key=lambda f: f.size).box)
        pixels, valid = into_frame(image, mesh_frame(mesh, 64), 64)
        crops.append(pixels * valid[..., None])
    faces = torch.from_numpy(np.stack(crops)).permute(0, 3, 1, 2).float() / 127.5 - 1
    with torch.no_grad():
        read = judge.embedder(faces)
    nearest = (read @ judge.centres.T).argmax(1).tolist()
    farthest = (read @ judge.centres.T).argmin(1).tolist()
    with torch.no_grad():
        near_pull, _ = judge.loss(faces, faces, one_hot_identities(nearest, judge.identities, "cpu"), 1.0)
        far_pull, no_push = judge.loss(faces, faces, one_hot_identities(farthest, judge.identities, "cpu"), 1.0)
        _, push = judge.loss(faces, faces, one_hot_identities(nearest, judge.identities, "cpu"), 0.5)
    assert near_pull < far_pull and no_push < 1e-6
    assert torch.isclose(push, torch.tensor(0.5), atol=1e-3), "a face is its own source: cosine 1, beyond 0.5 by 0.5"
