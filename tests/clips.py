"""Short test videos rendered on the fly: a real face (NASA's astronaut) moving over a textured background."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np
from PIL import Image

SAMPLE_DATA = Path(__file__).resolve().parent.parent / "sample_data"
FACE_BOX_IN_BUST = (68, 56, 161, 180)  # where the face lies inside the bust crop below (x1, y1, x2, y2)


def bust() -> np.ndarray:
    astronaut = Image.open(SAMPLE_DATA / "astronaut.jpg").convert("RGB")
    return np.asarray(astronaut.crop((110, 0, 350, 300)).resize((180, 225)))


def face_box(frame: int, width: int) -> tuple[float, float, float, float]:
    """Where the face is in frame `frame` of a clip `width` wide (upright coordinates)."""
    x = 20 + (width - 220) * frame / 60
    scale = 180 / 240
    x1, y1, x2, y2 = FACE_BOX_IN_BUST
    return (x + x1 * scale, 40 + y1 * scale, x + x2 * scale, 40 + y2 * scale)


def upright_frame(frame: int, width: int, height: int, rng: np.random.Generator, smeared: bool = False) -> np.ndarray:
    """The picture of frame `frame`; `smeared` adds a heavy motion blur, as a fast movement does, that the
    detector misses although the person is still there."""
    background = np.full((height, width, 3), 90, np.uint8) + rng.integers(0, 40, (height, width, 3), dtype=np.uint8)
    person = bust()
    x = round(20 + (width - 220) * frame / 60)
    canvas = background.copy()
    piece = cv2.filter2D(person, -1, np.ones((1, 41)) / 41) if smeared else person
    canvas[40 : 40 + piece.shape[0], x : x + piece.shape[1]] = piece
    return canvas


def render_clip(
    path: Path,
    frames: int = 45,
    fps: Fraction = Fraction(30000, 1001),
    size: tuple[int, int] = (480, 320),
    audio: bool = True,
    variable_rate: bool = False,
    rotation: int = 0,
    smeared: tuple[int, ...] = (),
    bitrate: int = 1_500_000,
    metadata: dict[str, str] | None = None,
) -> None:
    """Write an H.264 clip; the face in `smeared` frames is motion-blurred past what the detector finds."""
    rng = np.random.default_rng(0)
    width, height = size
    with av.open(str(path), "w") as container:
        container.metadata.update(metadata or {})
        stream = container.add_stream("libx264", rate=fps)
        coded_w, coded_h = (height, width) if rotation in (90, 270) else (width, height)
        stream.width, stream.height, stream.pix_fmt = coded_w, coded_h, "yuv420p"
        stream.bit_rate = bitrate
        time_base = Fraction(1, 90000)
        stream.time_base = stream.codec_context.time_base = time_base
        if rotation:
            stream.set_display_rotation(rotation)
        sound = container.add_stream("aac", rate=48000, layout="mono") if audio else None
        pts = 0
        for index in range(frames):
            picture = upright_frame(index, width, height, rng, smeared=index in smeared)
            coded = np.ascontiguousarray(np.rot90(picture, k=-(rotation // 90)))
            frame = av.VideoFrame.from_ndarray(coded, format="rgb24")
            frame.pts, frame.time_base = pts, time_base
            step = 1 / fps if not variable_rate else (1 / fps) * (1 + (index % 3))
            pts += round(step / time_base)
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
        if sound is not None:
            seconds = float(pts * time_base)
            samples = np.sin(np.arange(int(48000 * seconds)) * 2 * np.pi * 440 / 48000).astype(np.float32) * 0.3
            for start in range(0, len(samples), 1024):
                chunk = av.AudioFrame.from_ndarray(samples[None, start : start + 1024], format="flt", layout="mono")
                chunk.sample_rate, chunk.pts = 48000, start
                container.mux(sound.encode(chunk))
            container.mux(sound.encode(None))


def remux_with_index_first(source: Path, target: Path) -> None:
    """Copy `source`'s streams into an MP4 whose index comes before the media (`movflags=+faststart`), the
    layout in which a cut-off file still opens and announces its full length."""
    with av.open(str(source)) as reading, av.open(str(target), "w", options={"movflags": "+faststart"}) as writing:
        streams = {stream.index: writing.add_stream_from_template(stream) for stream in reading.streams}
        for packet in reading.demux():
            if packet.dts is None:
                continue
            packet.stream = streams[packet.stream.index]
            writing.mux(packet)
