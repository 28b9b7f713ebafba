"""Awkward and broken files: one clear message each, the batch goes on, no detected face leaves unmasked."""

from __future__ import annotations

import io
import os

import numpy as np
import pytest
from PIL import Image

from conftest import ANNOTATED, SAMPLE_DATA, assert_anonymized, load_rgb, read_report, start_anoncli

EXIF_ORIENTATION = 0x0112


def astronaut_image() -> Image.Image:
    return Image.open(SAMPLE_DATA / "astronaut.jpg").convert("RGB")


def save(image: Image.Image, path, **options) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, **options)


def make_awkward_but_valid(folder) -> dict[str, str]:
    """Valid images in unusual encodings; returns file name → expected output PIL mode."""
    rgb = astronaut_image()
    save(rgb.convert("L"), folder / "gray.jpg", quality=92)
    save(rgb.convert("RGBA"), folder / "rgba.png")
    save(rgb.convert("P", palette=Image.ADAPTIVE), folder / "palette.png")
    save(rgb.convert("CMYK"), folder / "cmyk.jpg", quality=92)
    gray16 = (np.asarray(rgb.convert("L"), np.uint16) * 257).astype(np.uint16)
    save(Image.fromarray(gray16), folder / "gray16.png")
    sideways = rgb.transpose(Image.ROTATE_270)
    exif = Image.Exif()
    exif[EXIF_ORIENTATION] = 8
    save(sideways, folder / "exif_rotated.jpg", exif=exif.tobytes(), quality=92)
    save(rgb, folder / "ünïcode dir" / "fåce with spaces.webp", quality=90)
    save(rgb, folder / "plain.bmp")
    save(rgb, folder / "scan.tiff")
    frames = [rgb, rgb.transpose(Image.FLIP_LEFT_RIGHT)]
    save(frames[0], folder / "animated.gif", save_all=True, append_images=frames[1:], duration=120, loop=0)
    return {
        "gray.jpg": "L",
        "rgba.png": "RGBA",
        "palette.png": "RGB",
        "cmyk.jpg": "RGB",
        "gray16.png": "I;16",
        "exif_rotated.jpg": "RGB",
        "fåce with spaces.webp": "RGB",
        "plain.bmp": "RGB",
        "scan.tiff": "RGB",
        "animated.gif": "P",
    }


