"""Detection: real networks on real faces, small faces included."""

from __future__ import annotations

import csv
import io
import json

import numpy as np
import pytest
from PIL import Image

from anoncli.detectors import DETECTORS, create_detector
from anoncli.detectors.base import FINE_PIXEL_BUDGET
from anoncli.faces import box_iou
from conftest import ANNOTATED, SAMPLE_DATA, SHARED_DATA, annotated_boxes


def recall_on_annotated(detector) -> tuple[float, int]:
    found = total = 0
    for name, truth in annotated_boxes().items():
        image = np.asarray(Image.open(ANNOTATED / name).convert("RGB"))
        boxes = np.array([face.box for face in detector.detect(image)]).reshape(-1, 4)
        total += len(truth)
        if len(boxes):
            found += int((box_iou(truth, boxes).max(axis=1) >= 0.4).sum())
    return found / total, total


@pytest.mark.parametrize("name", DETECTORS.names())
def test_recall_on_hand_labelled_group_photos(name):
    recall, total = recall_on_annotated(create_detector(name, device="cpu"))
    print(f"{name}: recall {recall:.3f} on {total} hand-drawn boxes at IoU >= 0.4")
    assert total == 43
    assert recall >= 0.95


@pytest.mark.parametrize("name", DETECTORS.names())
def test_each_detector_finds_the_astronaut_with_landmarks_inside_the_box(name, astronaut):
    faces = create_detector(name, device="cpu").detect(astronaut)
    assert len(faces) == 1
    face = faces[0]
    x1, y1, x2, y2 = face.box
    assert 100 < face.height < 160 and face.score > 0.5
    assert all(x1 <= x <= x2 and y1 <= y <= y2 for x, y in face.landmarks)
    left_eye, right_eye, nose, mouth_left, mouth_right = face.landmarks
    assert left_eye[0] < right_eye[0] and mouth_left[0] < mouth_right[0]
    assert max(left_eye[1], right_eye[1]) < nose[1] < min(mouth_left[1], mouth_right[1])


def test_small_faces_in_a_large_scene_are_found(detector):
    image = np.asarray(Image.open(SAMPLE_DATA / "scenes" / "crowd.jpg").convert("RGB"))
    heights = sorted(face.height for face in detector.detect(image))
    # The scene holds nine pasted busts; the smallest faces are about 20 px tall in a 1600 px wide image.
    assert sum(h < 35 for h in heights) >= 3
    assert len(heights) >= 9


# Large false alarms the whole-image pass raises on press photos (found at 0.74-0.90), and the real faces
# beside them.
FALSE_ALARMS = {
    "img20.jpg": ([113, 344, 550, 819], 1),  # a shirt below the face
    "img54.jpg": ([519, 1078, 1555, 2270], 3),  # a chest; the real faces are the star and people behind
}


@pytest.mark.parametrize("name", sorted(FALSE_ALARMS))
def test_large_false_alarms_are_kept_but_not_confirmed_when_a_closer_look_finds_no_face(detector, name):
    """Confirmation decides how a detection is treated, never whether it is covered."""
    alarm, real_faces = FALSE_ALARMS[name]
    image = np.asarray(Image.open(SHARED_DATA / "identities" / "celebs13" / name).convert("RGB"))
    faces = detector.detect(image)
    confirmed = np.array([face.box for face in faces if face.confirmed]).reshape(-1, 4)
    unconfirmed = np.array([face.box for face in faces if not face.confirmed]).reshape(-1, 4)
    assert box_iou(np.array([alarm], float), confirmed).max(initial=0) < 0.2
    assert box_iou(np.array([alarm], float), unconfirmed).max() > 0.6, "found, kept, marked"
    assert len(confirmed) >= real_faces


def test_the_fine_pass_scale_follows_the_pixel_budgets():
    """By default an image is upscaled (up to 2x) as far as FINE_PIXEL_BUDGET allows; with a smaller budget for
    upscaled copies, a large photo is still searched at its own resolution and only a small one is upscaled."""
    default = create_detector("retinaface")
    assert default.fine_scale(480, 640) == 2.0
    assert default.fine_scale(1080, 1920) == pytest.approx((FINE_PIXEL_BUDGET / (1080 * 1920)) ** 0.5)
    assert default.fine_scale(4000, 6000) == pytest.approx((FINE_PIXEL_BUDGET / 24e6) ** 0.5), "huge: below native"
    thrifty = create_detector("retinaface", upscale_pixels=2e6)
    assert thrifty.fine_scale(480, 640) == 2.0
    assert thrifty.fine_scale(1080, 1920) == 1.0
    assert thrifty.fine_scale(1000, 1000) == pytest.approx(2**0.5)
    assert thrifty.fine_scale(4000, 6000) == default.fine_scale(4000, 6000)


def test_detect_writes_one_json_record_per_image_upright(cli, tmp_path):
    out = tmp_path / "faces.jsonl"
    result = cli("detect", SAMPLE_DATA, "-o", out)
    assert result.exit_code == 0
    records = {json.loads(line)["path"].split("/")[-1]: json.loads(line) for line in out.read_text().splitlines()}
    assert set(records) == {"astronaut.jpg", "crowd.jpg", "phone_rotated.jpg"}
    upright, rotated = records["astronaut.jpg"], records["phone_rotated.jpg"]
    assert (rotated["width"], rotated["height"]) == (512, 512)
    # The phone photo is stored sideways with EXIF orientation 6: its face is found where the upright one is.
    assert box_iou(np.array(upright["faces"][0]["box"]), np.array(rotated["faces"][0]["box"]))[0, 0] > 0.8
    face = upright["faces"][0]
    assert len(face["box"]) == 4 and 0 < face["score"] <= 1 and len(face["landmarks"]) == 5


def test_detect_csv_has_one_row_per_face(cli, tmp_path):
    out = tmp_path / "faces.csv"
    assert cli("detect", SAMPLE_DATA / "astronaut.jpg", "--format", "csv", "-o", out).exit_code == 0
    rows = list(csv.DictReader(io.StringIO(out.read_text())))
    assert len(rows) == 1
    assert float(rows[0]["x2"]) > float(rows[0]["x1"]) and rows[0]["nose_x"]


def test_unknown_detector_is_a_usage_error(cli):
    result = cli("detect", SAMPLE_DATA, "--detector", "nope")
    assert result.exit_code == 2
    assert "retinaface" in result.output


def test_searching_near_expected_faces_finds_what_the_full_search_finds():
    """Video's cheap search between full ones: told where the faces were, it finds them all again."""
    from anoncli.io.video import decode_frames

    frame = next(decode_frames(SHARED_DATA / "videos" / "facenet_pytorch_examples_video.mp4")).upright_rgb(0)
    detector = create_detector("retinaface", max_upscale=1.0, global_side=640)
    full = np.array([face.box for face in detector.detect(frame)])
    near = np.array([face.box for face in detector.detect_near(frame, [tuple(box) for box in full])])
    assert len(full) >= 6
    assert len(near) == len(full)
    assert (box_iou(full, near).max(axis=1) >= 0.7).all()
    # Told nothing, it finds only the faces large enough for the whole-frame pass.
    assert len(detector.detect_near(frame, [])) < len(full)
