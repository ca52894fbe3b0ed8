"""The page's videos (`fakeface.web.video`): a clip told from an image by its first bytes, and its
frames classified one image call each through the service, the most-fake frame remembered."""

from __future__ import annotations

import numpy as np
import pytest

from fakeface.serve.metrics import ServerMetrics
from fakeface.serve.server import ServerConfig
from fakeface.service import DetectorService
from fakeface.service_calls import Caller, ServiceRefusal, Status
from fakeface.web.video import ServiceBackend, sniff_video


@pytest.mark.parametrize("head, container", [
    (b"\x00\x00\x00\x20ftypisom\x00\x00\x02\x00", "mp4"),
    (b"\x00\x00\x00\x18ftypqt  \x00\x00\x00\x00", "mp4"),  # QuickTime .mov
    (b"\x1a\x45\xdf\xa3\x9f\x42\x86\x81\x01\x42\xf7\x81", "ebml"),  # WebM / Matroska
    (b"RIFF\x10\x00\x00\x00AVI LIST", "avi"),
    (b"RIFF\x10\x00\x00\x00WEBPVP8 ", None),  # a WebP still is RIFF too
    (b"\x00\x00\x00\x1cftypheic\x00\x00\x00\x00", None),  # HEIC and AVIF stills are ISO-BMFF
    (b"\x00\x00\x00\x1cftypavif\x00\x00\x00\x00", None),
    (b"\x89PNG\r\n\x1a\n\x00\x00\x00\r", None),
    (b"\xff\xd8\xff\xe0", None),  # too short to be anything but an image's start
    (b"", None),
])
def test_a_clip_is_told_from_an_image_by_its_first_bytes(head, container):
    assert sniff_video(head) == container


@pytest.fixture(scope="module")
def service(session_bundle):
    from blackboard.inprocess import InProcessBoard

    with InProcessBoard(session_bundle) as board:
        service = DetectorService(board, ServerConfig(), metrics=ServerMetrics(), feedback_log=None, heatmaps=None)
        service.accepting.set()
        yield service


def test_each_frame_is_one_counted_image_call_and_the_most_fake_frame_is_kept(service, face_crop):
    done = []
    backend = ServiceBackend(service, Caller(peer="ipv4:10.9.9.9:1"), on_frame=done.append)
    frames = [face_crop, face_crop[:, ::-1].copy(), np.ascontiguousarray(np.rot90(face_crop))]
    answers = [backend.classify_rgb(frame, detect="off", source=f"clip.mp4#{i}") for i, frame in enumerate(frames)]
    assert done == [1, 2, 3] and backend.frames == 3
    assert [a.source for a in answers] == ["clip.mp4#0", "clip.mp4#1", "clip.mp4#2"]
    assert backend.last_request_id == answers[-1].request_id
    top = max(answers, key=lambda a: a.faces[0].p_fake)
    assert backend.top == (pytest.approx(top.faces[0].p_fake), top.request_id)
    count = service.metrics.registry.get_sample_value
    assert count("fakeface_requests_total", {"method": "Classify", "code": "OK"}) >= 3


def test_a_frame_the_service_refuses_raises_its_refusal_and_is_not_counted(service):
    backend = ServiceBackend(service, Caller(peer="ipv4:10.9.9.9:1"))
    with pytest.raises(ServiceRefusal) as info:
        backend.classify_rgb(np.zeros((1, 1, 3), np.uint8), detect="off")
    assert info.value.status is Status.INVALID_ARGUMENT
    assert backend.frames == 0 and backend.top == (-1.0, "") and backend.last_request_id == ""
