"""`anoncli train deepprivacy`: a real (tiny) run on UTKFace chips that exports, resumes and frames its
training faces the way inference frames faces in photos."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from anoncli.faces import box_iou
from anoncli.training.deepprivacy import (
    PHOTO_BOX_ASPECT,
    PHOTO_BOX_RISE,
    PHOTO_BOX_SCALE,
    photo_box,
    stretched_edges,
)
from conftest import SHARED_DATA, load_rgb

UTKFACE = SHARED_DATA / "utkface"
UNANNOTATED = SHARED_DATA / "group_photos" / "unannotated"


def test_photo_boxes_drawn_from_landmarks_match_the_detector_on_photos_it_was_not_measured_on(detector):
    """PHOTO_BOX_* were measured on celebs13 and the annotated group photos; on other photos the box drawn
    from a face's landmarks overlaps the box RetinaFace gives it."""
    overlaps, rng = [], np.random.default_rng(0)
    for path in sorted(UNANNOTATED.glob("*.jpg"))[:8]:
        for face in detector.detect(load_rgb(path).astype(np.uint8)):
            if face.size >= 40 and face.landmarks is not None:
                drawn = photo_box(np.asarray(face.landmarks, np.float32), rng)
                overlaps.append(box_iou(np.array(drawn), np.array([face.box]))[0])
    print(f"{len(overlaps)} faces: median IoU {np.median(overlaps):.2f}")
    assert len(overlaps) >= 10
    assert np.median(overlaps) >= 0.7
    assert PHOTO_BOX_SCALE[0] < PHOTO_BOX_SCALE[1] and PHOTO_BOX_RISE[0] < PHOTO_BOX_RISE[1]
    assert PHOTO_BOX_ASPECT[0] < PHOTO_BOX_ASPECT[1]


def test_past_the_chip_the_training_target_continues_its_edge_rows():
    """Where a photo-like face box reaches past a chip, the target there is the chip's edge stretched
    outwards (forehead and hair continued), never black."""
    chip = load_rgb(sorted(UTKFACE.glob("*.jpg"))[0]).astype(np.uint8)
    crop, valid = np.zeros((300, 300, 3), np.uint8), np.zeros((300, 300), np.uint8)
    crop[60:260, 50:250], valid[60:260, 50:250] = chip, 1
    stretched = stretched_edges(crop, valid)
    assert np.array_equal(stretched[60:260, 50:250], chip)
    assert np.array_equal(stretched[:60, 50:250], np.broadcast_to(chip[0], (60, 200, 3)))
    assert np.array_equal(stretched[100, 250:], np.broadcast_to(chip[40, -1], (50, 3)))


@pytest.fixture(scope="module")
def chips(tmp_path_factory):
    folder = tmp_path_factory.mktemp("chips")
    for path in sorted(UTKFACE.glob("*.jpg"))[::600][:40]:
        shutil.copy(path, folder / path.name)
    shutil.copy(UTKFACE / "labels.csv", folder / "labels.csv")
    return folder


def test_a_short_run_exports_weights_and_a_killed_run_resumes(cli, chips, tmp_path):
    out, work = tmp_path / "dp.pt", tmp_path / "work"
    common = ("--data", chips, "--out", out, "--work-dir", work, "--prepared", tmp_path / "prepared")
    first = cli("train", "deepprivacy", *common, "--steps", 2, "--batch-size", 4, "--device", "cpu", "-q")
    assert first.exit_code == 0, first.output
    manifest = json.loads(out.with_suffix(".json").read_text())
    assert manifest["training"]["steps"] == 2
    assert manifest["training"]["hyperparameters"]["photo_boxes"] > 0
    assert out.with_suffix(".train.pt").exists() and (work / "log.jsonl").exists()

    again = cli("train", "deepprivacy", *common, "--steps", 1, "--batch-size", 4, "--device", "cpu", "-q")
    assert again.exit_code == 2  # state exists: resuming has to be asked for
    resumed = cli("train", "deepprivacy", *common, "--steps", 1, "--batch-size", 4, "--device", "cpu", "--resume")
    assert resumed.exit_code == 0, resumed.output
    assert json.loads(out.with_suffix(".json").read_text())["training"]["steps"] == 3
    records = [json.loads(line) for line in (work / "log.jsonl").read_text().splitlines()]
    assert [record["step"] for record in records] == [1, 2, 3]
    assert all(np.isfinite(record["d_loss"]) and np.isfinite(record["l1_face"]) for record in records)
