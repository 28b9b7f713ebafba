"""Training throughput of `anoncli train deepprivacy` on this machine, per generator width.

    .venv/bin/python bench/train.py [--data ../shared/data/utkface] [--steps 12] [--channels 16,32,64,128,128 ...]

Runs the real command in a temporary folder (fresh weights, the mode-seeking loss on as in the shipped run,
the prepared-face cache of --data reused) and reads the images per second it logs over its steps. Other work
on the machine slows it: run it alone.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

REPOSITORY = Path(__file__).resolve().parent.parent
SHIPPED_WIDTH = "16,32,64,128,128"
WIDE_WIDTH = "32,64,128,256,256"


def images_per_second(data: Path, channels: str, steps: int, batch_size: int) -> float:
    with tempfile.TemporaryDirectory() as folder:
        work = Path(folder) / "work"
        command = [sys.executable, "-c", "from anoncli.cli import run; run()", "train", "deepprivacy"]
        command += ["--data", str(data)]
        command += ["--out", str(Path(folder) / "bench.pt"), "--work-dir", str(work), "--steps", str(steps)]
        command += ["--channels", channels, "--batch-size", str(batch_size), "--diversity", "2"]
        command += ["--device", "cpu", "-q"]
        subprocess.run(command, cwd=REPOSITORY, check=True, capture_output=True)
        last = (work / "log.jsonl").read_text().splitlines()[-1]
        return float(json.loads(last)["images_per_second"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=REPOSITORY.parent / "shared" / "data" / "utkface")
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--channels", nargs="+", default=[SHIPPED_WIDTH, WIDE_WIDTH])
    args = parser.parse_args()
    print(f"train deepprivacy, 64×64, batch {args.batch_size}, {args.steps} steps, CPU")
    for channels in args.channels:
        rate = images_per_second(args.data.resolve(), channels, args.steps, args.batch_size)
        print(f"channels {channels:>20}: {rate:6.2f} images/s, {rate / args.batch_size:5.3f} steps/s")


if __name__ == "__main__":
    main()
