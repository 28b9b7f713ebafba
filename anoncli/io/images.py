"""Reading and writing image files without losing what the user cares about.

Every image is turned upright (EXIF orientation), decoded to an array in its own depth (8- or 16-bit) and
channels (gray, gray+alpha, RGB, RGBA), and written back in the source's format and encoding settings. The
detectors and methods only ever see an RGB uint8 view (`rgb8`); `from_rgb8` maps their pixels back.
"""

from __future__ import annotations

import io
import sys
import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageOps, ImageSequence, JpegImagePlugin

from anoncli.io.sources import is_stream

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".jpe", ".jfif", ".png", ".bmp", ".tif", ".tiff", ".webp", ".gif"})
DEFAULT_MAX_MEGAPIXELS = 150.0
# BT.601 luma: how bright R, G and B look, for grey conversions and brightness anywhere in anoncli.
LUMA_WEIGHTS = np.array([0.299, 0.587, 0.114], np.float32)

EXIF_ORIENTATION = 0x0112
EXIF_GPS_IFD = 0x8825
EXIF_SUB_IFD = 0x8769


class ImageReadError(Exception):
    """A file that cannot be used as an image; the message says why in plain words."""


@dataclass
class Picture:
    """A decoded image file: one or more frames plus what is needed to write it back alike."""

    frames: list[np.ndarray]  # each (H, W, C), uint8 or uint16, C = 1 (gray), 2 (gray+alpha), 3 or 4
    format: str  # PIL format name of the source: JPEG, PNG, GIF, ...
    save_options: dict = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    @property
    def width(self) -> int:
        return self.frames[0].shape[1]

    @property
    def height(self) -> int:
        return self.frames[0].shape[0]


def rgb8(frame: np.ndarray) -> np.ndarray:
    """The RGB uint8 view detectors and methods work on (alpha ignored: hidden pixels are anonymized too)."""
    if frame.dtype == np.uint16:
        frame = (frame >> 8).astype(np.uint8)
    channels = frame.shape[2]
    if channels in (1, 2):
        return np.repeat(frame[:, :, :1], 3, axis=2)
    return np.ascontiguousarray(frame[:, :, :3])


def from_rgb8(rgb: np.ndarray, like: np.ndarray) -> np.ndarray:
    """Map RGB uint8 pixels into the colour channels of `like`'s layout and depth (alpha not included)."""
    colour = rgb.astype(np.float32)
    if like.shape[2] in (1, 2):
        colour = colour @ LUMA_WEIGHTS[:, None]
    if like.dtype == np.uint16:
        colour = colour * 257.0
    return colour


def read_picture(path: Path, max_megapixels: float = DEFAULT_MAX_MEGAPIXELS, keep_metadata: bool = False) -> Picture:
    """Decode an image file (`-`: standard input), upright, or raise ImageReadError with a message fit for a
    user."""
    try:
        data = sys.stdin.buffer.read() if is_stream(path) else path.read_bytes()
    except OSError as error:
        raise ImageReadError(f"cannot read file: {error.strerror}") from None
    return decode_picture(data, max_megapixels, keep_metadata)


def pixels_of(path: Path) -> int:
    """Width × height from the file's header alone (0 when it cannot be read): what decoding it will cost."""
    if is_stream(path):
        return 0
    try:
        with _pil_limit_lifted(), Image.open(path) as image:
            return image.width * image.height
    except Exception:  # the reader gives the message; here it only costs nothing
        return 0


def decode_picture(data: bytes, max_megapixels: float = DEFAULT_MAX_MEGAPIXELS, keep_metadata: bool = False) -> Picture:
    """Decode an image file's bytes, upright, or raise ImageReadError."""
    if not data:
        raise ImageReadError("empty file (0 bytes)")
    try:
        with warnings.catch_warnings():
            # Our own limit (`_check_size`, which names the flag that lifts it) replaces PIL's warning and
            # error; PIL's process-wide setting is left as the caller set it.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            try:
                image = Image.open(io.BytesIO(data))
            except Image.DecompressionBombError:
                with _pil_limit_lifted():
                    image = Image.open(io.BytesIO(data))
            _check_size(image, max_megapixels)
            if _is_deep_colour(image):
                return _read_deep_colour(data, image, keep_metadata)
            return _read_with_pil(image, keep_metadata)
    except ImageReadError:
        raise
    except Image.UnidentifiedImageError:
        raise ImageReadError("not an image, or an image format anoncli cannot read") from None
    except (OSError, SyntaxError, ValueError, EOFError) as error:
        raise ImageReadError(f"corrupt or truncated image ({error})") from None


