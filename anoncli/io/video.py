"""Video decoding, probing and encoding with PyAV (FFmpeg's libraries, libx264 included).

PyAV rather than piping raw frames through an ffmpeg process, because it keeps each frame's own timestamp:
29.97 fps stays 30000/1001, a variable frame rate stays in sync with the sound, and audio packets are copied
into the output bit for bit, interleaved with the video as they come.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

VIDEO_EXTENSIONS = frozenset({".mp4", ".mov", ".m4v", ".mkv", ".avi", ".webm", ".mpg", ".mpeg", ".ts", ".mts"})
DEFAULT_CODEC = "libx264"
X264_HIGHEST_CRF = 51  # x264 and x265; the VPx and AV1 encoders go to 63
HIGHEST_CRF = 63
# Tags that locate a person or identify their device are dropped unless --keep-metadata.
PERSONAL_TAG = re.compile(r"location|gps|iso6709|serial|make|model|software|device|camera|lens", re.IGNORECASE)


class VideoReadError(Exception):
    """A file that cannot be used as a video; the message says why in plain words."""


@dataclass
class VideoInfo:
    width: int
    height: int
    rotation: int  # degrees the player turns the coded picture (display matrix)
    fps: Fraction
    time_base: Fraction
    frames: int
    duration: float  # seconds
    bitrate: int  # video bits per second, measured from the packets
    codec: str
    pix_fmt: str
    has_audio: bool
    metadata: dict = field(default_factory=dict)


def _measure_packets(path: Path) -> tuple[int, int]:
    """(video packets, video payload bytes) by demuxing only: cheap, and right even when headers lie."""
    count = size = 0
    with av.open(str(path)) as container:
        for packet in container.demux(video=0):
            if packet.size:
                count += 1
                size += packet.size
    return count, size


def probe_video(path: Path) -> VideoInfo:
    try:
        size = path.stat().st_size
    except OSError as error:
        raise VideoReadError(f"cannot read file: {error.strerror}") from None
    if size == 0:
        raise VideoReadError("empty file (0 bytes)")
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise VideoReadError("no video stream in this file")
            stream = container.streams.video[0]
            context = stream.codec_context
            if container.format.name == "image2" or container.format.name.endswith("_pipe"):
                kind = context.name.upper().removeprefix("MJPEG").strip() or "JPEG"
                raise VideoReadError(f"a still image ({kind}), not a video: use `anoncli anonymize` for it")
            fps = stream.average_rate or stream.guessed_rate or Fraction(25)
            duration = _duration_seconds(container, stream)
            info = VideoInfo(
                width=context.width,
                height=context.height,
                rotation=0,
                fps=Fraction(fps),
                time_base=Fraction(stream.time_base),
                frames=stream.frames,
                duration=duration,
                bitrate=0,
                codec=context.name,
                pix_fmt=context.pix_fmt or "yuv420p",
                has_audio=bool(container.streams.audio),
                metadata=dict(container.metadata),
            )
            first = next(container.decode(video=0), None)
            if first is None:
                raise VideoReadError("the video stream holds no decodable frame")
            info.rotation = round(first.rotation) % 360
        frames, payload = _measure_packets(path)
        info.frames = info.frames or frames
        info.bitrate = round(payload * 8 / info.duration) if info.duration > 0 else 0
        return info
    except VideoReadError:
        raise
    except (av.error.FFmpegError, StopIteration, ValueError) as error:
        raise VideoReadError(f"corrupt, truncated or not a video ({error})") from None


def _duration_seconds(container: av.container.InputContainer, stream: av.video.stream.VideoStream) -> float:
    if stream.duration and stream.time_base:
        return float(stream.duration * stream.time_base)
    if container.duration:
        return container.duration / av.time_base
    return 0.0


@dataclass
class DecodedFrame:
    index: int
    pts: int | None
    frame: av.VideoFrame  # as decoded, coded orientation

    def upright_rgb(self, rotation: int) -> np.ndarray:
        """RGB uint8 as the viewer sees it (rotation applied), where faces are upright for the detector."""
        return np.ascontiguousarray(np.rot90(self.frame.to_ndarray(format="rgb24"), k=rotation // 90))


def decode_frames(path: Path) -> Iterator[DecodedFrame]:
    """Every frame in decoding-output order with its own timestamp; nothing dropped or duplicated."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        for index, frame in enumerate(container.decode(stream)):
            yield DecodedFrame(index, frame.pts, frame)


