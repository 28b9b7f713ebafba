"""`anoncli train deepprivacy`: a real (tiny) run on UTKFace chips that exports, resumes and frames its
training faces the way inference frames faces in photos."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import time

import cv2
import numpy as np
import pytest
import torch

from anoncli.attributes.classifier import DEFAULT_WEIGHTS as CLASSIFIER_WEIGHTS
from anoncli.attributes.classifier import load_classifier
from anoncli.faces import box_iou
from anoncli.generative.geometry import erase_ellipse, prepare_input
from anoncli.generative.networks import Generator
from anoncli.generative.sampling import generate, to_tensors
from anoncli.generative.weights import WEIGHTS_DIR, load_checked, load_generator, read_manifest
from anoncli.io.images import LUMA_WEIGHTS
from anoncli.training.deepprivacy import (
    PHOTO_BOX_ASPECT,
    PHOTO_BOX_RISE,
    PHOTO_BOX_SCALE,
    attribute_shortfall,
    face_spread,
    photo_box,
    stretched_edges,
)
from anoncli.training.projected import ProjectedDiscriminator, augment, projected_loss
from anoncli.training.widening import widen_generator_state
from conftest import SHARED_DATA, UTKFACE, held_out_utkface, load_rgb

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


def test_face_spread_counts_a_new_face_not_a_lighter_copy_or_speckle():
    """The mode-seeking loss pushes two drawings of one face apart by their face spread: another person's
    face is far, the same face lighter or sprinkled with pixel noise is near."""

    def tensor(image: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(image).permute(2, 0, 1)[None].float() / 127.5 - 1

    paths = sorted(UTKFACE.glob("*.jpg"))
    first, second = (tensor(cv2.resize(load_rgb(p).astype(np.uint8), (64, 64))) for p in (paths[0], paths[900]))
    erased = torch.from_numpy(erase_ellipse((64, 64), (12, 8, 52, 60), 1.0).astype(np.float32))[None, None]
    speckle = torch.randn(first.shape, generator=torch.Generator().manual_seed(0)) * 0.3
    other_face = face_spread(first, second, erased).item()
    lighter = face_spread(first, (first + 0.2).clamp(-1, 1), erased).item()
    speckled = face_spread(first, first + speckle, erased).item()
    print(f"other face {other_face:.3f}, lighter {lighter:.3f}, speckled {speckled:.3f}")
    assert face_spread(first, first, erased).item() == 0
    assert other_face > 0.1
    assert lighter < other_face / 10 and speckled < other_face / 3


def test_the_attribute_loss_asks_no_more_than_the_real_face_shows_and_sees_no_colour():
    """A new face is asked to show gender and age group as surely as the real face it replaces, judged in
    grey: the real face itself owes nothing; another person does; and rainbow speckle painted over that
    person (luma unchanged), which moves what the classifier reads in colour, changes nothing."""

    def faces(paths: list) -> torch.Tensor:
        images = np.stack([cv2.resize(load_rgb(p).astype(np.uint8), (64, 64)) for p in paths])
        return torch.from_numpy(images).permute(0, 3, 1, 2).float() / 127.5 - 1

    chips = held_out_utkface(32)
    real, others = faces([path for path, _ in chips[:16]]), faces([path for path, _ in chips[16:]])
    asked = torch.from_numpy(np.stack([attributes.vector() for _, attributes in chips[:16]]))
    noise = torch.randn(others.shape, generator=torch.Generator().manual_seed(0))
    luma = torch.from_numpy(LUMA_WEIGHTS)[None, :, None, None]
    speckle = 0.3 * (noise - (noise * luma).sum(dim=1, keepdim=True) * luma / luma.pow(2).sum())
    classifier, _ = load_classifier(CLASSIFIER_WEIGHTS, "cpu")
    with torch.no_grad():
        in_colour = (classifier(others + speckle) - classifier(others)).abs().max().item()
        owed = {
            name: attribute_shortfall(classifier, new, real, asked, 0.22, np.random.default_rng(0)).item()
            for name, new in (("real", real), ("others", others), ("speckled others", others + speckle))
        }
    print(f"speckle moves the colour reading by up to {in_colour:.2f}; attribute loss {owed}")
    assert owed["real"] == 0
    assert owed["others"] > 0.1
    assert in_colour > 0.5
    assert owed["speckled others"] == pytest.approx(owed["others"], abs=1e-5)


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
    losses = ("--diversity", 1, "--projected", 1)
    first = cli("train", "deepprivacy", *common, "--steps", 2, "--batch-size", 4, *losses, "--device", "cpu", "-q")
    assert first.exit_code == 0, first.output
    manifest = json.loads(out.with_suffix(".json").read_text())
    assert manifest["training"]["steps"] == 2
    assert manifest["training"]["hyperparameters"]["photo_boxes"] > 0
    assert manifest["training"]["hyperparameters"]["diversity"] == 1
    assert "mode seeking" in manifest["training"]["losses"]
    assert manifest["training"]["hyperparameters"]["projected"] == 1
    assert "projected discriminator" in manifest["training"]["losses"]
    assert "projected" in torch.load(out.with_suffix(".train.pt"), weights_only=True)
    assert (work / "log.jsonl").exists()

    again = cli("train", "deepprivacy", *common, "--steps", 1, "--batch-size", 4, "--device", "cpu", "-q")
    assert again.exit_code == 2  # state exists: resuming has to be asked for
    resumed = cli("train", "deepprivacy", *common, "--steps", 1, "--batch-size", 4, "--device", "cpu", "--resume")
    assert resumed.exit_code == 0, resumed.output
    assert "projected discriminator started fresh" not in resumed.output
    assert json.loads(out.with_suffix(".json").read_text())["training"]["steps"] == 3
    records = [json.loads(line) for line in (work / "log.jsonl").read_text().splitlines()]
    assert [record["step"] for record in records] == [1, 2, 3]
    assert all(np.isfinite(record["d_loss"]) and np.isfinite(record["l1_face"]) for record in records)
    # Resumed without naming its losses, the run goes on with those it was trained with.
    assert all(record["face_spread"] > 0 and 0 < record["p_fake"] < 1 for record in records)


def test_a_terminated_run_saves_where_it_stopped_and_a_killed_one_relogs_what_it_trains_again(cli, chips, tmp_path):
    """SIGTERM (kill, a job's time limit) stops training as Ctrl-C does: the checkpoint holds every step the
    log records. After a hard kill, the steps logged past the last checkpoint are trained again, and logged
    once."""
    out, work = tmp_path / "dp.pt", tmp_path / "work"
    common = ("--data", chips, "--out", out, "--work-dir", work, "--prepared", tmp_path / "prepared")
    common += ("--batch-size", 2, "--device", "cpu")
    command = [sys.executable, "-c", "from anoncli.cli import run; run()", "train", "deepprivacy"]
    run = subprocess.Popen([*command, *map(str, common), "--steps", "100000", "-q"], stderr=subprocess.PIPE, text=True)
    log = work / "log.jsonl"
    deadline = time.monotonic() + 300
    while not (log.exists() and len(log.read_text().splitlines()) >= 3) and time.monotonic() < deadline:
        time.sleep(0.2)
    run.send_signal(signal.SIGTERM)
    _, stderr = run.communicate(timeout=120)
    assert run.returncode == 130, stderr
    assert "continue with --resume" in stderr
    logged = [json.loads(line)["step"] for line in log.read_text().splitlines()]
    saved = torch.load(work / "checkpoint.pt", weights_only=True)["state"]["step"]
    assert logged == list(range(1, saved + 1)) and saved >= 3

    with log.open("a") as appended:  # as if killed hard two steps after the checkpoint, mid-record
        appended.write(json.dumps({"step": saved + 1}) + "\n" + json.dumps({"step": saved + 2}) + '\n{"st')
    resumed = cli("train", "deepprivacy", *common, "--steps", 1, "--resume", "-q")
    assert resumed.exit_code == 0, resumed.output
    assert [json.loads(line)["step"] for line in log.read_text().splitlines()] == list(range(1, saved + 2))


def test_a_refiner_resumed_grows_the_generator_named_now(cli, chips, tmp_path):
    """The 128² head resumed with --refine-from grows the 64² generator in that file, which may have trained
    on since the head started: the copy of the older one saved with the head is not kept."""
    common = ("--data", chips, "--batch-size", 2, "--steps", 1, "--device", "cpu", "-q")
    base = ("train", "deepprivacy", *common, "--out", tmp_path / "dp64.pt", "--work-dir", tmp_path / "work64")
    base += ("--prepared", tmp_path / "prepared128")
    head = ("train", "deepprivacy", *common, "--out", tmp_path / "dp128.pt", "--work-dir", tmp_path / "work128")
    head += ("--prepared", tmp_path / "prepared192", "--refine-from", tmp_path / "dp64.pt")
    for command in (base, head, (*base, "--resume"), (*head, "--resume")):
        result = cli(*command)
        assert result.exit_code == 0, result.output

    grown = torch.load(tmp_path / "dp128.pt", weights_only=True)
    for name, tensor in torch.load(tmp_path / "dp64.pt", weights_only=True).items():
        assert torch.equal(grown[f"base.{name}"], tensor), name
    refines = json.loads((tmp_path / "dp128.json").read_text())["training"]["refines"]
    assert refines["sha256"] == json.loads((tmp_path / "dp64.json").read_text())["sha256"]


def _drawn_with_grad(generator: torch.nn.Module, chips: list[np.ndarray]) -> torch.Tensor:
    """The generator's faces for real chips with their faces erased, seeds 0, 1, ..."""
    erase = erase_ellipse((200, 200), (50, 45, 150, 165), 1.1)
    inputs = [prepare_input(chip, np.ones((200, 200), bool), erase, None, 64) for chip in chips]
    condition, erased, _ = to_tensors(inputs, "cpu")
    return generate(generator, condition, erased, list(range(len(chips))))


def _drawn(generator: torch.nn.Module, chips: list[np.ndarray]) -> torch.Tensor:
    with torch.no_grad():
        return _drawn_with_grad(generator, chips)


def test_copies_of_a_widened_generator_draw_the_same_but_learn_apart(chips):
    """Widening repeats each channel; with random shares of the weights reading the copies instead of equal
    ones, the network still draws exactly what it drew, but the copies receive different gradients, so
    training can make them different channels (equal shares give them equal gradients: they stay copies)."""
    state, manifest = load_checked(WEIGHTS_DIR / "deepprivacy64.pt")
    narrow = tuple(manifest["architecture"]["channels"])
    wide = tuple(2 * c for c in narrow)
    faces = [load_rgb(path).astype(np.uint8) for path in sorted(chips.glob("*.jpg"))[:4]]
    trained, _ = load_generator(WEIGHTS_DIR / "deepprivacy64.pt", "cpu")
    expected = _drawn(trained, faces)
    apart = {}
    for shares in ("equal", "random"):
        generator = torch.Generator().manual_seed(0) if shares == "random" else None
        widened = Generator(64, wide).eval()
        widened.load_state_dict(widen_generator_state(state, narrow, wide, generator))
        drawn = _drawn_with_grad(widened, faces)
        assert (drawn.detach() - expected).abs().max() < 1e-4, shares
        drawn.square().mean().backward()
        gradient = widened.get_parameter("up.3.1.0.weight").grad  # the full-resolution level, 2 × 16 filters
        first, second = gradient[: narrow[0]], gradient[narrow[0] :]
        apart[shares] = float((first - second).norm() / first.norm())
    print(f"copies' gradients apart: {apart}")
    assert apart["equal"] < 1e-3
    assert apart["random"] > 0.3


def test_a_widened_generator_draws_what_the_trained_one_drew_and_keeps_its_width_when_resumed(cli, chips, tmp_path):
    """--widen-from starts a run with twice the shipped generator's channels (drawing what it drew, see the
    test above); the run records what it widened and resumes at its own width."""
    shipped = WEIGHTS_DIR / "deepprivacy64.pt"
    manifest = read_manifest(shipped)
    narrow = tuple(manifest["architecture"]["channels"])
    wide = tuple(2 * c for c in narrow)
    faces = [load_rgb(path).astype(np.uint8) for path in sorted(chips.glob("*.jpg"))[:4]]
    trained, _ = load_generator(shipped, "cpu")

    out, work = tmp_path / "wide.pt", tmp_path / "work"
    common = ("--data", chips, "--out", out, "--work-dir", work, "--prepared", tmp_path / "prepared")
    common += ("--batch-size", 2, "--steps", 1, "--device", "cpu", "-q")
    odd = cli("train", "deepprivacy", *common, "--widen-from", shipped, "--channels", "24,48,96,192,192")
    assert odd.exit_code == 2 and "whole multiples" in odd.output
    started = cli("train", "deepprivacy", *common, "--widen-from", shipped, "--channels", ",".join(map(str, wide)))
    assert started.exit_code == 0, started.output
    resumed = cli("train", "deepprivacy", *common, "--resume")
    assert resumed.exit_code == 0, resumed.output
    regrown = cli("train", "deepprivacy", *common, "--resume", "--channels", ",".join(str(2 * c) for c in wide))
    assert regrown.exit_code == 2 and "--widen-from" in regrown.output  # zero-padded channels would never learn

    written = json.loads(out.with_suffix(".json").read_text())
    assert written["architecture"]["channels"] == list(wide)
    assert written["training"]["widens"] == {
        "file": shipped.name,
        "sha256": manifest["sha256"],
        "channels": list(narrow),
    }
    assert written["training"]["steps"] == manifest["training"]["steps"] + 2
    # The shipped 128² head read the narrow generator's features: it is not padded onto the wide one.
    for suffix in (".pt", ".json", ".train.pt"):
        shutil.copy((WEIGHTS_DIR / "deepprivacy128").with_suffix(suffix), (tmp_path / "head").with_suffix(suffix))
    head = ("--data", chips, "--out", tmp_path / "head.pt", "--work-dir", tmp_path / "work128", "--resume")
    head += ("--refine-from", out, "--prepared", tmp_path / "prepared192", "--batch-size", 2, "--steps", 1, "-q")
    refused = cli("train", "deepprivacy", *head)
    assert refused.exit_code == 2 and "another width" in refused.output
    # Two steps move the weight average by about 0.2 % of the way: it still draws nearly the shipped faces.
    after_two_steps, _ = load_generator(out, "cpu")
    moved = (_drawn(after_two_steps, faces) - _drawn(trained, faces)).abs().mean()
    print(f"after two steps: mean difference {moved:.4f}")
    assert moved < 0.02


def _squares(paths: list, side: int = 64) -> torch.Tensor:
    """UTKFace chips as RGB squares in [-1, 1]."""
    chips = [cv2.resize(load_rgb(path).astype(np.uint8), (side, side), interpolation=cv2.INTER_AREA) for path in paths]
    return torch.from_numpy(np.stack(chips)).permute(0, 3, 1, 2).float() / 127.5 - 1


def test_the_projected_discriminator_tells_faces_from_erased_ones_after_a_few_steps_on_others():
    """The projected discriminator judges RetinaFace's features: a fresh one learns in a few dozen steps to
    tell real faces from the same faces erased, on faces it never saw; gradients reach the image, not the
    frozen detector, and its saved heads restore the same judgement."""
    paths = sorted(UTKFACE.glob("*.jpg"))
    training, unseen = _squares(paths[:4000:250]), _squares(paths[4000:6000:250])
    erase = torch.from_numpy(erase_ellipse((64, 64), (14, 8, 50, 60), 1.0).astype(np.float32))

    def erased(faces: torch.Tensor) -> torch.Tensor:
        return faces * (1 - erase) + faces.mean(dim=(2, 3), keepdim=True) * erase

    torch.manual_seed(0)
    judge = ProjectedDiscriminator()
    optimizer = torch.optim.Adam(judge.heads.parameters(), 4e-4, betas=(0.5, 0.99))
    augmentation = torch.Generator().manual_seed(0)
    for _ in range(40):
        real = judge(augment(training, augmentation))
        fake = judge(augment(erased(training), augmentation))
        loss = projected_loss(real, real=True) + projected_loss(fake, real=False)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    def realness(discriminator: ProjectedDiscriminator, faces: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return torch.stack([scale.mean(dim=(1, 2, 3)) for scale in discriminator.eval()(faces)]).mean(dim=0)

    faces, without = realness(judge, unseen), realness(judge, erased(unseen))
    print(f"unseen faces: {faces.mean():.2f}, erased: {without.mean():.2f}")
    assert (faces > without).float().mean() >= 0.9

    image = unseen[:2].clone().requires_grad_(True)
    projected_loss(judge(image), real=True).backward()
    assert image.grad.abs().sum() > 0
    assert not any(parameter.requires_grad for parameter in judge.backbone.parameters())
    assert not any(parameter.requires_grad for parameter in judge.mixing.parameters())
    restored = ProjectedDiscriminator()
    restored.load_trained_state({name: tensor.half() for name, tensor in judge.trained_state().items()})
    assert torch.allclose(realness(restored, unseen), faces, atol=0.05)
