"""The commands anoncli is introduced with, typed as a user types them, and the shell pipelines it is used in:
real `anoncli` processes in bash, on real photos and video, in a temporary folder."""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from anoncli.io.report import OK, FileResult, Report
from anoncli.io.video import probe_video
from conftest import ANNOTATED, SAMPLE_DATA, assert_anonymized, detector_faces, load_rgb

BIN = Path(sys.executable).parent


def shell(command: str, cwd: Path, stdin: bytes | None = None) -> subprocess.CompletedProcess:
    """Run `command` in bash with the installed `anoncli` first on PATH."""
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    return subprocess.run(
        ["bash", "-o", "pipefail", "-c", command], cwd=cwd, env=env, input=stdin, capture_output=True, timeout=600
    )


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def photos(tmp_path) -> Path:
    folder = tmp_path / "photos"
    shutil.copytree(SAMPLE_DATA, folder, ignore=shutil.ignore_patterns("videos"))
    return folder


def test_anonymize_a_folder_as_printed(photos, tmp_path):
    before = {p: digest(p) for p in photos.rglob("*.jpg")}
    result = shell("anoncli anonymize ./photos --method deepprivacy", tmp_path)
    assert result.returncode == 0, result.stderr.decode()
    assert {p: digest(p) for p in photos.rglob("*.jpg")} == before, "inputs must never change"
    out = tmp_path / "photos_anonymized"
    assert "photos_anonymized" in result.stderr.decode(), "says where the outputs went"
    assert result.stdout == b"", "stdout carries data only"
    assert sorted(p.relative_to(out) for p in out.rglob("*.jpg")) == sorted(p.relative_to(photos) for p in before)
    original, anonymized = load_rgb(photos / "astronaut.jpg"), load_rgb(out / "astronaut.jpg")
    assert_anonymized(original, anonymized, detector_faces(original))

    again = shell("anoncli anonymize ./photos --method deepprivacy --jsonl", tmp_path)
    assert again.returncode == 0
    statuses = [json.loads(line)["status"] for line in again.stdout.decode().splitlines()]
    assert statuses == ["skipped"] * len(before), "a re-run resumes"
    assert not (tmp_path / "photos_anonymized_anonymized").exists()


def test_video_with_preserve_as_printed(tmp_path):
    shutil.copy(SAMPLE_DATA / "videos" / "walking.mp4", tmp_path / "in.mp4")
    result = shell("anoncli video in.mp4 --preserve age,gender", tmp_path)
    assert result.returncode == 0, result.stderr.decode()
    assert "deepprivacy" in result.stderr.decode(), "says which method --preserve chose"
    out = tmp_path / "in_anonymized.mp4"
    assert probe_video(out).frames == probe_video(tmp_path / "in.mp4").frames

    refused = shell("anoncli video in.mp4 --preserve age,gender --method blur -o other", tmp_path)
    assert refused.returncode == 2 and b"cannot preserve" in refused.stderr
    assert not (tmp_path / "other").exists()


def test_one_file_to_the_output_file_named(photos, tmp_path):
    shutil.copy(SAMPLE_DATA / "videos" / "walking.mp4", tmp_path / "in.mp4")
    result = shell("anoncli video in.mp4 -o out.mp4 && anoncli anonymize photos/astronaut.jpg -o public.jpg", tmp_path)
    assert result.returncode == 0, result.stderr.decode()
    assert (tmp_path / "out.mp4").is_file() and probe_video(tmp_path / "out.mp4").frames == probe_video(
        tmp_path / "in.mp4"
    ).frames
    original = load_rgb(photos / "astronaut.jpg")
    assert_anonymized(original, load_rgb(tmp_path / "public.jpg"), detector_faces(original))
    refused = shell("anoncli anonymize photos/astronaut.jpg -o public.png", tmp_path)
    assert refused.returncode == 2 and b"name its output public.jpg" in refused.stderr


def test_files_beside_themselves_and_not_twice(photos, tmp_path):
    single = photos / "astronaut.jpg"
    assert shell("anoncli anonymize photos/astronaut.jpg", tmp_path).returncode == 0
    assert (photos / "astronaut_anonymized.jpg").exists()
    # A glob now matches the output too: it is recognised as an earlier output, not anonymized again.
    again = shell("anoncli anonymize photos/*.jpg --jsonl", tmp_path)
    records = {json.loads(line)["path"]: json.loads(line) for line in again.stdout.decode().splitlines()}
    assert records["photos/astronaut_anonymized.jpg"]["status"] == "skipped"
    assert records[str(single.relative_to(tmp_path))]["status"] == "skipped"
    assert not (photos / "astronaut_anonymized_anonymized.jpg").exists()


