"""The gRPC edge (`fakeface.serve.servicer`): wire messages in and out of the service, refusals as
status codes, a stream that survives its bad items. A real server on 127.0.0.1 over the suite's
tiny bundle in process (`InProcessBoard`: no Ray), so these run in the unit pass; the e2e tier
runs the same front door on Ray Serve.
"""

from __future__ import annotations

import grpc
import pytest

from fakeface.rpc.fakeface.v1 import detector_pb2 as pb
from fakeface.rpc.fakeface.v1 import detector_pb2_grpc as pb_grpc
from fakeface.rpc_convert import SERVICE_NAME
from fakeface.serve.servicer import GRPC_CODES, caller_of
from fakeface.serve.server import ServerConfig, create_server
from fakeface.service_calls import Status
from vision.media import encode_png

AGENTS = {"custom", "lenet", "vgg16"}


@pytest.fixture(scope="module")
def stub(session_bundle, tmp_path_factory):
    from blackboard.inprocess import InProcessBoard

    feedback = tmp_path_factory.mktemp("servicer") / "feedback.jsonl"
    with InProcessBoard(session_bundle) as board:
        # A burst above the feedback tests' calls: the rate limit has tests of its own (test_service).
        server, port = create_server("127.0.0.1:0", board, ServerConfig(feedback_path=str(feedback), feedback_burst=20))
        assert server.wait_until_serving(timeout=60)
        channel = grpc.insecure_channel(f"127.0.0.1:{port}")
        try:
            stub = pb_grpc.DetectorStub(channel)
            stub.channel = channel  # for raw calls that bypass the stub's serializers
            stub.target = f"127.0.0.1:{port}"
            yield stub
        finally:
            channel.close()
            server.stop(grace=None).wait(10)


@pytest.fixture(scope="module")
def crop_png(face_crop) -> bytes:
    return encode_png(face_crop)


def _request(image: bytes, *, seq: int = 0, detect: int = pb.FACE_DETECTION_OFF, source: str = "") -> pb.ClassifyRequest:
    options = pb.ClassifyOptions(face_detection=detect)
    if source:
        options.source = source
    return pb.ClassifyRequest(image=image, options=options, sequence_id=seq)


def _code(call) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.RpcError) as info:
        call()
    return info.value.code(), info.value.details()


def test_every_service_status_is_the_grpc_code_of_its_name():
    assert {status.value for status in Status} == {code.name for code in GRPC_CODES.values()}
    assert GRPC_CODES[Status.RESOURCE_EXHAUSTED] is grpc.StatusCode.RESOURCE_EXHAUSTED


def test_a_crop_is_answered_with_every_agents_vote_and_its_sequence_id(stub, crop_png):
    resp = stub.Classify(_request(crop_png, seq=41, source="crop.png"), timeout=60)
    assert resp.sequence_id == 41 and resp.source == "crop.png" and resp.request_id
    assert len(resp.faces) == 1
    face = resp.faces[0]
    assert {vote.agent for vote in face.votes} == AGENTS
    assert 0.0 <= face.p_fake <= 1.0 and face.label != pb.LABEL_UNSPECIFIED


def test_an_undefined_face_detection_value_is_invalid_argument_naming_it(stub, crop_png):
    code, details = _code(lambda: stub.Classify(_request(crop_png, detect=99), timeout=30))
    assert code is grpc.StatusCode.INVALID_ARGUMENT and "face_detection value 99" in details


def test_bytes_that_are_no_request_are_invalid_argument_and_the_server_goes_on(stub, crop_png):
    raw = stub.channel.unary_unary(f"/{SERVICE_NAME}/Classify")  # bytes as they are, no serializer
    code, details = _code(lambda: raw(b"\xff\xff\xff\xff not a protobuf", timeout=30))
    assert code is grpc.StatusCode.INVALID_ARGUMENT and "malformed" in details
    assert stub.Classify(_request(crop_png), timeout=60).faces


def test_a_phone_photo_in_heic_is_answered_like_its_png(stub, face_crop, crop_png):
    # What an iPhone's camera saves; near-lossless here, so the votes match the PNG's closely.
    from crops import pil_encoded

    heic = stub.Classify(_request(pil_encoded(face_crop, "HEIF", quality=100)), timeout=60).faces[0]
    png = stub.Classify(_request(crop_png), timeout=60).faces[0]
    assert abs(heic.p_fake - png.p_fake) < 0.1 and {v.agent for v in heic.votes} == AGENTS


def test_an_image_that_does_not_decode_is_invalid_argument(stub):
    code, details = _code(lambda: stub.Classify(_request(b"GIF89a but not really"), timeout=30))
    assert code is grpc.StatusCode.INVALID_ARGUMENT and details


