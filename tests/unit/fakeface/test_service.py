"""The detector service in process, as both front doors call it: refusals with their status,
deadlines, feedback (one case per request id, per-client limits) and model info.

The ensemble is `InProcessBoard` on the suite's tiny bundle with a fitted controller (no Ray, no
server): the same `Board` logic the service runs on Ray Serve.
"""

from __future__ import annotations

import io
import json
import logging

import numpy as np
import pytest
from PIL import Image

from fakeface.serve.metrics import ServerMetrics
from fakeface.serve.server import ServerConfig
from fakeface.service import ClassifyOptions, DetectorService
from fakeface.service_calls import BAD_IMAGE, IMAGE_TOO_LARGE, RATE_LIMITED, Caller, ServiceRefusal, Status
from blackboard.feedback_log import FeedbackLog
from vision.media import encode_png

AGENTS = {"custom", "lenet", "vgg16"}
CROP = ClassifyOptions(detect="off", source="crop.png")  # a face crop, used whole: no face detector needed


@pytest.fixture(scope="module")
def board(session_bundle):
    from blackboard.inprocess import InProcessBoard

    with InProcessBoard(session_bundle) as ens:  # read-only use: feedback is stored, never promoted here
        yield ens


@pytest.fixture(scope="module")
def crop_png(face_crop) -> bytes:
    return encode_png(face_crop)


def _service(board, tmp_path=None, *, feedback: bool = True, serving: bool = True, ensemble=None, **config):
    """A service on the shared board (its own config, metrics, feedback log and rate limits)."""
    log = FeedbackLog(tmp_path / "feedback.jsonl") if feedback else None
    service = DetectorService(ensemble or board, ServerConfig(**config), metrics=ServerMetrics(), feedback_log=log,
                              heatmaps=None)
    if serving:
        service.accepting.set()
    return service


def _classify(service, image: bytes, options: ClassifyOptions = CROP, caller: Caller = Caller(peer="test")):
    with service.call("Classify", caller) as call:
        return service.classify(call, image, options)


def _feedback(service, request_id: str, label: str, caller: Caller = Caller(peer="ipv4:10.0.0.1:1"),
              face_index: int | None = None):
    with service.call("Feedback", caller) as call:
        return service.feedback(call, request_id, label, face_index)


def _refusal(fn, *args, **kwargs) -> ServiceRefusal:
    with pytest.raises(ServiceRefusal) as info:
        fn(*args, **kwargs)
    return info.value


def _count(service, method: str, status: Status) -> float:
    labels = {"method": method, "code": status.value}
    return service.metrics.registry.get_sample_value("fakeface_requests_total", labels) or 0.0


# --------------------------------------------------------------------------- classify


def test_a_crop_is_classified_with_every_agent_and_logged_once(board, crop_png, tmp_path, caplog):
    service = _service(board, tmp_path)
    with caplog.at_level(logging.INFO, logger="fakeface.server"):
        with service.call("Classify", Caller(peer="ipv4:10.1.2.3:80")) as call:
            answer = service.classify(call, crop_png, CROP)
    case = answer.case
    assert case.request_id == call.request_id and case.source == "crop.png" and answer.heatmaps is None
    assert len(case.faces) == 1 and set(case.faces[0].votes) == AGENTS
    assert {"decode", "server_total"} <= set(case.timings_ms)
    lines = [r.fields for r in caplog.records if getattr(r, "fields", {}).get("method") == "Classify"]
    assert len(lines) == 1 and lines[0]["code"] == "OK" and lines[0]["peer"] == "ipv4:10.1.2.3:80"
    assert _count(service, "Classify", Status.OK) == 1
    assert service.admission.calls == 0 and service.admission.pixels == 0  # every slot given back


@pytest.mark.parametrize("data, words", [
    (b"", "empty input"),
    (b"these are my notes, not a picture\n" * 10, "not a decodable image"),
    (encode_png(np.zeros((4, 40, 3), np.uint8)), "too small"),
], ids=["empty", "not-an-image", "too-small"])
def test_bad_bytes_are_invalid_argument_before_any_model_runs(board, tmp_path, data, words):
    service = _service(board, tmp_path)
    err = _refusal(_classify, service, data)
    assert err.status == Status.INVALID_ARGUMENT and err.reason == BAD_IMAGE
    assert err.message.startswith("bad image:") and words in err.message
    assert _count(service, "Classify", Status.INVALID_ARGUMENT) == 1 and _count(service, "Classify", Status.OK) == 0


def test_an_image_over_the_byte_limit_is_refused_as_too_large(board, crop_png, tmp_path):
    service = _service(board, tmp_path, max_message_bytes=len(crop_png) - 1)
    err = _refusal(_classify, service, crop_png)
    assert err.status == Status.RESOURCE_EXHAUSTED and err.reason == IMAGE_TOO_LARGE
    assert f"{len(crop_png)} bytes" in err.message and str(len(crop_png) - 1) in err.message
    assert len(_classify(_service(board, tmp_path, max_message_bytes=len(crop_png)), crop_png).case.faces) == 1


