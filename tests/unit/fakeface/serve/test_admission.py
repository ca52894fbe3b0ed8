"""Admission: header checks before decoding, call slots and the pixel budget in flight."""

from __future__ import annotations

import io
import threading
import time

import numpy as np
import pytest
from PIL import Image

from fakeface.rpc.fakeface.v1 import detector_pb2 as pb
from fakeface.serve.admission import Admission, InputLimits, Malformed, Refused, inspect_image, tolerant_deserializer
from vision.media import ImageError


def _png(width: int, height: int) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.zeros((height, width, 3), dtype=np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def test_header_is_read_without_decoding():
    header = inspect_image(_png(40, 30), InputLimits())
    assert (header.width, header.height, header.format, header.pixels) == (40, 30, "PNG", 1200)


@pytest.mark.parametrize("data, limits, words", [
    (b"", InputLimits(), "empty input"),
    (b"hello, not an image", InputLimits(), "not a decodable image"),
    (_png(100, 100), InputLimits(max_pixels=5_000), "decompression bomb"),
    (_png(4, 40), InputLimits(), "too small"),
    (_png(400, 10), InputLimits(max_aspect=8.0), "aspect ratio"),
], ids=["empty", "not-an-image", "bomb", "too-small", "elongated"])
def test_bad_images_are_refused_with_the_reason(data, limits, words):
    with pytest.raises(ImageError, match=words):
        inspect_image(data, limits)


def test_limits_are_validated_with_what_was_received():
    with pytest.raises(ValueError, match=r"max_pixels\n.*greater than 0.*input_value=0,"):
        InputLimits(max_pixels=0)
    with pytest.raises(ValueError, match=r"max_aspect\n.*greater than or equal to 1.*input_value=0\.5"):
        InputLimits(max_aspect=0.5)


def test_call_slots_refuse_one_more_and_free_on_exit():
    seen = []
    admission = Admission(max_calls=1, max_pixels=100, on_change=lambda c, p: seen.append((c, p)))
    with admission.call():
        with pytest.raises(Refused) as info:
            with admission.call():
                pass
        assert info.value.reason == "overload"
    assert admission.calls == 0 and seen == [(1, 0), (0, 0)]
    assert admission.wait_idle(0.01)


def test_pixel_budget_waits_for_room_then_refuses():
    admission = Admission(max_calls=4, max_pixels=100, pixel_wait_s=0.05)
    with admission.pixels_of(80, deadline_s=1.0):
        start = time.monotonic()
        with pytest.raises(Refused) as info:
            with admission.pixels_of(30, deadline_s=1.0):
                pass
        assert info.value.reason == "pixel_budget" and time.monotonic() - start >= 0.04
    # Alone, an image larger than the budget is still admitted (nothing else is in flight).
    with admission.pixels_of(500, deadline_s=1.0):
        assert admission.pixels == 500
    assert admission.pixels == 0


def test_a_waiting_image_gets_in_when_another_finishes():
    admission = Admission(max_calls=4, max_pixels=100, pixel_wait_s=2.0)
    got = threading.Event()
    holder = admission.pixels_of(80, deadline_s=5.0)
    holder.__enter__()

    def second():
        with admission.pixels_of(50, deadline_s=5.0):
            got.set()

    thread = threading.Thread(target=second)
    thread.start()
    time.sleep(0.1)
    assert not got.is_set()
    holder.__exit__(None, None, None)
    thread.join(5)
    assert got.is_set()


def test_tolerant_deserializer_turns_bad_bytes_into_malformed():
    parse = tolerant_deserializer(pb.ClassifyRequest)
    good = pb.ClassifyRequest(image=b"abc")
    assert parse(good.SerializeToString()).image == b"abc"
    bad = parse(b"\xff\xff\xff\xff")
    assert isinstance(bad, Malformed) and "malformed ClassifyRequest" in bad.reason