def test_stdin_to_stdout_keeps_the_format(photos, tmp_path):
    source = photos / "astronaut.jpg"
    piped = shell("anoncli anonymize - -o - --method mask", tmp_path, stdin=source.read_bytes())
    assert piped.returncode == 0, piped.stderr.decode()
    written = Image.open(io.BytesIO(piped.stdout))
    assert written.format == "JPEG" and written.size == Image.open(source).size
    # The same bytes as the file route gives.
    by_file = shell(f"anoncli anonymize {source} -o - --method mask", tmp_path)
    assert by_file.stdout == piped.stdout
    shell(f"anoncli anonymize {source} -o files --method mask", tmp_path)
    assert (tmp_path / "files" / source.name).read_bytes() == piped.stdout
    original = load_rgb(source)
    assert_anonymized(original, np.asarray(written.convert("RGB")).astype(np.float32), detector_faces(original))


def test_stdin_png_stays_png_and_detect_reads_stdin(photos, tmp_path):
    png = io.BytesIO()
    Image.open(photos / "astronaut.jpg").save(png, format="PNG")
    piped = shell("anoncli anonymize - --method blur | anoncli detect - --threshold 0.5", tmp_path, png.getvalue())
    assert piped.returncode == 0, piped.stderr.decode()
    record = json.loads(piped.stdout)
    assert record["path"] == "-" and record["faces"] == [], "the blurred face is no longer found"
    found = shell("anoncli detect -", tmp_path, png.getvalue())
    assert len(json.loads(found.stdout)["faces"]) == 1


def test_find_print0_into_files_from(tmp_path):
    data = tmp_path / "data"
    for folder, name in (("a", "2008_002470.jpg"), ("b", "2008_002470.jpg"), ("b/c", "2008_004176.jpg")):
        (data / folder).mkdir(parents=True, exist_ok=True)
        shutil.copy(ANNOTATED / name, data / folder / ("with space " + name))
    (data / "notes.txt").write_text("not an image")
    result = shell(
        "find data -name '*.jpg' -print0 | anoncli anonymize --files-from - --null -o out/ --jsonl", tmp_path
    )
    assert result.returncode == 0, result.stderr.decode()
    records = [json.loads(line) for line in result.stdout.decode().splitlines()]
    assert len(records) == 3 and {r["status"] for r in records} == {"ok"}
    assert {r["faces"] > 0 for r in records} == {True}
    # Same names in different folders do not collide: each keeps its path below out/.
    written = sorted(str(p.relative_to(tmp_path / "out")) for p in (tmp_path / "out").rglob("*.jpg"))
    assert written == sorted(str(p.relative_to(tmp_path)) for p in data.rglob("*.jpg"))
    # Newline-separated lists too; the re-run resumes.
    rerun = shell("find data -name '*.jpg' | anoncli anonymize --files-from - -o out/ --jsonl", tmp_path)
    assert [json.loads(line)["status"] for line in rerun.stdout.decode().splitlines()] == ["skipped"] * 3


def test_jsonl_reports_a_bad_file_and_the_batch_goes_on(photos, tmp_path):
    (photos / "broken.jpg").write_bytes(b"\xff\xd8\xff not really a jpeg")
    result = shell("anoncli anonymize photos -o out --jsonl", tmp_path)
    assert result.returncode == 1
    records = {Path(r["path"]).name: r for r in map(json.loads, result.stdout.decode().splitlines())}
    assert records["broken.jpg"]["status"] == "failed" and records["broken.jpg"]["error"]
    assert records["astronaut.jpg"]["status"] == "ok" and records["astronaut.jpg"]["output"]
    assert set(records["astronaut.jpg"]) == {
        "path",
        "output",
        "status",
        "faces",
        "fallback_faces",
        "stand_in_faces",
        "error",
    }
    assert b"broken.jpg" in result.stderr, "one clear message per bad file, on stderr"


def test_a_closed_pipe_ends_the_run_quietly(photos, tmp_path):
    for copy in range(6):
        shutil.copy(photos / "astronaut.jpg", photos / f"copy{copy}.jpg")
    result = shell("anoncli anonymize photos -o out --jsonl --batch-size 1 | head -1", tmp_path)
    assert len(result.stdout.decode().splitlines()) == 1
    assert b"Traceback" not in result.stderr and b"BrokenPipe" not in result.stderr
    status = shell("anoncli anonymize photos -o out2 --jsonl --batch-size 1 | head -1; echo ${PIPESTATUS[0]}", tmp_path)
    assert status.stdout.decode().split()[-1] == "141"