def test_an_image_over_the_pixel_limit_is_refused_from_its_header(board, tmp_path):
    big = io.BytesIO()
    Image.new("RGB", (300, 300)).save(big, format="PNG")
    err = _refusal(_classify, _service(board, tmp_path, max_pixels=200 * 200), big.getvalue())
    assert err.status == Status.INVALID_ARGUMENT and "decompression bomb" in err.message and "90000" in err.message


@pytest.mark.parametrize("options, words", [
    (ClassifyOptions(detect="sideways"), "detect must be one of ['auto', 'off', 'on'], received 'sideways'"),
    (ClassifyOptions(detect="off", source="s" * 300), "options.source is 300 characters; the limit is 256"),
], ids=["detect", "source"])
def test_bad_options_are_refused_with_what_was_received(board, crop_png, tmp_path, options, words):
    err = _refusal(_classify, _service(board, tmp_path), crop_png, options)
    assert err.status == Status.INVALID_ARGUMENT and words in err.message


def test_refusals_while_loading_past_the_deadline_and_after_the_client_left(board, crop_png, tmp_path):
    loading = _service(board, tmp_path, serving=False)
    err = _refusal(_classify, loading, crop_png)
    assert err.status == Status.UNAVAILABLE and "retry" in err.message
    service = _service(board, tmp_path)
    late = _refusal(_classify, service, crop_png, caller=Caller(time_remaining=lambda: 0.01))
    assert late.status == Status.DEADLINE_EXCEEDED and "deadline too short" in late.message
    gone = _refusal(_classify, service, crop_png, caller=Caller(is_active=lambda: False))
    assert gone.status == Status.CANCELLED
    wanted = _refusal(_classify, service, crop_png, ClassifyOptions(detect="off", heatmaps=True))
    assert wanted.status == Status.FAILED_PRECONDITION and "heatmaps" in wanted.message


def test_a_client_deadline_wins_over_the_default_and_a_huge_one_means_none(board, tmp_path):
    service = _service(board, tmp_path, default_deadline_s=7.0)
    assert service.deadline(Caller()) == 7.0
    assert service.deadline(Caller(time_remaining=lambda: 30.0)) == pytest.approx(30.0, abs=0.05)
    assert service.deadline(Caller(time_remaining=lambda: 9.2e18)) == 7.0  # grpcio's "no deadline"


def test_a_crash_below_is_internal_with_a_short_message_and_no_traceback(board, crop_png, tmp_path, caplog):
    class Broken:
        def __getattr__(self, name):
            return getattr(board, name)

        def classify(self, *args, **kwargs):
            raise RuntimeError("/secret/path/model.keras exploded")

    service = _service(board, tmp_path, ensemble=Broken())
    with caplog.at_level(logging.ERROR, logger="fakeface.server"):
        err = _refusal(_classify, service, crop_png)
    assert err.status == Status.INTERNAL and "RuntimeError" in err.message
    assert "/secret" not in err.message and "Traceback" not in err.message
    assert "exploded" in caplog.text  # the details go to the log
    assert service.admission.calls == 0 and service.admission.pixels == 0


# --------------------------------------------------------------------------- feedback


def test_feedback_is_stored_with_the_votes_and_counted_once_per_request_id(board, crop_png, tmp_path):
    service = _service(board, tmp_path)
    answer = _classify(service, crop_png)
    first = _feedback(service, answer.case.request_id, "FAKE")
    again = _feedback(service, answer.case.request_id, "real")  # the person changes their mind
    assert first.stored and again.stored and not first.applied and "stored as evidence" in first.detail
    assert first.controller_version == str(board.controller_version) and (first.records, again.records) == (1, 2)
    assert service.feedback_log.records == 2 and service.feedback_log.cases == 1
    records = [json.loads(line) for line in (tmp_path / "feedback.jsonl").read_text().splitlines()]
    assert [(r["label"], r["repeat"]) for r in records] == [("fake", False), ("real", True)]
    assert set(records[0]["faces"][0]["votes"]) == AGENTS and set(records[0]["evidence"]["agents"]) == AGENTS
    assert len(records[0]["client"]) == 16 and "10.0.0.1" not in records[0]["client"]  # hashed, not the address


def test_feedback_for_an_unknown_request_id_is_kept_as_a_note(board, tmp_path):
    ack = _feedback(_service(board, tmp_path), "f" * 32, "real")
    assert ack.stored and "kept as a note" in ack.detail
    record = json.loads((tmp_path / "feedback.jsonl").read_text())
    assert record["request_id"] == "f" * 32 and record["faces"] is None and record["evidence"] is None