def make_broken(folder) -> dict[str, str]:
    """Broken files; returns file name → a phrase its error message must contain."""
    folder.mkdir(parents=True, exist_ok=True)
    good = (SAMPLE_DATA / "astronaut.jpg").read_bytes()
    (folder / "empty.jpg").write_bytes(b"")
    (folder / "truncated.jpg").write_bytes(good[: len(good) // 3])
    (folder / "notes.png").write_text("this is not an image\n")
    (folder / "garbage.jpg").write_bytes(b"\xff\xd8\xff" + bytes(range(256)) * 20)
    (folder / "dangling.jpg").symlink_to(folder / "gone.jpg")
    (folder / "loop_a.jpg").symlink_to(folder / "loop_b.jpg")
    (folder / "loop_b.jpg").symlink_to(folder / "loop_a.jpg")
    # Names that read as rich markup must still be printed as they are.
    (folder / "x[red]bad.jpg").write_text("not a picture\n")
    (folder / "[b].jpg").write_bytes(b"")
    # A 1-bit PNG of 16000×10000 is small on disk and 160 MP when decoded: a decompression bomb.
    bomb = io.BytesIO()
    Image.new("1", (16000, 10000)).save(bomb, format="PNG")
    (folder / "bomb.png").write_bytes(bomb.getvalue())
    return {
        "empty.jpg": "empty file",
        "truncated.jpg": "truncated",
        "notes.png": "not an image",
        "garbage.jpg": "",
        "dangling.jpg": "cannot read",
        "loop_a.jpg": "symbolic links",
        "loop_b.jpg": "symbolic links",
        "x[red]bad.jpg": "not an image",
        "[b].jpg": "empty file",
        "bomb.png": "--max-megapixels",
    }


def test_mixed_folder_of_awkward_and_broken_files(tmp_path, cli, detector):
    folder = tmp_path / "inbox"
    valid = make_awkward_but_valid(folder)
    broken = make_broken(folder / "broken")
    out, report_path = tmp_path / "out", tmp_path / "report.json"

    result = cli("anonymize", folder, "-o", out, "--method", "pixelate", "--report", report_path)

    assert result.exit_code == 1, "some files failed, so the exit code says so"
    report = read_report(report_path)
    by_name = {entry["path"].split("/")[-1]: entry for entry in report["files"]}
    assert report["totals"]["ok"] == len(valid) and report["totals"]["failed"] == len(broken)
    for name, phrase in broken.items():
        assert by_name[name]["status"] == "failed"
        assert phrase in by_name[name]["error"]
        assert f"{name}:" in result.output, "each bad file gets its own message, its name printed as it is"
        assert not (out / "broken" / name).exists()

    reference = load_rgb(SAMPLE_DATA / "astronaut.jpg")
    faces = detector.detect(reference.astype(np.uint8))
    for name, mode in valid.items():
        written = next(out.rglob(name))
        image = Image.open(written)
        assert image.mode == mode, name
        assert by_name[name]["faces"] >= 1, name
        assert_anonymized(load_rgb(next(folder.rglob(name))), load_rgb(written), faces, far_tolerance=8.0)
    assert by_name["animated.gif"]["frames"] == 2
    gif = Image.open(out / "animated.gif")
    gif.seek(1)
    second = np.asarray(gif.convert("RGB")).astype(np.float32)
    mirrored = [type(f)((512 - f.box[2], f.box[1], 512 - f.box[0], f.box[3]), f.score) for f in faces]
    assert_anonymized(reference[:, ::-1], second, mirrored, far_tolerance=12.0)


def test_sixteen_bit_colour_is_kept_and_its_face_replaced(tmp_path, cli, detector):
    import cv2

    rgb16 = np.asarray(astronaut_image(), np.uint16) * 257
    source = tmp_path / "in" / "deep.png"
    source.parent.mkdir()
    cv2.imwrite(str(source), cv2.cvtColor(rgb16, cv2.COLOR_RGB2BGR))
    assert cli("anonymize", source, "-o", tmp_path / "out", "--method", "mask").exit_code == 0
    written = cv2.cvtColor(cv2.imread(str(tmp_path / "out" / "deep.png"), cv2.IMREAD_UNCHANGED), cv2.COLOR_BGR2RGB)
    assert written.dtype == np.uint16
    faces = detector.detect((rgb16 >> 8).astype(np.uint8))
    assert_anonymized(rgb16 / 257.0, written / 257.0, faces)


def test_the_size_guard_can_be_lifted(tmp_path, cli):
    source = SAMPLE_DATA / "astronaut.jpg"
    guarded = cli("anonymize", source, "-o", tmp_path / "a", "--max-megapixels", "0.1")
    assert guarded.exit_code == 1 and "safety limit" in guarded.output
    assert cli("anonymize", source, "-o", tmp_path / "b", "--max-megapixels", "0").exit_code == 0


@pytest.mark.parametrize("args", [["--mask-scale", "9"], ["--method", "nope"], ["--device", "tpu"]])
def test_bad_options_are_usage_errors(args, tmp_path, cli):
    result = cli("anonymize", SAMPLE_DATA, "-o", tmp_path / "out", *args)
    assert result.exit_code == 2
    assert not (tmp_path / "out").exists()


def test_missing_input_is_a_usage_error(tmp_path, cli):
    result = cli("anonymize", tmp_path / "nowhere", "-o", tmp_path / "out")
    assert result.exit_code == 2 and "no such file" in result.output


def test_a_folder_of_50_megapixel_photos_stays_within_memory_bound(tmp_path):
    """Decode-ahead, batches and writes are bounded by pixels: four 50-MP photos (each 150 MB decoded, about
    1.3 GB at its peak in the pipeline) go through one at a time."""
    folder = tmp_path / "large"
    folder.mkdir()
    photo = Image.open(ANNOTATED / "2008_001322.jpg").convert("RGB")  # six faces, 1000 px and more once enlarged
    photo.resize((8660, 5774), Image.Resampling.BILINEAR).save(folder / "00.jpg", quality=85)
    for number in (1, 2, 3):
        (folder / f"{number:02}.jpg").symlink_to(folder / "00.jpg")
    out = tmp_path / "out"
    run = start_anoncli("anonymize", folder, "-o", out, "--method", "blur", "--coverage", "fast")
    _, status, usage = os.wait4(run.pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert len(list(out.glob("*.jpg"))) == 4
    assert usage.ru_maxrss / 1024**2 < 2.5, f"peak {usage.ru_maxrss / 1024**2:.2f} GB"