def test_report_to_stdout_and_through_a_link(photos, tmp_path):
    result = shell("anoncli anonymize photos/astronaut.jpg -o out --report - -q", tmp_path)
    assert json.loads(result.stdout)["totals"]["ok"] == 1
    (tmp_path / "reports").mkdir()
    os.symlink(tmp_path / "reports" / "real.json", tmp_path / "link.json")
    assert shell("anoncli anonymize photos/astronaut.jpg -o out2 --report link.json -q", tmp_path).returncode == 0
    assert (tmp_path / "link.json").is_symlink(), "the link is written through, not replaced"
    assert json.loads((tmp_path / "reports" / "real.json").read_text())["totals"]["ok"] == 1


def test_outputs_get_the_mode_a_normal_write_gives(photos, tmp_path):
    assert shell("umask 022; anoncli anonymize photos/astronaut.jpg -o out -q", tmp_path).returncode == 0
    assert (tmp_path / "out" / "astronaut.jpg").stat().st_mode & 0o777 == 0o644


@pytest.mark.parametrize(
    "command",
    [
        "anoncli anonymize",  # no input at all
        "anoncli anonymize photos -o -",  # a folder cannot go to stdout
        "anoncli anonymize - -o out",  # stdin goes to stdout
        "anoncli anonymize photos/astronaut.jpg -o - --jsonl",  # two kinds of data on one stdout
        "anoncli anonymize photos --files-from missing.txt -o out",
        "anoncli anonymize photos/astronaut.jpg -o - --report -",  # an image and a report on one stdout
        "anoncli anonymize photos -o out --jsonl --report -",
        "anoncli anonymize - --files-from - -o out",  # two readers of stdin
        "anoncli video - -o out",
        "anoncli detect photos/astronaut.jpg -o photos/astronaut.jpg",  # the records would overwrite the input
        "anoncli detect photos/astronaut.jpg -o nowhere/faces.jsonl",
    ],
)
def test_pipeline_usage_errors(photos, tmp_path, command):
    before = digest(photos / "astronaut.jpg")
    result = shell(command, tmp_path, stdin=b"")
    assert result.returncode == 2, (command, result.stderr.decode())
    assert b"Traceback" not in result.stderr
    assert not (tmp_path / "out").exists()
    assert digest(photos / "astronaut.jpg") == before


def test_help_shows_examples(tmp_path):
    for command in ("anonymize", "video", "detect"):
        result = shell(f"anoncli {command} --help", tmp_path)
        assert result.returncode == 0 and b"Examples" in result.stdout
    assert b"anoncli anonymize ./photos --method deepprivacy" in shell("anoncli --help", tmp_path).stdout


@pytest.mark.parametrize("order", ["photos photos/astronaut.jpg", "photos/astronaut.jpg photos"])
def test_a_folder_and_a_file_inside_it_are_done_once_as_part_of_the_folder(photos, tmp_path, order):
    result = shell(f"anoncli anonymize {order} --jsonl -m mask", tmp_path)
    assert result.returncode == 0, result.stderr.decode()
    paths = [json.loads(line)["path"] for line in result.stdout.decode().splitlines()]
    assert sorted(paths) == sorted(set(paths)) and len(paths) == 3
    assert (tmp_path / "photos_anonymized" / "astronaut.jpg").exists()
    assert not (photos / "astronaut_anonymized.jpg").exists(), "nothing is written into the input folder"


def test_detect_writes_to_stdout_with_dash(photos, tmp_path):
    result = shell("anoncli detect photos/astronaut.jpg -o - -q", tmp_path)
    assert len(json.loads(result.stdout)["faces"]) == 1 and not (tmp_path / "-").exists()


def test_the_summary_line_gives_a_pace_a_person_can_read():
    photos = Report("anonymize", {}, files=[FileResult(f"{n}.jpg", OK) for n in range(10)])
    photos.seconds = 2.0
    assert photos.summary().endswith("in 2.0 s (5.0 images/s)")
    video = Report("video", {}, files=[FileResult("in.mp4", OK, frames=105)])
    video.seconds = 53.1
    assert video.summary("videos").endswith("in 53.1 s (53.1 s per video)")
