"""Media in and out: which files are images or videos, decoding, reading, frame sampling, encoding.

The one place that knows file extensions, how bytes become RGB pixels and how a video becomes
sampled frames, so `classify`, `batch`, `dataset build`, the server and the page accept the same
files and see the same pixels.

Videos are read sequentially (``grab`` every frame, ``retrieve`` only the sampled ones): seeking
in H.264 lands on key frames and is slower and less exact than decoding straight through.
"""

from __future__ import annotations

import io
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import cv2
import numpy as np

from agents.errors import raised_as, read_bytes
from agents.preprocessing import as_rgb_uint8

# File extensions (lower case, with the dot) of the inputs every command accepts.
IMAGE_EXTENSIONS: tuple[str, ...] = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".avif", ".heic",
                                      ".heif")
VIDEO_EXTENSIONS: tuple[str, ...] = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v")
# Frame rate assumed when a container does not report one (the common broadcast rate).
FALLBACK_FPS = 25.0
# Largest decoded image, in pixels, unless a caller sets its own limit.
MAX_PIXELS = 40_000_000
# PIL format names decoded by PIL, not OpenCV: HEIF/HEIC is what an iPhone's camera saves (a photo
# of a screen), read through pillow-heif's opener; OpenCV reads AVIF but ignores its orientation.
PIL_DECODED = ("HEIF", "AVIF")


class ImageError(ValueError):
    """An input that is not a usable image (empty, undecodable, too large); the message says why."""


class VideoError(ValueError):
    """A video that cannot be opened or has no decodable frames; the message says which and why."""


def media_kind(path: str | os.PathLike[str]) -> str | None:
    """"image", "video" or None, from the file extension."""
    suffix = Path(path).suffix.lower()
    if suffix in IMAGE_EXTENSIONS:
        return "image"
    if suffix in VIDEO_EXTENSIONS:
        return "video"
    return None


def is_video(path: str | os.PathLike[str]) -> bool:
    """True for a video file extension (frames are sampled from it)."""
    return media_kind(path) == "video"


def is_image(path: str | os.PathLike[str]) -> bool:
    """True for an image file extension."""
    return media_kind(path) == "image"


# --------------------------------------------------------------------------- images


def read_header(data: bytes, *, max_pixels: int = MAX_PIXELS) -> tuple[int, int, str]:
    """(width, height, PIL format name) of an encoded image, from its header alone: PIL reads the
    size without decoding pixels, so a small file that claims a huge canvas is refused before
    any memory is spent on it.

    Raises:
        ImageError: empty input, not an image, or more than ``max_pixels`` pixels.
    """
    from PIL import Image, UnidentifiedImageError

    if data is not None and data[4:8] == b"ftyp":  # an ISO-BMFF still (HEIC; AVIF PIL reads itself)
        enable_heif()
    if data is None or len(data) == 0:
        raise ImageError("empty input: no image bytes were received")
    try:
        with warnings.catch_warnings():
            # PIL warns (not raises) between its two bomb limits; our own limit decides.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as header:
                (width, height), kind = header.size, str(header.format)
    except Image.DecompressionBombError as exc:
        raise ImageError(f"refused a decompression bomb: {exc}") from exc
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise ImageError(f"not a decodable image ({len(data)} bytes; JPEG, PNG, WebP, AVIF, HEIC, BMP or TIFF "
                         "expected)") from exc
    if width * height > max_pixels:
        raise ImageError(
            f"refused a decompression bomb: the header claims {width}x{height} = {width * height} pixels, "
            f"more than the limit of {max_pixels}"
        )
    return int(width), int(height), kind


def enable_heif() -> None:
    """Lets PIL open HEIF/HEIC files (once per process; a no-op without pillow-heif). Decoding calls it
    itself; a caller that writes HEIC with PIL calls it first."""
    global _HEIF_REGISTERED
    if not _HEIF_REGISTERED:
        _HEIF_REGISTERED = True
        try:
            from pillow_heif import register_heif_opener
        except ImportError:  # an install without the optional decoder: HEIC is refused as undecodable
            return
        register_heif_opener()


_HEIF_REGISTERED = False


def _decode_with_pil(data: bytes) -> np.ndarray:
    """RGB uint8 pixels of an image PIL decodes, turned upright by its EXIF orientation (as
    OpenCV does for the formats it decodes)."""
    from PIL import Image, ImageOps

    with Image.open(io.BytesIO(data)) as image:
        return np.asarray(ImageOps.exif_transpose(image).convert("RGB"))


