"""What the service lets in: request checks before any decoding, and bounds on work in flight.

* `inspect_image` reads only the image header (PIL) and refuses, before a pixel is decoded,
  images that are too large, smaller than the agents' 8 px minimum, absurdly elongated, or
  progressive JPEGs with more scans than any encoder writes (each scan re-decodes the canvas).
* `Admission` bounds detector calls in flight (health checks are not counted) and the decoded
  pixels in flight, so a few huge images cannot take the memory many small ones would share.
* `tolerant_deserializer` turns a malformed protobuf into a `Malformed` request the servicer
  answers with INVALID_ARGUMENT (grpcio would answer INTERNAL without calling the handler).
"""

from __future__ import annotations

import contextlib
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterator

import pydantic
from google.protobuf.message import DecodeError
from pydantic import ConfigDict, Field, PositiveInt

from vision.media import ImageError, read_header

# JPEG start-of-scan marker; inside entropy-coded data 0xFF is always stuffed, so each one is a scan.
_JPEG_SOS = b"\xff\xda"


@pydantic.dataclasses.dataclass(frozen=True, config=ConfigDict(extra="forbid"))
class InputLimits:
    """Bounds on one request's content."""

    max_pixels: PositiveInt = 40_000_000  # decoded image size limit (decompression-bomb guard)
    min_side: PositiveInt = 8  # smallest image side the agents can use
    max_aspect: float = Field(32.0, ge=1)  # longest side / shortest side; beyond it no face can be found
    max_jpeg_scans: PositiveInt = 64  # progressive JPEG scans (encoders write about 10)
    max_source_chars: PositiveInt = 256  # ClassifyOptions.source length
    max_request_id_chars: PositiveInt = 64  # FeedbackRequest.request_id length (the server's ids are 32)


@dataclass(frozen=True)
class ImageHeader:
    """What an image's header says, read without decoding pixels."""

    width: int  # pixels per row
    height: int  # rows
    format: str  # PIL's format name (JPEG, PNG, ...)

    @property
    def pixels(self) -> int:
        return self.width * self.height


def inspect_image(data: bytes, limits: InputLimits) -> ImageHeader:
    """Checks an encoded image against ``limits`` from its header alone.

    Raises:
        ImageError: empty, not an image, or outside the limits (the message says which).
    """
    w, h, kind = read_header(data, max_pixels=limits.max_pixels)
    header = ImageHeader(width=w, height=h, format=kind)
    if min(w, h) < limits.min_side:
        raise ImageError(f"image too small: {w}x{h}, each side needs at least {limits.min_side} pixels")
    if max(w, h) / min(w, h) > limits.max_aspect:
        raise ImageError(f"aspect ratio out of range: {w}x{h} is more elongated than {limits.max_aspect:g}:1")
    if header.format == "JPEG":
        scans = data.count(_JPEG_SOS)
        if scans > limits.max_jpeg_scans:
            raise ImageError(f"refused a JPEG with {scans} scans (limit {limits.max_jpeg_scans}): decoding it would "
                             "cost far more than its size suggests")
    return header


class Refused(Exception):
    """A call is refused before its work starts (``reason`` for logs and metrics)."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


class Admission:
    """Bounds on detector calls and decoded pixels in flight.

    Args:
        max_calls: detector calls handled at once; one more is refused at once.
        max_pixels: decoded pixels of all admitted images together; an image that does not fit
            waits up to ``pixel_wait_s`` (or its deadline) for others to finish, then is refused.
            One image alone is always admitted when nothing else is in flight.
        pixel_wait_s: longest wait for pixel budget.
        on_change: called with (calls, pixels) after every change (metrics gauges).
    """

    def __init__(self, max_calls: int, max_pixels: int, *, pixel_wait_s: float = 1.0,
                 on_change: Callable[[int, int], None] | None = None) -> None:
        self.max_calls = int(max_calls)
        self.max_pixels = int(max_pixels)
        self.pixel_wait_s = float(pixel_wait_s)
        self._on_change = on_change
        self._cond = threading.Condition()
        self.calls = 0
        self.pixels = 0

    def _changed(self) -> None:
        if self._on_change is not None:
            self._on_change(self.calls, self.pixels)

    def _add(self, *, calls: int = 0, pixels: int = 0) -> None:
        """Changes what is in flight (the caller holds the lock) and reports the new totals."""
        self.calls += calls
        self.pixels += pixels
        self._changed()

    @contextlib.contextmanager
    def _given_back(self, *, calls: int = 0, pixels: int = 0) -> Iterator[None]:
        """Gives held calls and pixels back when the block ends, however it ends, waking waiters."""
        try:
            yield
        finally:
            with self._cond:
                self._add(calls=-calls, pixels=-pixels)
                self._cond.notify_all()

    @contextlib.contextmanager
    def call(self) -> Iterator[None]:
        """Holds one call slot; raises `Refused` when all are taken."""
        with self._cond:
            if self.calls >= self.max_calls:
                raise Refused("overload", f"the server is at its limit of {self.max_calls} calls in flight; "
                                          "retry after a short back-off")
            self._add(calls=1)
        with self._given_back(calls=1):
            yield

    def wait_idle(self, timeout_s: float) -> bool:
        """Blocks until no call is in flight (True) or ``timeout_s`` passed (False)."""
        until = time.monotonic() + max(float(timeout_s), 0.0)
        with self._cond:
            while self.calls > 0:
                left = until - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(left)
            return True

    @contextlib.contextmanager
    def pixels_of(self, count: int, deadline_s: float) -> Iterator[None]:
        """Holds ``count`` pixels of budget; raises `Refused` when they do not free up in time."""
        count = int(count)
        until = time.monotonic() + max(min(self.pixel_wait_s, deadline_s), 0.0)
        with self._cond:
            while self.pixels > 0 and self.pixels + count > self.max_pixels:
                left = until - time.monotonic()
                if left <= 0:
                    raise Refused("pixel_budget", f"{count} pixels do not fit the server's budget of "
                                                  f"{self.max_pixels} decoded pixels in flight "
                                                  f"({self.pixels} taken); retry after a short back-off")
                self._cond.wait(left)
            self._add(pixels=count)
        with self._given_back(pixels=count):
            yield


@dataclass(frozen=True)
class Malformed:
    """A request whose bytes are not a valid protobuf message (answered INVALID_ARGUMENT)."""

    reason: str  # what the parser said, shortened


def tolerant_deserializer(message_cls: Any) -> Callable[[bytes], Any]:
    """``message_cls.FromString`` that returns `Malformed` instead of raising on bad bytes."""

    def parse(data: bytes) -> Any:
        try:
            return message_cls.FromString(data)
        except (DecodeError, RecursionError, ValueError, UnicodeDecodeError) as err:
            return Malformed(reason=f"malformed {message_cls.DESCRIPTOR.name}: {str(err)[:120] or type(err).__name__}")

    return parse
