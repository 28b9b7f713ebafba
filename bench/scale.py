"""Images per second of `anoncli anonymize` here and on Ray with 1 and 2 workers, on the same folder.

    .venv/bin/python bench/scale.py [--count 200] [--method blur]

Builds a folder of 640×480 photos from ../shared/data (as bench/images.py does) and runs each case as a user
would: a fresh process, wall time including start-up (Ray's own start-up included: each Ray run starts a
local Ray). Prints seconds, images/s and Ray's overhead against the local path at equal cores.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from images import BIN, build_folder, timed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=200)
    parser.add_argument("--method", default="blur")
    args = parser.parse_args()
    cores = os.cpu_count()
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch) / "photos"
        build_folder(folder, args.count)
        cases = {
            f"local ({cores} cores)": [],
            "ray, 1 worker": ["--backend", "ray", "--workers", "1"],
            f"ray, {cores} workers": ["--backend", "ray", "--workers", str(cores)],
        }
        seconds = {}
        for name, options in cases.items():
            out = Path(scratch) / name.replace(" ", "_")
            command = [str(BIN / "anoncli"), "anonymize", str(folder), "-o", str(out), "--method", args.method, "-q"]
            seconds[name] = timed(command + options)
            print(f"{name}: {seconds[name]:.1f} s, {args.count / seconds[name]:.2f} images/s", flush=True)
        local, wide = seconds[f"local ({cores} cores)"], seconds[f"ray, {cores} workers"]
        print(f"Ray's overhead at equal cores ({cores}): {100 * (wide / local - 1):+.0f} % of the local time")


if __name__ == "__main__":
    main()