def image_file_size(path: str | os.PathLike[str]) -> tuple[int, int] | None:
    """(width, height) of an image file from its header (no pixels decoded); None when the file
    cannot be read as an image."""
    from PIL import Image

    enable_heif()
    try:
        with Image.open(path) as image:
            return image.size
    except (OSError, ValueError):
        return None


def decode_image(data: bytes, *, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """Decodes JPEG/PNG/WebP/AVIF/HEIC/BMP/TIFF bytes to RGB uint8, refusing anything unsafe (the
    header is checked first, :func:`read_header`).

    Raises:
        ImageError: empty input, undecodable data, or more than ``max_pixels`` pixels.
    """
    width, height, kind = read_header(data, max_pixels=max_pixels)
    if kind in PIL_DECODED:
        try:
            return _decode_with_pil(data)
        except (OSError, ValueError, SyntaxError) as exc:
            raise ImageError(f"not a decodable image ({len(data)} bytes; the {width}x{height} {kind} header is "
                             "corrupt or the pixel data is truncated)") from exc
    if kind == "PNG" and _plain_png(data):
        try:
            return _decode_plain_png(data)
        except RuntimeError:
            pass  # damaged: OpenCV's decoder below says so as for any other image
    # Decoded straight to RGB: the same pixels as BGR then swapped, without the swap's pass over
    # them (0.6 ms of a 1024 px PNG's 18).
    rgb = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_COLOR_RGB)
    if rgb is None or rgb.size == 0:
        raise ImageError(f"not a decodable image ({len(data)} bytes; the {width}x{height} header is corrupt "
                         "or the pixel data is truncated)")
    return rgb


def _plain_png(data: bytes) -> bool:
    """Whether PNG bytes hold 8-bit RGB or RGBA pixels, not interlaced, with no EXIF chunk (whose
    orientation OpenCV applies, wherever the chunk sits) nor animation: what libspng decodes to
    OpenCV's very pixels (:func:`_decode_plain_png`)."""
    if len(data) < 33 or data[12:16] != b"IHDR" or data[24] != 8 or data[25] not in (2, 6) or data[28] != 0:
        return False
    at, pixels = 8, False
    while at + 8 <= len(data):  # chunk by chunk (length, type, body, CRC): only the headers are read
        length, kind = int.from_bytes(data[at:at + 4], "big"), data[at + 4:at + 8]
        if kind in (b"eXIf", b"acTL"):
            return False
        pixels = pixels or kind == b"IDAT"
        if kind == b"IEND":
            break
        at += 12 + length
    return pixels


def _decode_plain_png(data: bytes) -> np.ndarray:
    """RGB uint8 pixels of a :func:`_plain_png` (alpha dropped, as OpenCV drops it) by libspng: the
    same pixels as OpenCV's libpng, sooner (1024 px portraits: 14.4 ms, not 16.7; 600 px photos:
    5.2, not 6.0; 2026-12-06, one core). Raises RuntimeError on damaged data."""
    import pyspng

    return pyspng.load(data, format="RGB")


def read_image(path: str | os.PathLike[str], *, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """Reads an image file to RGB uint8.

    Raises:
        ImageError: naming the file, when it cannot be read or decoded.
    """
    data = read_bytes(path, error=ImageError)
    with raised_as(ImageError, Path(path), catch=(ImageError,)):
        return decode_image(data, max_pixels=max_pixels)


def as_rgb(image: np.ndarray) -> np.ndarray:
    """Validates an image array and returns it as contiguous RGB uint8 (H, W, 3)."""
    if not isinstance(image, np.ndarray):
        raise ValueError(f"Expected a numpy image array, received {type(image).__name__}.")
    return np.ascontiguousarray(as_rgb_uint8(image, min_side=2))


def encode_png(rgb: np.ndarray) -> bytes:
    """PNG bytes of an RGB uint8 image (lossless, so a frame sent on keeps its decoded pixels)."""
    ok, buf = cv2.imencode(".png", cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2BGR))
    if not ok:
        raise ValueError(f"OpenCV could not PNG-encode an image of shape {rgb.shape}.")
    return buf.tobytes()


