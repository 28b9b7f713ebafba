"""Peak memory (RSS) of `anoncli anonymize` on folders of 50-megapixel photos, and of `anoncli video` on 1080p.

    .venv/bin/python bench/memory.py [--counts 1,4,8] [--method blur] [--skip-video]

Builds 50-MP JPEGs from a real group photo (../shared/data, upscaled), runs each case as a user would (a
fresh process with default settings), and prints the peak resident memory the kernel recorded for it. The
bound the pipeline keeps: at most 2.5 GB for any number of such images.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
PHOTO = ROOT.parent / "shared" / "data" / "group_photos" / "annotated" / "2008_001322.jpg"
CLIP = ROOT.parent / "shared" / "data" / "videos" / "facenet_pytorch_examples_video.mp4"
BIN = Path(sys.executable).parent
SIDE = (8660, 5774)  # 50.0 megapixels, 3:2


def peak_of(command: list[str]) -> tuple[float, float, int]:
    """(peak RSS in GB, seconds, exit code) of one run of `command` in its own process."""
    started = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _, status, usage = os.wait4(process.pid, 0)
    return usage.ru_maxrss / 1024**2, time.perf_counter() - started, os.waitstatus_to_exitcode(status)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--counts", default="1,4,8", help="how many 50-MP images per folder")
    parser.add_argument("--method", default="blur")
    parser.add_argument("--skip-video", action="store_true")
    args = parser.parse_args()
    source = PHOTO
    print(f"photo: {source.name} upscaled to {SIDE[0]}×{SIDE[1]} ({SIDE[0] * SIDE[1] / 1e6:.1f} MP)")
    with tempfile.TemporaryDirectory() as scratch:
        big = Path(scratch) / "big.jpg"
        Image.open(source).convert("RGB").resize(SIDE, Image.Resampling.BICUBIC).save(big, quality=90)
        for count in (int(n) for n in args.counts.split(",")):
            folder = Path(scratch) / f"images_{count}"
            folder.mkdir()
            for number in range(count):
                (folder / f"{number:02}.jpg").symlink_to(big)
            out = Path(scratch) / f"out_{count}"
            command = [str(BIN / "anoncli"), "anonymize", str(folder), "-o", str(out), "--method", args.method]
            gigabytes, seconds, code = peak_of(command)
            print(f"{count} × 50 MP, {args.method}: peak {gigabytes:.2f} GB, {seconds:.0f} s, exit {code}")
        if not args.skip_video:
            out = Path(scratch) / "video.mp4"
            command = [str(BIN / "anoncli"), "video", str(CLIP), "-o", str(out), "--method", args.method]
            gigabytes, seconds, code = peak_of(command)
            print(f"video {CLIP.name} (1080p), {args.method}: peak {gigabytes:.2f} GB, {seconds:.0f} s, exit {code}")


if __name__ == "__main__":
    main()