def test_feedback_names_the_face_it_is_for_and_a_face_the_answer_lacks_is_refused(board, crop_png, tmp_path):
    service = _service(board, tmp_path)
    answer = _classify(service, crop_png)  # a crop: one face, index 0
    assert _feedback(service, answer.case.request_id, "fake", face_index=0).stored
    err = _refusal(_feedback, service, answer.case.request_id, "fake", face_index=3)
    assert err.status == Status.INVALID_ARGUMENT
    assert "face_index 3 is not a face of that answer (its faces: 0)" in err.message
    err = _refusal(_feedback, service, answer.case.request_id, "fake", face_index=-1)
    assert err.status == Status.INVALID_ARGUMENT and "received -1" in err.message
    assert _feedback(service, "e" * 32, "real", face_index=7).stored  # an answer no longer held: kept as given
    records = [json.loads(line) for line in (tmp_path / "feedback.jsonl").read_text().splitlines()]
    assert [r["face_index"] for r in records] == [0, 7] and service.feedback_log.records == 2


@pytest.mark.parametrize("request_id, label, words", [
    ("", "fake", "request_id is empty"),
    ("x" * 65, "fake", "at most 64 printable characters"),
    ("bad\nid", "fake", "printable"),
    ("a" * 32, "blue", "label must be 'real' or 'fake', received 'blue'"),
    ("a" * 32, "LABEL_UNSPECIFIED", "received 'LABEL_UNSPECIFIED'"),
], ids=["empty-id", "long-id", "control-char", "label", "unspecified-label"])
def test_bad_feedback_is_invalid_argument_and_writes_nothing(board, tmp_path, request_id, label, words):
    service = _service(board, tmp_path)
    err = _refusal(_feedback, service, request_id, label)
    assert err.status == Status.INVALID_ARGUMENT and words in err.message
    assert service.feedback_log.records == 0 and not (tmp_path / "feedback.jsonl").exists()


def test_feedback_is_rate_limited_per_client_and_refused_without_a_log(board, tmp_path):
    service = _service(board, tmp_path, feedback_rate_per_s=0.01, feedback_burst=2)
    visitor, other = Caller(peer="ipv4:10.0.0.7:1"), Caller(peer="ipv4:10.0.0.8:1")
    assert _feedback(service, "a" * 32, "fake", visitor).stored
    assert _feedback(service, "b" * 32, "fake", Caller(peer="ipv4:10.0.0.7:2")).stored  # same host, new port
    err = _refusal(_feedback, service, "c" * 32, "fake", visitor)
    assert err.status == Status.RESOURCE_EXHAUSTED and err.reason == RATE_LIMITED and "retry in" in err.message
    assert _feedback(service, "c" * 32, "fake", other).stored  # another visitor has a bucket of their own
    assert service.feedback_log.records == 3
    off = _refusal(_feedback, _service(board, feedback=False), "a" * 32, "fake")
    assert off.status == Status.FAILED_PRECONDITION and "without a feedback log" in off.message


def test_only_the_most_recent_answers_keep_their_votes_for_feedback(board, crop_png, tmp_path):
    service = _service(board, tmp_path, recent_cases=2)
    ids = [_classify(service, crop_png).case.request_id for _ in range(3)]
    for request_id in ids:
        _feedback(service, request_id, "real", Caller(peer=f"ipv4:10.0.1.{len(request_id)}:1", client=request_id))
    faces = [json.loads(line)["faces"] for line in (tmp_path / "feedback.jsonl").read_text().splitlines()]
    assert faces[0] is None and faces[1] is not None and faces[2] is not None  # the oldest was forgotten


# --------------------------------------------------------------------------- model info


def test_model_info_names_the_bundle_agents_and_feedback_count(board, tmp_path):
    service = _service(board, tmp_path)
    _feedback(service, "f" * 32, "fake")
    with service.call("GetModelInfo", Caller()):
        info = service.model_info()
    assert info.ensemble.bundle_version == board.bundle.version and info.feedback_records == 1
    assert {a.name for a in info.ensemble.agents} == AGENTS
    assert info.ensemble.controller_version == board.controller_version
    loading = _service(board, tmp_path, serving=False)
    with pytest.raises(ServiceRefusal) as err, loading.call("GetModelInfo", Caller()):
        loading.model_info()
    assert err.value.status == Status.UNAVAILABLE
    assert _count(loading, "GetModelInfo", Status.UNAVAILABLE) == 1


def test_a_picture_without_a_face_says_how_large_a_face_must_be_to_be_found(board, tmp_path):
    service = _service(board, tmp_path)
    desktop = encode_png(np.full((1080, 1920, 3), 200, np.uint8))  # a screenshot with no face in it
    answer = _classify(service, desktop, ClassifyOptions(detect="auto", source="desk.png"))
    reason = answer.case.no_face_reason
    assert not answer.case.faces and reason.startswith("no face found (")
    assert "about 32 px and larger in a 1920x1080 picture" in reason and "full screen" in reason
    assert "not shaped like a face crop" in reason and "--detect off" in reason
    on = _classify(service, desktop, ClassifyOptions(detect="on", source="desk.png")).case.no_face_reason
    assert on.startswith("no face found by the detector (") and "not shaped like" not in on
