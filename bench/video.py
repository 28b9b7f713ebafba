"""`anoncli video --method blur` against the I/O limit (bare ffmpeg decode + encode, same settings) and
against `deface`, on the same clip, in one run.

    .venv/bin/python bench/video.py [--clip PATH] [--detect-every 1]

Prints wall times, frames/s and the two ratios: anoncli time / bare ffmpeg time (target ≤ 1.5) and
anoncli fps / deface fps (target ≥ 3).
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import ffmpeg
import imageio_ffmpeg

from anoncli.io.video import probe_video

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CLIP = ROOT.parent / "shared" / "data" / "videos" / "facenet_pytorch_examples_video.mp4"
BIN = Path(sys.executable).parent


def timed(command: list[str]) -> float:
    started = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - started


def bare_ffmpeg(clip: Path, output: Path, bitrate: int) -> float:
    """Decode and re-encode with the settings anoncli uses by default, audio copied."""
    stream = ffmpeg.output(
        ffmpeg.input(str(clip)),
        str(output),
        vcodec="libx264",
        preset="veryfast",
        acodec="copy",
        **{"b:v": bitrate, "maxrate": int(bitrate * 1.2), "bufsize": int(bitrate * 2)},
    )
    started = time.perf_counter()
    ffmpeg.run(stream, cmd=imageio_ffmpeg.get_ffmpeg_exe(), overwrite_output=True, quiet=True)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clip", type=Path, default=DEFAULT_CLIP)
    parser.add_argument("--detect-every", type=int, default=1)
    args = parser.parse_args()
    info = probe_video(args.clip)
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        ffmpeg_seconds = bare_ffmpeg(args.clip, folder / "bare.mp4", info.bitrate)
        anoncli_seconds = timed(
            [
                str(BIN / "anoncli"),
                "video",
                str(args.clip),
                "-o",
                str(folder / "anoncli"),
                "--method",
                "blur",
                "--detect-every",
                str(args.detect_every),
                "--device",
                "cpu",
                "--quiet",
            ]
        )
        peer_input = folder / args.clip.name
        shutil.copy(args.clip, peer_input)
        deface_seconds = timed([str(BIN / "deface"), str(peer_input), "--keep-audio", "-o", str(folder / "deface.mp4")])
    frames = info.frames
    print(f"clip: {args.clip.name}, {info.width}×{info.height}, {frames} frames at {float(info.fps):.3f} fps")
    print(f"{'run':<36}{'seconds':>9}{'frames/s':>10}")
    for name, seconds in (
        ("bare ffmpeg decode + libx264 encode", ffmpeg_seconds),
        (f"anoncli video --method blur (k={args.detect_every})", anoncli_seconds),
        ("deface 1.5.0 --keep-audio", deface_seconds),
    ):
        print(f"{name:<36}{seconds:>9.2f}{frames / seconds:>10.1f}")
    print(f"anoncli time / bare ffmpeg time: {anoncli_seconds / ffmpeg_seconds:.2f} (target ≤ 1.5)")
    print(f"anoncli fps / deface fps:        {deface_seconds / anoncli_seconds:.2f} (target ≥ 3)")


if __name__ == "__main__":
    main()