_pil_limit_lock = threading.Lock()


@contextmanager
def _pil_limit_lifted() -> Iterator[None]:
    """PIL's decompression-bomb error off while one image opens; `_check_size` applies our own limit."""
    with _pil_limit_lock:
        saved, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None
        try:
            yield
        finally:
            Image.MAX_IMAGE_PIXELS = saved


def _check_size(image: Image.Image, max_megapixels: float) -> None:
    width, height = image.size
    if width == 0 or height == 0:
        raise ImageReadError(f"image has no pixels ({width}×{height})")
    megapixels = width * height / 1e6
    if max_megapixels > 0 and megapixels > max_megapixels:
        raise ImageReadError(
            f"image is {width}×{height} ({megapixels:.0f} MP), above the {max_megapixels:g} MP safety limit "
            "against decompression bombs; raise it with --max-megapixels (0 = no limit)"
        )


def _is_deep_colour(image: Image.Image) -> bool:
    """16 bits per colour channel, which PIL would silently cut to 8 bits."""
    if image.mode not in ("RGB", "RGBA") or not image.tile:
        return False
    if image.format == "PNG":
        return ";16" in str(image.tile[0].args)
    if image.format == "TIFF":
        bits = image.tag_v2.get(258, (8,))
        return max(bits if isinstance(bits, tuple) else (bits,)) == 16
    return False


def _read_deep_colour(data: bytes, image: Image.Image, keep_metadata: bool) -> Picture:
    array = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if array is None or array.dtype != np.uint16:
        raise ImageReadError("corrupt or truncated 16-bit image")
    conversion = cv2.COLOR_BGRA2RGBA if array.shape[2] == 4 else cv2.COLOR_BGR2RGB
    array = cv2.cvtColor(array, conversion)
    array = _orient(array, image.getexif().get(EXIF_ORIENTATION, 1))
    notes = ["16-bit colour kept"]
    if keep_metadata:
        notes.append("metadata of 16-bit colour images is not kept")
    return Picture([array], image.format, {"deep_colour": True}, notes)


def _orient(array: np.ndarray, orientation: int) -> np.ndarray:
    """Apply an EXIF orientation (1–8) to an array, as ImageOps.exif_transpose does to a PIL image."""
    transforms = {
        2: lambda a: a[:, ::-1],
        3: lambda a: a[::-1, ::-1],
        4: lambda a: a[::-1],
        5: lambda a: np.swapaxes(a, 0, 1),
        6: lambda a: np.rot90(a, -1),
        7: lambda a: np.rot90(a, 1)[::-1],
        8: lambda a: np.rot90(a, 1),
    }
    return np.ascontiguousarray(transforms.get(orientation, lambda a: a)(array))