@dataclass
class EncoderSettings:
    codec: str = DEFAULT_CODEC
    bitrate: int | None = None  # bits/s; None with crf None: the source's bitrate
    crf: float | None = None
    preset: str = "veryfast"
    keep_metadata: bool = False

    def __post_init__(self) -> None:
        """Bad settings fail here, before any video is opened, rather than once per file."""
        try:
            encoder = av.codec.Codec(self.codec, "w")
        except ValueError:
            raise ValueError(f"--codec {self.codec}: FFmpeg has no encoder of that name") from None
        if encoder.type != "video":
            raise ValueError(f"--codec {self.codec}: an {encoder.type} encoder, not a video one")
        highest = X264_HIGHEST_CRF if encoder.name in ("libx264", "libx265") else HIGHEST_CRF
        if self.crf is not None and not 0 <= self.crf <= highest:
            raise ValueError(f"--crf {self.crf:g}: {encoder.name} takes 0–{highest}")


class VideoWriter:
    """Encodes frames with their source timestamps and copies the source's audio packets alongside."""

    def __init__(self, source: Path, output: Path, info: VideoInfo, settings: EncoderSettings) -> None:
        self.info = info
        self.output_container = av.open(str(output), mode="w", format=_container_format(output))
        self.source_container = av.open(str(source))
        source_video = self.source_container.streams.video[0]
        self.stream = self.output_container.add_stream(settings.codec, rate=info.fps)
        self.stream.width, self.stream.height = info.width, info.height
        self.stream.time_base = source_video.time_base
        self.stream.codec_context.time_base = source_video.time_base
        self.stream.pix_fmt = _pixel_format(settings.codec, info.pix_fmt)
        options = {"preset": settings.preset}
        if settings.crf is not None:
            options["crf"] = f"{settings.crf:g}"
        else:
            target = settings.bitrate or info.bitrate
            self.stream.bit_rate = target
            # A VBV cap and buffer hold the average close to the target even on short clips.
            options.update(maxrate=str(int(target * 1.2)), bufsize=str(int(target * 2)))
        self.stream.options = options
        self.stream.codec_context.thread_count = 0  # as many encoder threads as FFmpeg finds useful
        if info.rotation:
            self.stream.set_display_rotation(info.rotation)
        metadata = {k: v for k, v in info.metadata.items() if settings.keep_metadata or not PERSONAL_TAG.search(k)}
        metadata.pop("encoder", None)
        self.output_container.metadata.update(metadata)
        self.audio_in = self.source_container.streams.audio[0] if self.source_container.streams.audio else None
        self.audio_out = self.output_container.add_stream_from_template(self.audio_in) if self.audio_in else None
        self.audio_packets = self.source_container.demux(self.audio_in) if self.audio_in else iter(())
        self.pending_audio: av.Packet | None = None
        self.audio_copied = 0

    def write(self, frame: av.VideoFrame, pts: int | None) -> None:
        frame.pts = pts
        frame.time_base = self.stream.time_base
        for packet in self.stream.encode(frame):
            self._mux_audio_until(packet)
            self.output_container.mux(packet)

    def write_rgb(self, rgb: np.ndarray, pts: int | None, rotation: int) -> None:
        coded = np.ascontiguousarray(np.rot90(rgb, k=-(rotation // 90)))
        self.write(av.VideoFrame.from_ndarray(coded, format="rgb24"), pts)

    def _mux_audio_until(self, video_packet: av.Packet | None) -> None:
        """Copy source audio packets up to the video packet's time (all of them when it is None)."""
        limit = None
        if video_packet is not None and video_packet.dts is not None:
            limit = float(video_packet.dts * video_packet.time_base)
        while True:
            packet = self.pending_audio or next(self.audio_packets, None)
            self.pending_audio = None
            if packet is None:
                return
            if packet.dts is None:  # the demuxer's final flush packet carries nothing
                continue
            if limit is not None and float(packet.dts * packet.time_base) > limit:
                self.pending_audio = packet
                return
            packet.stream = self.audio_out
            self.output_container.mux(packet)
            self.audio_copied += 1

    def close(self) -> None:
        for packet in self.stream.encode(None):
            self._mux_audio_until(packet)
            self.output_container.mux(packet)
        self._mux_audio_until(None)
        self.output_container.close()
        self.source_container.close()

    def abort(self) -> None:
        for container in (self.output_container, self.source_container):
            with contextlib.suppress(av.error.FFmpegError):
                container.close()


def _container_format(output: Path) -> str | None:
    # Temporary outputs carry a suffix after the real extension; the muxer is chosen by the real one.
    suffixes = [s for s in output.suffixes if s.lower() in VIDEO_EXTENSIONS]
    return {
        ".mp4": "mp4",
        ".m4v": "mp4",
        ".mov": "mov",
        ".mkv": "matroska",
        ".webm": "webm",
        ".avi": "avi",
        ".ts": "mpegts",
        ".mts": "mpegts",
        ".mpg": "mpeg",
        ".mpeg": "mpeg",
    }.get(suffixes[-1].lower() if suffixes else "")


def _pixel_format(codec: str, source: str) -> str:
    supported = {f.name for f in av.codec.Codec(codec, "w").video_formats or ()}
    return source if source in supported else "yuv420p"