def encode_frame(rgb: np.ndarray, max_bytes: int) -> bytes:
    """A video frame's bytes to send on as one image call: PNG (its decoded pixels exactly) when
    that fits in ``max_bytes``, else JPEG at quality 95, halving the frame until it fits.

    A 4K frame is often 10-20 MB as PNG, above a server's 8 MiB message limit; the frame has
    already been through the video's lossy codec, so one more light JPEG pass changes little,
    and it is always better than the frame being refused as "too large".

    Raises:
        ValueError: ``max_bytes`` is too small for even a tiny JPEG of the frame.
    """
    png = encode_png(rgb)
    if len(png) <= max_bytes:
        return png
    bgr = cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2BGR)
    while min(bgr.shape[:2]) >= 16:
        ok, buf = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, 95])
        if ok and buf.size <= max_bytes:
            return buf.tobytes()
        bgr = cv2.resize(bgr, (bgr.shape[1] // 2, bgr.shape[0] // 2), interpolation=cv2.INTER_AREA)
    raise ValueError(f"a {rgb.shape[1]}x{rgb.shape[0]} frame does not fit in {max_bytes} bytes even as a small JPEG.")


# --------------------------------------------------------------------------- videos


@dataclass(frozen=True)
class VideoInfo:
    """What the container says about a video."""

    frame_count: int  # frames according to the container (0 when unknown)
    fps: float  # frames per second according to the container (0 when unknown)
    width: int  # frame width in pixels
    height: int  # frame height in pixels


@dataclass(frozen=True)
class Frame:
    """One sampled video frame."""

    index: int  # frame number in the file
    time_s: float  # presentation time in seconds
    rgb: np.ndarray  # RGB uint8 pixels


def _open(path: str | os.PathLike[str]) -> cv2.VideoCapture:
    capture = cv2.VideoCapture(os.fspath(path))
    if not capture.isOpened():
        capture.release()
        raise VideoError(f"{path}: cannot open video (unsupported codec or not a video)")
    return capture


def probe_video(path: str | os.PathLike[str]) -> VideoInfo:
    """Reads a video's frame count, rate and size without decoding frames.

    Raises:
        VideoError: when OpenCV cannot open the file.
    """
    capture = _open(path)
    try:
        fps = float(capture.get(cv2.CAP_PROP_FPS) or 0.0)
        return VideoInfo(
            frame_count=max(0, int(capture.get(cv2.CAP_PROP_FRAME_COUNT))),
            fps=fps if np.isfinite(fps) and fps > 0 else 0.0,
            width=int(capture.get(cv2.CAP_PROP_FRAME_WIDTH)),
            height=int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT)),
        )
    finally:
        capture.release()


def frame_indices(info: VideoInfo, *, fps: float | None = None, frames: int | None = None) -> list[int] | None:
    """Which frames to keep: at ``fps`` per second, or ``frames`` spread evenly over the video.

    Returns:
        Sorted frame indices, or None for "every step-th frame" when the container does not
        know its length (with ``frames``) -- :func:`sample_frames` then steps at one second.

    Raises:
        ValueError: both or bad ``fps`` / ``frames``.
    """
    if fps is not None and frames is not None:
        raise ValueError(f"Give fps or frames, not both (received fps={fps}, frames={frames}).")
    if fps is not None and not fps > 0:
        raise ValueError(f"fps must be positive, received {fps}.")
    if frames is not None and frames < 1:
        raise ValueError(f"frames must be at least 1, received {frames}.")
    if info.frame_count <= 0:
        return None
    if frames is not None:
        count = min(frames, info.frame_count)
        # Centre each sample in its slice of the video, so 1 frame is the middle one.
        return sorted({int((i + 0.5) * info.frame_count / count) for i in range(count)})
    return list(range(0, info.frame_count, _step(info, fps)))


def _step(info: VideoInfo, fps: float | None) -> int:
    return max(1, int(round((info.fps or FALLBACK_FPS) / (fps or 1.0))))


def sample_frames(path: str | os.PathLike[str], *, fps: float | None = None, frames: int | None = None,
                  max_frames: int | None = None) -> Iterator[Frame]:
    """Yields the sampled frames of a video: about ``fps`` per second (default 1), or ``frames``
    spread evenly over it; at most ``max_frames``.

    Raises:
        VideoError: the file cannot be opened as a video or yields no frame at all.
        ValueError: bad arguments.
    """
    if max_frames is not None and max_frames < 1:
        raise ValueError(f"max_frames must be >= 1, received {max_frames}.")
    info = probe_video(path)
    wanted = frame_indices(info, fps=fps, frames=frames)
    wanted_set = set(wanted) if wanted is not None else None
    last = max(wanted) if wanted else None
    step = _step(info, fps)
    native = info.fps or FALLBACK_FPS
    capture = _open(path)
    yielded = index = 0
    try:
        while (last is None or index <= last) and (max_frames is None or yielded < max_frames):
            if not capture.grab():
                break
            if (index in wanted_set) if wanted_set is not None else index % step == 0:
                ok, bgr = capture.retrieve()
                if ok and bgr is not None:
                    yielded += 1
                    yield Frame(index=index, time_s=index / native, rgb=cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
            index += 1
    finally:
        capture.release()
    if yielded == 0:
        raise VideoError(f"{path}: no decodable frame (empty, truncated or corrupt video)")
