"""Image decoding and checking (`vision.media`): colours kept, unsafe or broken input refused."""

from __future__ import annotations

import struct
import zlib

import cv2
import numpy as np
import pytest

from crops import pil_encoded
from vision.media import ImageError, as_rgb, decode_image, is_image, read_image


def png_claiming(width: int, height: int) -> bytes:
    """A tiny, well-formed PNG whose header claims width x height pixels."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 16)) + chunk(b"IEND", b"")


def test_decode_image_round_trips_colour():
    image = np.zeros((20, 30, 3), np.uint8)
    image[:, :, 0] = 255  # pure red in RGB
    ok, png = cv2.imencode(".png", cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    assert ok
    decoded = decode_image(png.tobytes())
    assert decoded.shape == (20, 30, 3)
    np.testing.assert_array_equal(decoded[0, 0], [255, 0, 0])


@pytest.mark.parametrize("shape,dtype", [((40, 30), np.uint8), ((40, 30, 4), np.uint8), ((40, 30, 3), np.uint16),
                                         ((40, 30), np.uint16)])
@pytest.mark.parametrize("ext", [".png", ".tiff"])
def test_decode_image_gives_three_channel_rgb_of_any_layout(shape, dtype, ext):
    # Grey, with alpha, 16 bits: the same 8-bit RGB as OpenCV's BGR decoding with its channels swapped.
    values = np.random.default_rng(3).integers(0, np.iinfo(dtype).max, shape, dtype=dtype)
    ok, data = cv2.imencode(ext, values)
    assert ok
    decoded = decode_image(data.tobytes())
    assert decoded.shape == (40, 30, 3) and decoded.dtype == np.uint8
    np.testing.assert_array_equal(decoded, cv2.imdecode(data, cv2.IMREAD_COLOR)[:, :, ::-1])


def _pil_png(image: np.ndarray, **options) -> bytes:
    import io

    from PIL import Image

    out = io.BytesIO()
    Image.fromarray(image).save(out, format="PNG", **options)
    return out.getvalue()


def test_an_8_bit_rgb_or_rgba_png_is_decoded_by_libspng_to_opencvs_very_pixels(monkeypatch):
    import vision.media as media

    rng = np.random.default_rng(5)
    rgb = cv2.GaussianBlur(rng.integers(0, 256, (97, 131, 3), np.uint8), (0, 0), 1.0)
    rgba = np.dstack([rgb, rng.integers(0, 256, (97, 131), np.uint8)])
    fast, real = [], media._decode_plain_png
    monkeypatch.setattr(media, "_decode_plain_png", lambda data: fast.append(1) or real(data))
    for data in (cv2.imencode(".png", rgb)[1].tobytes(), cv2.imencode(".png", rgba)[1].tobytes(),
                 _pil_png(rgb, optimize=True), _pil_png(rgba)):
        expected = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)[:, :, ::-1]
        np.testing.assert_array_equal(decode_image(data), expected)
    assert len(fast) == 4


def test_a_png_with_exif_grey_or_broken_is_left_to_opencv():
    from PIL import Image

    import vision.media as media

    stored = np.zeros((40, 60, 3), np.uint8)
    stored[:, :10] = (250, 30, 30)
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90° clockwise to display": OpenCV turns the picture upright
    turned = _pil_png(stored, exif=exif.tobytes())
    assert not media._plain_png(turned) and decode_image(turned).shape == (60, 40, 3)
    chunks, at = [], 8  # the EXIF chunk moved after the pixel data: OpenCV still turns the picture
    while at < len(turned):
        chunks.append(turned[at:at + 12 + int.from_bytes(turned[at:at + 4], "big")])
        at += len(chunks[-1])
    late = turned[:8] + b"".join(c for c in chunks[:-1] if c[4:8] != b"eXIf")
    late += b"".join(c for c in chunks if c[4:8] == b"eXIf") + chunks[-1]
    assert not media._plain_png(late) and decode_image(late).shape == (60, 40, 3)
    assert not media._plain_png(cv2.imencode(".png", stored[:, :, 0])[1].tobytes())  # grey
    assert media._plain_png(_pil_png(stored))
    whole = cv2.imencode(".png", np.random.default_rng(0).integers(0, 255, (80, 80, 3), np.uint8))[1].tobytes()
    with pytest.raises(ImageError, match="80x80 header is corrupt or the pixel data is truncated"):
        decode_image(whole[: len(whole) // 2])  # libspng refuses it; OpenCV's message names the fault


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "empty input"),
        (b"this is not an image" * 20, "not a decodable image"),
        (png_claiming(50_000, 50_000), "decompression bomb"),
        (png_claiming(8_000, 8_000), "64000000 pixels"),
    ],
)
def test_decode_image_refuses_bad_input(data, reason):
    with pytest.raises(ImageError, match=reason):
        decode_image(data)


def test_read_image_names_the_file(tmp_path):
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"\xff\xd8\xff garbage")
    with pytest.raises(ImageError, match="broken.jpg"):
        read_image(bad)
    with pytest.raises(ImageError, match="missing.png: cannot read file"):
        read_image(tmp_path / "missing.png")


@pytest.mark.parametrize("fmt", ["HEIF", "AVIF"])
def test_decode_image_reads_phone_formats_upright(fmt):
    # An iPhone saves its photos as HEIC with an EXIF orientation: a photo of a screen must come out
    # as the person saw it, like a JPEG does through OpenCV.
    tall = np.zeros((60, 40, 3), np.uint8)
    tall[:10] = (250, 30, 30)  # a red band along the top of the upright picture
    stored = np.ascontiguousarray(np.rot90(tall, k=1))  # stored turned 90° anticlockwise (40 x 60)
    from PIL import Image

    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90° clockwise to display"
    decoded = decode_image(pil_encoded(stored, fmt, quality=95, exif=exif.tobytes()))
    assert decoded.shape == (60, 40, 3)
    assert decoded[:10].mean(axis=(0, 1))[0] > 200 and decoded[20:].mean() < 30
    assert is_image(f"IMG_0001.{fmt.lower() if fmt == 'AVIF' else 'heic'}")


def test_a_truncated_heic_is_refused_with_its_size():
    data = pil_encoded(np.full((64, 64, 3), 128, np.uint8), "HEIF")
    with pytest.raises(ImageError, match="64x64 HEIF header is corrupt|not a decodable image"):
        decode_image(data[: len(data) // 2])


def test_as_rgb_gives_three_uint8_channels_and_refuses_what_is_not_an_image():
    grey = np.arange(12, dtype=np.uint8).reshape(3, 4)
    rgb = as_rgb(grey)
    assert rgb.shape == (3, 4, 3) and np.array_equal(rgb[:, :, 2], grey)
    rgba = np.zeros((5, 5, 4), np.uint8)
    rgba[:, :, 3] = 255  # the alpha channel is dropped, not mistaken for a colour
    assert as_rgb(rgba).shape == (5, 5, 3) and as_rgb(rgba).max() == 0
    loud = np.full((4, 4, 3), 300.0)
    assert as_rgb(loud).dtype == np.uint8 and as_rgb(loud).max() == 255
    with pytest.raises(ValueError, match="numpy image array, received list"):
        as_rgb([[0, 0, 0]])
    with pytest.raises(ValueError, match=r"shape \(4, 4, 2\)"):
        as_rgb(np.zeros((4, 4, 2), np.uint8))
    with pytest.raises(ValueError, match="too small to hold a face: 1x9"):
        as_rgb(np.zeros((9, 1, 3), np.uint8))


def test_a_frame_too_large_as_png_is_sent_as_jpeg_that_fits():
    from vision.media import encode_frame, encode_png

    rng = np.random.default_rng(0)
    noisy = rng.integers(0, 256, (720, 1280, 3), dtype=np.uint8)  # PNG cannot compress noise: ~2.8 MB
    limit = len(encode_png(noisy)) // 2
    sent = encode_frame(noisy, limit)
    assert sent[:3] == b"\xff\xd8\xff" and len(sent) <= limit  # JPEG, within the limit
    decoded = cv2.imdecode(np.frombuffer(sent, np.uint8), cv2.IMREAD_COLOR)
    assert decoded.shape[:2] in ((720, 1280), (360, 640))  # full size, or halved until it fits
    smooth = np.full((64, 64, 3), 90, np.uint8)
    assert encode_frame(smooth, limit) == encode_png(smooth)  # fits: the exact pixels, as PNG
    with pytest.raises(ValueError, match="does not fit in 10 bytes"):
        encode_frame(noisy, 10)
