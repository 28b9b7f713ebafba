"""Build sample_data/ from public-domain images that scikit-image ships (NASA photos).

Run once by hand (needs scikit-image, a dev dependency); the results are committed:
    .venv/bin/python scripts/make_sample_data.py
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import skimage.data
from PIL import Image

OUT = Path(__file__).resolve().parent.parent / "sample_data"
EXIF_ORIENTATION = 0x0112


def astronaut_bust() -> Image.Image:
    """Eileen Collins' head and shoulders from skimage's astronaut() (NASA, public domain)."""
    return Image.fromarray(skimage.data.astronaut()).crop((110, 0, 350, 300))


def crowd_scene() -> Image.Image:
    """A 1600×1000 scene with the bust at many sizes, from 24 px faces upward, some mirrored."""
    rocket = Image.fromarray(skimage.data.rocket()).resize((1600, 2400)).crop((0, 700, 1600, 1700))
    canvas = rocket.copy()
    bust = astronaut_bust()
    rng = np.random.default_rng(7)
    placements = [
        (60, 560, 400),
        (520, 620, 300),
        (900, 700, 220),
        (1180, 760, 160),
        (1380, 800, 110),
        (1500, 850, 70),
        (300, 200, 80),
        (700, 260, 60),
        (1000, 180, 50),
    ]
    for x, y, height in placements:
        width = round(bust.width * height / bust.height)
        piece = bust.resize((width, height), Image.LANCZOS)
        if rng.random() < 0.4:
            piece = piece.transpose(Image.FLIP_LEFT_RIGHT)
        canvas.paste(piece, (x, y))
    return canvas


def walking_clip(path: Path, seconds: float = 2.0) -> None:
    """The bust crossing the rocket scene at 29.97 fps with a quiet 440 Hz tone: a small video sample."""
    fps = Fraction(30000, 1001)
    background = np.asarray(Image.fromarray(skimage.data.rocket()).resize((640, 960)).crop((0, 300, 640, 660)))
    person = np.asarray(astronaut_bust().resize((160, 200)))
    frames = round(seconds * fps)
    with av.open(str(path), "w") as container:
        video = container.add_stream("libx264", rate=fps, options={"crf": "26", "preset": "slow"})
        video.width, video.height, video.pix_fmt = 640, 360, "yuv420p"
        sound = container.add_stream("aac", rate=48000, layout="mono")
        for index in range(frames):
            canvas = background.copy()
            x = round(20 + 420 * index / frames)
            canvas[140:340, x : x + 160] = person
            frame = av.VideoFrame.from_ndarray(canvas, format="rgb24")
            frame.pts, frame.time_base = index, 1 / fps
            container.mux(video.encode(frame))
        container.mux(video.encode(None))
        tone = (np.sin(np.arange(int(48000 * frames / fps)) * 2 * np.pi * 440 / 48000) * 0.1).astype(np.float32)
        for start in range(0, len(tone), 1024):
            chunk = av.AudioFrame.from_ndarray(tone[None, start : start + 1024], format="flt", layout="mono")
            chunk.sample_rate, chunk.pts = 48000, start
            container.mux(sound.encode(chunk))
        container.mux(sound.encode(None))


def main() -> None:
    (OUT / "scenes").mkdir(parents=True, exist_ok=True)
    (OUT / "videos").mkdir(parents=True, exist_ok=True)
    astronaut = Image.fromarray(skimage.data.astronaut())
    astronaut.save(OUT / "astronaut.jpg", quality=90)
    crowd_scene().save(OUT / "scenes" / "crowd.jpg", quality=88)
    # Stored sideways with EXIF orientation 6, as phones do: faces must be found in the upright image.
    rotated = astronaut.transpose(Image.ROTATE_90)
    exif = Image.Exif()
    exif[EXIF_ORIENTATION] = 6
    rotated.save(OUT / "scenes" / "phone_rotated.jpg", quality=90, exif=exif.tobytes())
    walking_clip(OUT / "videos" / "walking.mp4")


if __name__ == "__main__":
    main()
