"""`--backend ray`: the same files, report and exit code as the local path, on a real local Ray; a worker
killed mid-run changes nothing in the result."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from anoncli.io.video import decode_frames, probe_video
from conftest import ANNOTATED, SAMPLE_DATA, read_report, start_anoncli, wait_for

pytest.importorskip("ray")

CLIP = SAMPLE_DATA / "videos" / "walking.mp4"


def digests(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest() for p in folder.rglob("*.*")}


def comparable(report: dict) -> dict:
    """A report without what differs between runs by nature: timings and where it ran."""
    totals = {key: value for key, value in report["totals"].items() if key != "seconds"}
    return {"totals": totals, "files": report["files"]}


@pytest.fixture
def inbox(tmp_path) -> Path:
    """Real photos in a tree, and one broken file that must fail alone."""
    folder = tmp_path / "inbox"
    shutil.copytree(SAMPLE_DATA, folder, ignore=shutil.ignore_patterns("videos"))
    (folder / "groups").mkdir()
    for name in ("2008_002470.jpg", "2008_004176.jpg", "2009_004587.jpg"):
        shutil.copy(ANNOTATED / name, folder / "groups" / name)
    (folder / "groups" / "broken.jpg").write_bytes(b"\xff\xd8\xff not a picture")
    return folder


# pixelate and mask run on Ray in test_anonymize's real-photo test, parametrized by backend.
@pytest.mark.parametrize("method", ["blur", "deepprivacy"])
def test_ray_writes_the_same_bytes_report_and_exit_code_as_local(method, inbox, tmp_path, cli, ray_here):
    runs = {}
    for backend in ("local", "ray"):
        out, report = tmp_path / backend, tmp_path / f"{backend}.json"
        result = cli("anonymize", inbox, "-o", out, "--method", method, "--report", report, "--backend", backend)
        runs[backend] = (result.exit_code, digests(out), comparable(read_report(report)))
        for entry in runs[backend][2]["files"]:
            entry["output"] = entry["output"] and Path(entry["output"]).name  # the folders differ by name only
    if method == "deepprivacy":
        # The same faces from the same seeds; a worker's thread count (Ray gives it its CPU share) changes the
        # generator's float rounding, so a few pixels may differ by a few levels.
        for name in runs["local"][1]:
            local, ray = (np.asarray(Image.open(tmp_path / side / name), np.int16) for side in ("local", "ray"))
            difference = np.abs(local - ray)
            assert difference.max() <= 8 and (difference > 0).mean() < 0.002, name
        runs = {backend: (code, sorted(written), report) for backend, (code, written, report) in runs.items()}
    assert runs["ray"] == runs["local"]
    exit_code, written, report = runs["ray"]
    assert exit_code == 1 and report["totals"]["failed"] == 1 and len(written) == 6
    assert read_report(tmp_path / "ray.json")["settings"]["backend"] == "ray"

    again = cli("anonymize", inbox, "-o", tmp_path / "ray", "--report", tmp_path / "again.json", "--backend", "ray")
    assert again.exit_code == 1 and read_report(tmp_path / "again.json")["totals"]["skipped"] == 6


def test_videos_on_ray_match_the_local_ones(tmp_path, cli, ray_here):
    folder = tmp_path / "clips"
    folder.mkdir()
    shutil.copy(CLIP, folder / "walking.mp4")
    shutil.copy(CLIP, folder / "again.mp4")
    for backend in ("local", "ray"):
        args = ("video", folder, "-o", tmp_path / backend, "--method", "mask", "--report", tmp_path / f"{backend}.json")
        # RetinaFace alone: the strict plan's CenterFace scores some faces of these clips near its threshold,
        # where a worker's thread count (its float rounding) can tip a detection either way.
        assert cli(*args, "--coverage", "fast", "--backend", backend).exit_code == 0
    local, ray = read_report(tmp_path / "local.json"), read_report(tmp_path / "ray.json")
    assert [f["faces"] for f in ray["files"]] == [f["faces"] for f in local["files"]] and ray["totals"]["ok"] == 2
    # x264's bitstream depends on its thread count, which a worker's CPU share sets: compare what decodes.
    # Re-encoding moves pixels by a few levels (at most 9 on egoblur's clip); a mask present in one and not
    # the other would move a face's worth of them by far more.
    for name in ("walking.mp4", "again.mp4"):
        pairs = zip(decode_frames(tmp_path / "local" / name), decode_frames(tmp_path / "ray" / name), strict=True)
        for index, (local, ray) in enumerate(pairs):
            far_apart = (np.abs(local.upright_rgb(0).astype(np.int16) - ray.upright_rgb(0)) > 48).mean()
            assert far_apart < 0.001, f"{name} frame {index}: {far_apart:.2%} of the pixels differ by more than 48"


def ray_worker_pids() -> list[int]:
    """Processes Ray titled after anoncli's worker actor."""
    pids = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and (entry / "cmdline").read_bytes().startswith(b"ray::AnoncliWorker"):
                pids.append(int(entry.name))
        except OSError:
            continue
    return pids