def test_a_stream_answers_each_item_in_order_and_a_bad_one_in_its_own_response(stub, crop_png):
    items = [_request(crop_png, seq=1), _request(b"not an image", seq=2, source="frame-2.png"), _request(crop_png, seq=3)]
    answers = list(stub.ClassifyStream(iter(items), timeout=120))
    assert [a.sequence_id for a in answers] == [1, 2, 3]
    good, bad, last = answers
    assert good.faces and last.faces and not good.error_code and not last.error_code
    assert bad.error_code == "INVALID_ARGUMENT" and bad.error_message and bad.source == "frame-2.png"
    assert not bad.faces


def test_model_info_names_the_bundles_agents_with_their_thresholds(stub):
    info = stub.GetModelInfo(pb.GetModelInfoRequest(), timeout=30)
    assert {agent.name for agent in info.agents} == AGENTS
    assert {f"agent:{name}" for name in AGENTS} | {"ensemble"} <= set(info.thresholds)


def test_feedback_on_an_answer_is_stored_and_a_bad_label_is_refused(stub, crop_png):
    resp = stub.Classify(_request(crop_png), timeout=60)
    ack = stub.Feedback(pb.FeedbackRequest(request_id=resp.request_id, label=pb.LABEL_FAKE), timeout=30)
    assert ack.stored and not ack.applied and ack.controller_version == ack.previous_controller_version
    code, details = _code(lambda: stub.Feedback(
        pb.FeedbackRequest(request_id=resp.request_id, label=pb.LABEL_UNCERTAIN), timeout=30))
    assert code is grpc.StatusCode.INVALID_ARGUMENT and "UNCERTAIN" in details
    code, _ = _code(lambda: stub.Feedback(pb.FeedbackRequest(request_id="", label=pb.LABEL_REAL), timeout=30))
    assert code is grpc.StatusCode.INVALID_ARGUMENT
    # The face the label is for travels with it; one the answer does not hold is refused.
    assert stub.Feedback(pb.FeedbackRequest(request_id=resp.request_id, label=pb.LABEL_REAL, face_index=0),
                         timeout=30).stored
    code, details = _code(lambda: stub.Feedback(
        pb.FeedbackRequest(request_id=resp.request_id, label=pb.LABEL_REAL, face_index=2), timeout=30))
    assert code is grpc.StatusCode.INVALID_ARGUMENT and "face_index 2 is not a face" in details
    from fakeface.client import DetectorClient

    with DetectorClient(stub.target) as client:  # the Python client sends the face it names
        assert client.feedback(resp.request_id, "fake", face_index=0).stored
        with pytest.raises(ValueError, match="face_index must be a face number"):
            client.feedback(resp.request_id, "fake", face_index=-2)


class _Context:
    """What `caller_of` reads of a gRPC context (the real one exists only inside a call)."""

    def __init__(self, peer, metadata=()):
        self._peer, self._metadata = peer, metadata

    def peer(self):
        if isinstance(self._peer, Exception):
            raise self._peer
        return self._peer

    def invocation_metadata(self):
        return self._metadata

    def time_remaining(self):
        return 2.5

    def is_active(self):
        return True


def test_a_caller_is_keyed_by_its_token_else_its_host_and_survives_a_context_without_a_peer():
    by_host = caller_of(_Context("ipv4:10.0.0.7:5151"))
    assert by_host.peer == "ipv4:10.0.0.7:5151" and by_host.time_remaining() == 2.5 and by_host.is_active()
    assert by_host.key == caller_of(_Context("ipv4:10.0.0.7:6000")).key != caller_of(_Context("ipv4:10.0.0.8:1")).key
    with_token = caller_of(_Context("ipv4:10.0.0.7:5151", (("authorization", "Bearer abc"),)))
    assert with_token.key != by_host.key
    assert caller_of(_Context(NotImplementedError())).peer == ""


class _StreamContext:
    def __init__(self, remaining):
        self.remaining = remaining

    def time_remaining(self):
        return self.remaining


@pytest.mark.parametrize("remaining, status", [(None, Status.CANCELLED), (5.0, Status.CANCELLED),
                                               (0.0, Status.DEADLINE_EXCEEDED)])
def test_a_stream_the_client_ends_midway_is_cancelled_or_past_its_deadline_not_internal(remaining, status):
    from fakeface.serve.servicer import _client_requests
    from fakeface.service_calls import ServiceRefusal

    def requests():
        yield "frame 1"
        raise grpc.RpcError()  # what gRPC's request iterator raises once the client has gone

    received = []
    with pytest.raises(ServiceRefusal) as err:
        for request in _client_requests(requests(), _StreamContext(remaining)):
            received.append(request)
    assert received == ["frame 1"] and err.value.status is status
    assert list(_client_requests(iter(["a", "b"]), _StreamContext(None))) == ["a", "b"]