def _read_with_pil(image: Image.Image, keep_metadata: bool) -> Picture:
    source_format = image.format or "PNG"
    notes: list[str] = []
    options: dict = {}
    if "icc_profile" in image.info and image.mode != "CMYK":
        options["icc_profile"] = image.info["icc_profile"]
    if source_format in ("JPEG", "MPO"):
        options.update(_jpeg_encoding(image))
    if source_format == "WEBP":
        options["lossless"] = bool(image.info.get("lossless", False))
        options["quality"] = 100 if options["lossless"] else 90
    if source_format == "TIFF" and image.info.get("compression") not in (None, "raw"):
        options["compression"] = image.info["compression"]
    if keep_metadata:
        options.update(_kept_metadata(image))

    multi_frame = getattr(image, "n_frames", 1) > 1
    if source_format == "MPO":
        # The extra frames of a camera MPO are previews of the same scene: only the photo itself is kept.
        source_format = "JPEG"
        if multi_frame:
            notes.append("MPO previews dropped; the main photo is written as JPEG")
        multi_frame = False
    if multi_frame:
        frames = [_to_array(frame.copy()) for frame in ImageSequence.Iterator(image)]
        options["save_all"] = True
        options["durations"] = [frame.info.get("duration", 100) for frame in ImageSequence.Iterator(image)]
        options["loop"] = image.info.get("loop", 0)
        notes.append(f"all {len(frames)} frames anonymized")
    else:
        image.load()
        ImageOps.exif_transpose(image, in_place=True)  # a 50-MP photo: no second copy
        frames = [_to_array(image)]
    if image.mode == "CMYK":
        notes.append("CMYK converted to RGB")
    return Picture(frames, source_format, options, notes)


def _jpeg_encoding(image: Image.Image) -> dict:
    """The source's quantization tables and chroma subsampling, so output quality matches the input."""
    options: dict = {}
    tables = getattr(image, "quantization", None)
    if tables and len(tables) <= 2:
        options["qtables"] = [list(tables[key]) for key in sorted(tables)]
    else:
        options["quality"] = 92
    sampling = JpegImagePlugin.get_sampling(image)
    if sampling != -1:
        options["subsampling"] = sampling
    return options


def _kept_metadata(image: Image.Image) -> dict:
    """EXIF without GPS, and with orientation reset because pixels are written upright."""
    exif = image.getexif()
    exif.get_ifd(EXIF_SUB_IFD)  # loaded now, so it is written back with the rest
    exif.pop(EXIF_GPS_IFD, None)
    if EXIF_ORIENTATION in exif:
        exif[EXIF_ORIENTATION] = 1
    return {"exif": exif.tobytes()} if len(exif) else {}


def _to_array(image: Image.Image) -> np.ndarray:
    mode = image.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N"):
        array = np.asarray(image).astype(np.uint16)[:, :, None]
    elif mode in ("I", "F"):
        array = np.clip(np.asarray(image, dtype=np.float64), 0, 65535).astype(np.uint16)[:, :, None]
    elif mode in ("1", "L"):
        array = np.asarray(image.convert("L"))[:, :, None]
    elif mode in ("LA", "La"):
        array = np.asarray(image.convert("LA"))
    elif mode in ("RGBA", "RGBa", "PA") or (mode == "P" and "transparency" in image.info):
        array = np.asarray(image.convert("RGBA"))
    else:
        array = np.asarray(image if mode == "RGB" else image.convert("RGB"))
    return np.ascontiguousarray(array)


def _to_pil(frame: np.ndarray) -> Image.Image:
    if frame.shape[2] == 1:
        return Image.fromarray(frame[:, :, 0])  # L, or I;16 for uint16
    return Image.fromarray(frame)  # LA, RGB or RGBA by channel count


def encode_picture(picture: Picture, frames: list[np.ndarray]) -> bytes:
    """Encode frames like the source `picture` was encoded."""
    options = dict(picture.save_options)
    if options.pop("deep_colour", False):
        frame = frames[0]
        conversion = cv2.COLOR_RGBA2BGRA if frame.shape[2] == 4 else cv2.COLOR_RGB2BGR
        extension = ".png" if picture.format == "PNG" else ".tif"
        ok, buffer = cv2.imencode(extension, cv2.cvtColor(frame, conversion))
        if not ok:
            raise OSError(f"could not encode 16-bit {picture.format}")
        return buffer.tobytes()
    images = [_to_pil(frame) for frame in frames]
    if picture.format == "JPEG":
        images = [
            image if image.mode in ("L", "RGB") else image.convert("L" if image.mode == "LA" else "RGB")
            for image in images
        ]
    if options.pop("save_all", False):
        options.update(save_all=True, append_images=images[1:], duration=options.pop("durations"))
    buffer = io.BytesIO()
    images[0].save(buffer, format=picture.format, **options)
    return buffer.getvalue()
