"""The evidence report's heat maps (`fakeface.web.report`): each face's crop beside its maps at full size."""

from __future__ import annotations

import base64
import re

import cv2
import numpy as np

from fakeface.web.report import TILE_PX, build_report
from fakeface.web.views import png_data_uri
from vision.annotate import face_crop
from vision.forensic_chart import contribution_chart
from vision.gradcam import overlay
from vision.media import encode_png


def _record(faces):
    return {"kind": "image", "name": "a.png", "sha256": "ab" * 32, "size": 10, "received": "2026-12-03T07:00:00+00:00",
            "result": {"request_id": "r1", "faces": faces}}


def _decoded(uri: str) -> np.ndarray:
    raw = base64.b64decode(uri.split(",", 1)[1])
    return cv2.imdecode(np.frombuffer(raw, np.uint8), cv2.IMREAD_COLOR)


def test_maps_are_embedded_at_full_size_beside_the_face_with_the_reasons_for_missing_ones(face_rgb):
    box = (120.0, 30.0, 220.0, 200.0)
    crop = face_crop(face_rgb, box, side=TILE_PX)
    assert max(crop.shape[:2]) == TILE_PX and crop.shape[:2] == (204, 224)  # aspect kept
    cam = np.zeros((8, 8), np.float32)
    cam[2, 3] = 1.0
    face = {"index": 0, "label": "fake", "p_fake": 0.9, "threshold": 0.5, "reason": "",
            "votes": {"custom": {"p_fake": 0.9, "weight": 1.0}},
            "heatmaps": {"custom": png_data_uri(encode_png(overlay(cv2.resize(crop, (224, 224)), cam))),
                         "forensic": png_data_uri(encode_png(contribution_chart({"colour": 0.4})))},
            "heatmap_notes": {"vgg16": "vgg16's map shows no location (it is the same tint on every face): not shown."}}
    page = build_report(_record([face]), {}, png_data_uri(encode_png(face_rgb)),
                        face_crops={0: png_data_uri(encode_png(crop))})
    maps = re.findall(r'<img class="map" src="([^"]+)" alt="heat map of (\w+)"', page)
    assert [agent for _, agent in maps] == ["custom", "forensic"]
    assert all(min(_decoded(uri).shape[:2]) >= TILE_PX for uri, _ in maps)  # readable, not thumbnails
    shown_crop = re.search(r'<img class="crop" src="([^"]+)" alt="the face" width="224">', page)
    assert shown_crop and page.index(shown_crop.group(0)) < page.index(maps[0][0])  # the face first, beside its maps
    assert "the same tint on every face): not shown." in page
    # No maps and no notes (a video track, an answer without heat maps): no empty section.
    bare = build_report(_record([{**face, "heatmaps": {}, "heatmap_notes": {}}]), {}, "data:image/png;base64,")
    assert "Where the agents looked" not in bare and "Where the agents looked" in page
