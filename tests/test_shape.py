"""`--method shape --keep PARTS`: the parts not kept take an average face's shape; the head is inpainted."""

from __future__ import annotations

import json

import numpy as np
import pytest

from anoncli.anonymizers import FaceCrop, StandIn, create_method
from anoncli.composites.mesh import FACE_PARTS, MESH_POINTS
from anoncli.frames import face_crop
from anoncli.regions import face_region
from conftest import SAMPLE_DATA, SHARED_DATA, load_rgb, read_report, scrambled, small_training_folder

CELEBS = SHARED_DATA / "identities" / "celebs13"


@pytest.fixture(scope="module")
def face_and_mesh(detector):
    method = create_method("shape", device="cpu")
    image = load_rgb(CELEBS / "img10.jpg").astype(np.uint8)
    face = max(detector.detect(image), key=lambda f: f.size)
    crop = face_crop(image, face_region(face, image.shape[1], image.shape[0], 1.1, method.context), face, 5)
    (mesh,) = method.meshes([crop])
    assert mesh is not None
    return crop, mesh


def test_kept_parts_stay_the_faces_and_the_rest_takes_the_average_shape(face_and_mesh):
    crop, mesh = face_and_mesh
    method = create_method("shape", device="cpu", keep=("eyes", "mouth"))
    reshaped = method.reshaped(crop.seed, mesh)
    kept = list(FACE_PARTS["eyes"] + FACE_PARTS["mouth"])
    assert np.abs(reshaped[kept] - mesh[kept]).max() < 1e-3
    others = np.setdiff1d(np.arange(MESH_POINTS), kept)
    moved = np.linalg.norm(reshaped[others, :2] - mesh[others, :2], axis=1) / crop.face_size
    assert moved.max() > 0.01, "the nose, brows and outline are not the original's"
    assert moved.mean() < 0.1, "posed like the face: still on it"
    reshaping_all = create_method("shape", device="cpu")
    everything = reshaping_all.reshaped(crop.seed, mesh)
    assert np.linalg.norm(everything[kept, :2] - mesh[kept, :2], axis=1).mean() > 0.005 * crop.face_size
    # A face without a mesh of its own has no parts to keep: one is placed by its landmarks only when none are.
    assert method.template is None and reshaping_all.template is not None


def test_the_new_face_is_drawn_from_its_new_shape_and_the_inpainted_surroundings_only(face_and_mesh):
    """With the mesh held fixed, randomizing every pixel of the erased face leaves the output bit-identical,
    the inpainted head region included."""
    crop, mesh = face_and_mesh
    method = create_method("shape", device="cpu", keep=("eyes",))
    (first,), (second,) = method.draw([crop], [mesh]), method.draw([scrambled(crop)], [mesh])
    assert not isinstance(first, StandIn)
    assert np.array_equal(first, second)


def test_the_inpainted_head_holds_nothing_of_the_face_even_where_the_photo_cuts_it(face_and_mesh):
    """Inpainting fills the whole region the mask reaches from the pixels around it: scrambling that region
    changes nothing, for a whole face and for one cut by the crop's left edge."""
    crop, _ = face_and_mesh
    cut = crop.pixels.shape[1] // 3
    x1, y1, x2, y2 = crop.box
    cut_face = FaceCrop(crop.pixels[:, cut:].copy(), crop.mask[:, cut:].copy(), (x1 - cut, y1, x2 - cut, y2), None, 5)
    inpainting = create_method("shape", device="cpu").surroundings
    for face in (crop, cut_face):
        (filled,), (again,) = inpainting.anonymize([face]), inpainting.anonymize([scrambled(face, level=1e-6)])
        assert np.array_equal(filled, again)
        assert np.abs(filled[face.mask >= 0.99].astype(float) - face.pixels[face.mask >= 0.99]).mean() > 10


def test_keep_is_checked_and_reported(tmp_path, cli):
    photo = SHARED_DATA / "group_photos" / "annotated" / "2008_001009.jpg"
    result = cli("anonymize", photo, "-o", tmp_path / "x", "-m", "blur", "--keep", "eyes")
    assert result.exit_code == 2 and "use shape" in result.output
    result = cli("anonymize", photo, "-o", tmp_path / "x", "-m", "shape", "--keep", "ears")
    assert result.exit_code == 2 and "unknown face part ears" in result.output
    arguments = ["-m", "shape", "--keep", "eyes,mouth", "--report", tmp_path / "r.json"]
    result = cli("anonymize", photo, "-o", tmp_path / "out", *arguments)
    assert result.exit_code == 0, result.output
    report = read_report(tmp_path / "r.json")
    assert report["settings"]["keep"] == ["eyes", "mouth"] and report["files"][0]["faces"] >= 1
    for asked, said in (("blur+eyes", "use shape"), ("shape+ears", "unknown ears")):
        result = cli("evaluate", photo.parent, "--method", f"none,{asked}")
        assert result.exit_code == 2 and said in result.output, result.output


def test_a_video_is_reshaped(tmp_path, cli):
    result = cli(
        "video", SAMPLE_DATA / "videos" / "walking.mp4", "-o", tmp_path / "video", "-m", "shape", "--keep", "mouth",
        "--report", tmp_path / "video.json", "--quiet",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    file = read_report(tmp_path / "video.json")["files"][0]
    assert file["status"] == "ok" and file["faces"] > 0 and file["fallback_faces"] == 0


def test_its_face_generator_is_trained_by_train_shape_and_used_with_weights(tmp_path, cli):
    """`anoncli train shape` trains the generator of the third stage (ganonymization's); `--weights` draws with
    it."""
    data = small_training_folder(tmp_path / "faces")
    out, report = tmp_path / "s.pt", tmp_path / "r.json"
    arguments = ["train", "shape", "--data", data, "--out", out, "--work-dir", tmp_path / "run", "--batch-size", "4"]
    result = cli(*arguments, "--steps", "1", "--survey", tmp_path / "survey.npz")
    assert result.exit_code == 0, result.output
    assert json.loads(out.with_suffix(".json").read_text())["method"] == "ganonymization"
    photo = sorted(data.glob("*.jpg"))[0]
    result = cli("anonymize", photo, "-o", tmp_path / "out", "-m", "shape", "--weights", out, "--report", report)
    assert result.exit_code == 0, result.output
    written = read_report(report)
    assert written["settings"]["weights"] == str(out) and written["files"][0]["faces"] == 1