def test_a_killed_worker_is_replaced_and_every_file_is_written_once(tmp_path):
    folder = tmp_path / "many"
    folder.mkdir()
    sources = sorted(ANNOTATED.glob("*.jpg"))
    for number in range(30):
        shutil.copy(sources[number % len(sources)], folder / f"{number:02}.jpg")
    out, report = tmp_path / "out", tmp_path / "report.json"
    args = ("anonymize", folder, "-o", out, "--method", "mask", "--coverage", "fast", "--batch-size", "2")
    run = start_anoncli(*args, "--backend", "ray", "--workers", "2", "--report", report)  # starts its own Ray
    wait_for(lambda: len(list(out.glob("*.jpg"))) >= 2 and ray_worker_pids(), run, seconds=240)
    victim = ray_worker_pids()[0]
    os.kill(victim, signal.SIGKILL)
    _, stderr = run.communicate(timeout=600)

    assert run.returncode == 0, stderr.decode()[-2000:]
    written = sorted(out.glob("*.jpg"))
    assert [path.name for path in written] == sorted(path.name for path in folder.glob("*.jpg"))
    for path in written:
        Image.open(path).load()  # whole, not cut off
    totals = read_report(report)["totals"]
    assert (totals["ok"], totals["failed"], totals["skipped"]) == (30, 0, 0)
    assert not list(out.glob(".*anoncli-tmp*")), "the killed worker's half-written file is cleaned up"
    assert victim not in ray_worker_pids()
    assert json.loads(report.read_text())["settings"]["workers"] == 2


@pytest.fixture
def s3_endpoint(tmp_path, monkeypatch) -> str:
    """A real S3 endpoint on this machine (moto's standalone server on a free port), and the environment
    variables any S3 client reads to use it."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen(
        [str(Path(sys.executable).parent / "moto_server"), "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    for name, value in {
        "AWS_ENDPOINT_URL": url,
        "AWS_ACCESS_KEY_ID": "anoncli-test",
        "AWS_SECRET_ACCESS_KEY": "anoncli-test",
        "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(name, value)
    deadline = time.monotonic() + 30
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                break
        except OSError:
            assert time.monotonic() < deadline, "moto's server did not start"
            time.sleep(0.1)
    yield url
    server.terminate()
    server.wait(timeout=30)


def test_s3_round_trip_here_and_on_ray(inbox, tmp_path, cli, s3_endpoint):
    import s3fs

    bucket = s3fs.S3FileSystem()
    bucket.mkdir("photos")
    bucket.put(f"{inbox}/", "photos/in/", recursive=True)
    shutil.copy(CLIP, tmp_path / "walking.mp4")
    bucket.put_file(str(tmp_path / "walking.mp4"), "photos/clips/walking.mp4")
    args = ("anonymize", "s3://photos/in", "--method", "mask", "--coverage", "fast")

    here = cli(*args, "-o", "s3://photos/here", "--report", tmp_path / "here.json")
    on_ray = start_anoncli(*args, "-o", "s3://photos/ray", "--report", tmp_path / "ray.json", "--backend", "ray")
    _, stderr = on_ray.communicate(timeout=600)
    files = cli(*args[:1], inbox, *args[2:], "-o", tmp_path / "files")  # the same photos as files

    assert here.exit_code == on_ray.returncode == files.exit_code == 1, stderr.decode()[-2000:]
    for name in ("astronaut.jpg", "scenes/crowd.jpg", "groups/2009_004587.jpg"):
        expected = (tmp_path / "files" / name).read_bytes()
        assert bucket.cat(f"photos/here/{name}") == bucket.cat(f"photos/ray/{name}") == expected, name
    assert len(bucket.find("photos/ray")) == 6 and not bucket.exists("photos/ray/groups/broken.jpg")
    report = read_report(tmp_path / "ray.json")
    assert report["totals"]["failed"] == 1 and report["files"][0]["path"].startswith("s3://photos/in/")

    again = cli(*args, "-o", "s3://photos/here", "--report", tmp_path / "again.json")
    assert read_report(tmp_path / "again.json")["totals"]["skipped"] == 6 and again.exit_code == 1

    video = cli("video", "s3://photos/clips", "-o", "s3://photos/clips_out", "--method", "mask", "--coverage", "fast")
    assert video.exit_code == 0 and bucket.exists("photos/clips_out/walking.mp4")
    bucket.get_file("photos/clips_out/walking.mp4", str(tmp_path / "walking_out.mp4"))
    assert probe_video(tmp_path / "walking_out.mp4").frames == probe_video(CLIP).frames


def test_detect_on_ray_writes_the_same_records(inbox, tmp_path, cli, ray_here):
    for backend in ("local", "ray"):
        result = cli("detect", inbox, "-o", tmp_path / f"{backend}.jsonl", "--backend", backend)
        assert result.exit_code == 1 and "broken.jpg" in result.output  # the broken file fails alone
    local = (tmp_path / "local.jsonl").read_text()
    assert (tmp_path / "ray.jsonl").read_text() == local and len(local.splitlines()) == 6
