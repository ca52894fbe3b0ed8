"""The page's views of an answer (`fakeface.web.views`): a picture the browser cannot show gets a
preview the server decoded, upright and bounded; one it can show is left to the browser."""

from __future__ import annotations

import base64

import cv2
import numpy as np
import pytest
from PIL import Image

from crops import pil_encoded
from fakeface.web.views import PREVIEW_SIDE, preview_data_uri
from vision.media import encode_png


def _decoded(uri: str) -> np.ndarray:
    assert uri.startswith("data:image/jpeg;base64,")
    data = np.frombuffer(base64.b64decode(uri.split(",", 1)[1]), np.uint8)
    return cv2.cvtColor(cv2.imdecode(data, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


def test_a_heic_gets_an_upright_jpeg_preview_and_a_png_none():
    tall = np.zeros((60, 40, 3), np.uint8)
    tall[:10] = (250, 30, 30)  # red along the top of the upright picture
    exif = Image.Exif()
    exif[0x0112] = 6  # stored turned; "rotate 90° clockwise to display"
    heic = pil_encoded(np.ascontiguousarray(np.rot90(tall)), "HEIF", quality=95, exif=exif.tobytes())
    shown = _decoded(preview_data_uri(heic))
    assert shown.shape == (60, 40, 3) and shown[:8, :, 0].mean() > 200 and shown[20:].mean() < 30
    assert preview_data_uri(encode_png(tall)) is None
    assert preview_data_uri(pil_encoded(tall, "JPEG")) is None


def test_a_large_tiff_preview_is_bounded_on_its_longer_side():
    wide = np.full((900, 3 * PREVIEW_SIDE // 2 * 2, 3), 90, np.uint8)
    shown = _decoded(preview_data_uri(pil_encoded(wide, "TIFF")))
    assert max(shown.shape[:2]) == PREVIEW_SIDE and shown.shape[0] == round(900 * PREVIEW_SIDE / wide.shape[1])


@pytest.fixture(scope="module")
def client(page_client):
    return page_client()


def test_the_page_is_sent_a_preview_of_a_heic_photo_only(client, face_crop):
    heic = client.post("/api/classify?name=IMG_0042.HEIC", content=pil_encoded(face_crop, "HEIF", quality=95))
    assert heic.status_code == 200, heic.text
    body = heic.json()
    assert len(body["faces"]) == 1 and _decoded(body["preview"]).shape == face_crop.shape
    png = client.post("/api/classify?name=crop.png", content=encode_png(face_crop)).json()
    assert "preview" not in png and len(png["faces"]) == 1
