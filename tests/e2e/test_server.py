"""The gRPC detector against a real ensemble: health, reflection, errors, auth, TLS, streams,
feedback persistence, concurrency and drain, on the session's ensemble. Hostile input and
overload: test_server_hostile.py."""

from __future__ import annotations

import datetime as _dt
import json
import threading
import time
from concurrent import futures

import cv2
import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2
from grpc_helpers import AGENTS, MAX_MESSAGE, bomb_png, classify_request, health_status, start

from fakeface.rpc.fakeface.v1 import detector_pb2 as pb
from fakeface.rpc.fakeface.v1 import detector_pb2_grpc as pb_grpc


def test_health_turns_serving(served):
    assert health_status(served["channel"]) == health_pb2.HealthCheckResponse.SERVING


def test_reflection_lists_the_detector(served):
    from google.protobuf.descriptor_pool import DescriptorPool
    from grpc_reflection.v1alpha.proto_reflection_descriptor_database import ProtoReflectionDescriptorDatabase

    db = ProtoReflectionDescriptorDatabase(served["channel"])
    assert "fakeface.v1.Detector" in db.get_services()
    service = DescriptorPool(db).FindServiceByName("fakeface.v1.Detector")
    assert {m.name for m in service.methods} == {"Classify", "ClassifyStream", "Feedback", "GetModelInfo"}


def test_classify_a_photo_returns_a_verdict_with_three_votes(served, face_png, session_bundle, ensemble):
    from agents.bundle import load_bundle

    resp = served["stub"].Classify(classify_request(face_png, source="astronaut.png"), timeout=60)
    assert resp.request_id and resp.source == "astronaut.png"
    assert (resp.image_width, resp.image_height) == (512, 512)
    assert resp.bundle_version == load_bundle(session_bundle).version
    assert len(resp.faces) >= 1, resp.no_face_reason
    face = resp.faces[0]
    assert {v.agent for v in face.votes} == AGENTS
    manifest = load_bundle(session_bundle).manifest["agents"]
    for vote in face.votes:
        assert 0.0 <= vote.p_fake <= 1.0
        assert vote.model_sha == manifest[vote.agent]["sha256"]
    borderline = abs(face.p_fake - face.threshold) < ensemble.borderline.half_width  # "can't tell" band
    assert face.label == (pb.LABEL_UNCERTAIN if borderline else
                          pb.LABEL_FAKE if face.p_fake >= face.threshold else pb.LABEL_REAL)
    assert face.uncertain_reason.startswith("borderline") == borderline
    # MTCNN found the astronaut's face: a box inside the image with five landmarks.
    assert 0 < face.box.width < 512 and 0 < face.box.height < 512
    assert len(face.landmarks) == 5
    assert face.detector_confidence > 0.5
    assert resp.timings_ms["decode"] >= 0 and resp.timings_ms["server_total"] > 0


@pytest.mark.parametrize(
    "image, code, words",
    [
        (b"", grpc.StatusCode.INVALID_ARGUMENT, "empty"),
        (b"this is not an image at all" * 10, grpc.StatusCode.INVALID_ARGUMENT, "decodable"),
        (bomb_png(), grpc.StatusCode.INVALID_ARGUMENT, "bomb"),
        (b"\xff" * (MAX_MESSAGE + 1024), grpc.StatusCode.RESOURCE_EXHAUSTED, ""),
    ],
    ids=["empty", "garbage", "bomb-header", "oversize"],
)
def test_bad_input_gets_its_status_and_the_server_keeps_serving(served, crop_png, image, code, words):
    with pytest.raises(grpc.RpcError) as info:
        served["stub"].Classify(classify_request(image), timeout=30)
    assert info.value.code() == code
    assert words in (info.value.details() or "").lower() or words in (info.value.details() or "")
    assert health_status(served["channel"]) == health_pb2.HealthCheckResponse.SERVING
    ok = served["stub"].Classify(classify_request(crop_png, detect=pb.FACE_DETECTION_OFF), timeout=60)
    assert len(ok.faces) == 1 and len(ok.faces[0].votes) == 3


def test_bad_input_is_counted_in_metrics(served):
    # Makes its own bad call, so it holds when run alone or in any order.
    registry = served["server"].metrics.registry
    labels = {"method": "Classify", "code": "INVALID_ARGUMENT"}
    before = registry.get_sample_value("fakeface_requests_total", labels) or 0.0
    with pytest.raises(grpc.RpcError) as info:
        served["stub"].Classify(classify_request(b"not an image"), timeout=30)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert registry.get_sample_value("fakeface_requests_total", labels) == before + 1


def test_a_deadline_too_short_is_deadline_exceeded(served, face_png, crop_png):
    with pytest.raises(grpc.RpcError) as info:
        served["stub"].Classify(classify_request(face_png), timeout=0.02)
    assert info.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    ok = served["stub"].Classify(classify_request(crop_png, detect=pb.FACE_DETECTION_OFF), timeout=60)
    assert len(ok.faces) == 1



def _jpeg(rgb: np.ndarray) -> bytes:
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 92])
    assert ok
    return buf.tobytes()


def test_a_full_hd_screenshot_and_a_crowd_are_answered(served, face_rgb, face_crop):
    # The product's common case: a 1920x1080 screenshot is 6.2 MB decoded, and a crowd's crops
    # are 150 KB a face; both pass between Serve deployments, whose own gRPC cap is 4 MiB.
    screen = np.full((1080, 1920, 3), 40, dtype=np.uint8)
    screen[300:812, 700:1212] = face_rgb
    resp = served["stub"].Classify(classify_request(_jpeg(screen)), timeout=120)
    assert (resp.image_width, resp.image_height) == (1920, 1080)
    assert len(resp.faces) >= 1, resp.no_face_reason
    assert {v.agent for v in resp.faces[0].votes} == AGENTS
    crowd = np.vstack([np.hstack([face_crop] * 7)] * 5)  # 35 faces, 1568x1120
    resp = served["stub"].Classify(classify_request(_jpeg(crowd)), timeout=120)
    assert len(resp.faces) >= 28, resp.no_face_reason  # > 4 MiB of crops each way
    assert all({v.agent for v in face.votes} == AGENTS for face in resp.faces)


def test_warmed_heatmaps_are_built_once_before_the_first_request(ensemble, crop_png):
    from vision.gradcam import GradCamRenderer
    from fakeface.serve.server import ServerConfig, create_server

    built = []

    def factory():
        built.append(1)
        return GradCamRenderer(ensemble.bundle)

    # What `fakeface serve` runs when the page is on: warmed while the models load, before SERVING.
    config = ServerConfig(max_message_bytes=MAX_MESSAGE, warm_heatmaps=True)
    server, port = create_server("127.0.0.1:0", ensemble, config, heatmaps=factory)
    try:
        assert server.wait_until_serving(timeout=300)
        assert len(built) == 1  # built and traced before SERVING: nothing competes with the first answers
        assert server.service.warm_heatmaps() and len(built) == 1
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            request = classify_request(crop_png, detect=pb.FACE_DETECTION_OFF)
            request.options.want_heatmaps = True
            answer = pb_grpc.DetectorStub(channel).Classify(request, timeout=60)
        assert answer.faces and answer.faces[0].heatmaps
        assert len(built) == 1  # the request used the warmed renderer, no second load
    finally:
        server.stop(0).wait()
    cannot, _ = create_server("127.0.0.1:0", ensemble, ServerConfig(), heatmaps=lambda: None)
    try:
        assert cannot.service.warm_heatmaps() is False
    finally:
        cannot.stop(0).wait()


def test_a_call_without_a_deadline_is_answered(served, crop_png):
    # grpcio reports "no deadline" as ~9.2e18 s left; the server must use its default, not hang.
    request = classify_request(crop_png, detect=pb.FACE_DETECTION_OFF)
    pool = futures.ThreadPoolExecutor(1)
    try:
        answer = pool.submit(served["stub"].Classify, request).result(timeout=60)
    finally:
        pool.shutdown(wait=False)
    assert len(answer.faces) == 1 and answer.faces[0].votes

def test_stream_answers_in_order_and_survives_a_bad_item(served, crop_png, face_png):
    requests = [
        classify_request(crop_png, detect=pb.FACE_DETECTION_OFF, source="a", seq=11),
        classify_request(b"garbage", source="b", seq=12),
        classify_request(face_png, source="c", seq=13),
        classify_request(crop_png, detect=pb.FACE_DETECTION_OFF, source="d", seq=14),
    ]
    answers = list(served["stub"].ClassifyStream(iter(requests), timeout=120))
    assert [a.sequence_id for a in answers] == [11, 12, 13, 14]
    assert [a.source for a in answers] == ["a", "b", "c", "d"]
    assert answers[1].error_code == "INVALID_ARGUMENT" and answers[1].error_message
    for a in (answers[0], answers[2], answers[3]):
        assert not a.error_code and a.request_id and len(a.faces) >= 1
    assert len({a.request_id for a in answers if a.request_id}) == 3


def test_model_info_describes_bundle_and_agents(served, session_bundle):
    from agents.bundle import load_bundle

    info = served["stub"].GetModelInfo(pb.GetModelInfoRequest(), timeout=30)
    bundle = load_bundle(session_bundle)
    assert info.bundle_version == bundle.version
    assert json.loads(info.manifest_json)["agents"].keys() == bundle.manifest["agents"].keys()
    assert {a.name for a in info.agents} == AGENTS
    assert info.controller_version not in ("", "mean")
    assert {t.agent for t in info.trust} == AGENTS
    assert set(info.thresholds) >= {"ensemble", "agent:custom", "agent:lenet", "agent:vgg16"}


def test_sixteen_concurrent_clients_all_succeed(served, crop_png):
    def one(i: int) -> pb.ClassifyResponse:
        with grpc.insecure_channel(f"127.0.0.1:{served['port']}") as channel:
            stub = pb_grpc.DetectorStub(channel)
            return stub.Classify(classify_request(crop_png, detect=pb.FACE_DETECTION_OFF, source=str(i)), timeout=120)

    with futures.ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(one, range(16)))
    assert sorted(int(a.source) for a in answers) == list(range(16))
    assert all(len(a.faces) == 1 and len(a.faces[0].votes) == 3 for a in answers)
    assert len({a.request_id for a in answers}) == 16


@pytest.fixture()
def restores_controller(ensemble):
    """Feedback promotes controllers on the session's ensemble: put its controller back after, so
    later tests (in any order) see the one they expect."""
    version, history = ensemble.controller_version, list(ensemble._history)
    yield
    ensemble.rollback_controller(version)
    ensemble._history[:] = history  # and the rollback order ("the previous one") as it was


def test_feedback_is_stored_and_survives_a_restart(ensemble, crop_png, tmp_path, restores_controller):
    log_path = tmp_path / "feedback.jsonl"
    server, port = start(ensemble, feedback_path=str(log_path))
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = pb_grpc.DetectorStub(channel)
        resp = stub.Classify(classify_request(crop_png, detect=pb.FACE_DETECTION_OFF), timeout=60)
        ack = stub.Feedback(pb.FeedbackRequest(request_id=resp.request_id, label=pb.LABEL_FAKE), timeout=60)
        # Evidence, not a live update: stored, nothing applied, the live version unchanged.
        assert ack.stored and not ack.applied and "stored as evidence" in ack.detail, ack.detail
        assert ack.controller_version == ack.previous_controller_version == str(ensemble.controller_version)
        with pytest.raises(grpc.RpcError) as info:
            stub.Feedback(pb.FeedbackRequest(request_id=resp.request_id), timeout=30)
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    server.stop(0).wait()

    server, port = start(ensemble, feedback_path=str(log_path))
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = pb_grpc.DetectorStub(channel)
        assert stub.GetModelInfo(pb.GetModelInfoRequest(), timeout=30).feedback_records == 1
        second = stub.Classify(classify_request(crop_png, detect=pb.FACE_DETECTION_OFF), timeout=60)
        ack2 = stub.Feedback(pb.FeedbackRequest(request_id=second.request_id, label=pb.LABEL_REAL), timeout=60)
        assert ack2.stored
        assert stub.GetModelInfo(pb.GetModelInfoRequest(), timeout=30).feedback_records == 2
    server.stop(0).wait()
    records = [json.loads(line) for line in log_path.read_text().splitlines()]
    assert [(r["request_id"], r["label"]) for r in records] == [(resp.request_id, "fake"), (second.request_id, "real")]
    assert records[0]["controller_version"] == ack.controller_version
    assert set(records[0]["faces"][0]["votes"]) == AGENTS
    assert set(records[0]["evidence"]["agents"]) == AGENTS and len(records[0]["client"]) == 16  # hashed peer


def test_feedback_from_fifty_clients_changes_no_probability_served(ensemble, crop_png, face_png, tmp_path,
                                                                   restores_controller):
    """Many anonymous clients labelling every answer wrong: nothing anyone is told changes.
    (200 posts here; benchmarks/bench_feedback_flood.py posts 1 000.)"""
    server, port = start(ensemble, feedback_path=str(tmp_path / "fb.jsonl"), feedback_burst=10)
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = pb_grpc.DetectorStub(channel)
            probes = [classify_request(crop_png, detect=pb.FACE_DETECTION_OFF), classify_request(face_png)]
            before = [stub.Classify(r, timeout=60) for r in probes]
            stored = 0
            for i in range(200):
                answer = before[i % 2]
                wrong = pb.LABEL_REAL if answer.faces[0].label == pb.LABEL_FAKE else pb.LABEL_FAKE
                meta = (("authorization", f"Bearer visitor-{i % 50}"),)  # 50 clients, 50 buckets
                ack = stub.Feedback(pb.FeedbackRequest(request_id=answer.request_id, label=wrong), timeout=30,
                                    metadata=meta)
                stored += ack.stored
                assert not ack.applied and ack.controller_version == before[0].controller_version
            after = [stub.Classify(r, timeout=60) for r in probes]
    finally:
        server.stop(0).wait()
    assert stored == 200
    for b, a in zip(before, after):
        assert a.controller_version == b.controller_version
        assert [f.p_fake for f in a.faces] == [f.p_fake for f in b.faces]
        assert [f.label for f in a.faces] == [f.label for f in b.faces]
    records = [json.loads(line) for line in (tmp_path / "fb.jsonl").read_text().splitlines()]
    assert len({r["client"] for r in records}) == 50
    assert sum(not r["repeat"] for r in records) == 2  # two answers: two cases, however often labelled


def test_an_operator_promotion_survives_a_restart(ensemble, crop_png, tmp_path, restores_controller):
    from blackboard.feedback_learning import PromotionConfig
    from blackboard.feedback_promotion import PromotionRule

    log_path = tmp_path / "feedback.jsonl"
    server, port = start(ensemble, feedback_path=str(log_path))
    base = ensemble.controller_version
    request = classify_request(crop_png, detect=pb.FACE_DETECTION_OFF)
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = pb_grpc.DetectorStub(channel)
            for i in range(6):  # six answers, six clients
                answer = stub.Classify(request, timeout=60)
                stub.Feedback(pb.FeedbackRequest(request_id=answer.request_id, label=pb.LABEL_FAKE), timeout=30,
                              metadata=(("authorization", f"Bearer op-test-{i}"),))
            result = server.service.admin.promote(PromotionRule(
                min_clients=6, min_cases=6, guard=PromotionConfig(max_auc_drop=1.0, max_logloss_rise=100.0)))
            assert result.promoted, result.detail
            promoted = stub.Classify(request, timeout=60)
            assert promoted.controller_version == result.controller.version != base
    finally:
        server.stop(0).wait()
    ensemble.rollback_controller(base)  # what a fresh process would serve before reading the state
    server, port = start(ensemble, feedback_path=str(log_path))
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            again = pb_grpc.DetectorStub(channel).Classify(request, timeout=60)
        assert again.controller_version == promoted.controller_version
        assert again.faces[0].p_fake == pytest.approx(promoted.faces[0].p_fake, abs=1e-6)
        assert server.service.admin.rollback(base) == base  # by version name, persisted
    finally:
        server.stop(0).wait()
    ensemble.rollback_controller(result.controller.version)
    server, port = start(ensemble, feedback_path=str(log_path))
    server.stop(0).wait()
    assert ensemble.controller_version == base


def test_feedback_is_rate_limited_per_client(ensemble, crop_png, tmp_path, restores_controller):
    server, port = start(ensemble, feedback_path=str(tmp_path / "fb.jsonl"), feedback_rate_per_s=0.01,
                         feedback_burst=3)
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = pb_grpc.DetectorStub(channel)
            resp = stub.Classify(classify_request(crop_png, detect=pb.FACE_DETECTION_OFF), timeout=60)
            request = pb.FeedbackRequest(request_id=resp.request_id, label=pb.LABEL_REAL)
            for _ in range(3):
                assert stub.Feedback(request, timeout=30).stored
            with pytest.raises(grpc.RpcError) as info:
                stub.Feedback(request, timeout=30)
            assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert "retry in" in info.value.details()
            # Another client (its own bearer token) has its own bucket; classify is not limited.
            other = (("authorization", "Bearer someone-else"),)
            assert stub.Feedback(request, timeout=30, metadata=other).stored
            assert len(stub.Classify(classify_request(crop_png, detect=pb.FACE_DETECTION_OFF), timeout=60).faces) == 1
    finally:
        server.stop(0).wait()
    assert len((tmp_path / "fb.jsonl").read_text().splitlines()) == 4  # the refused call stored nothing


def test_token_auth(ensemble, crop_png, tmp_path, capsys):
    server, port = start(ensemble, tokens=("s3cret-token",))
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = pb_grpc.DetectorStub(channel)
            request = classify_request(crop_png, detect=pb.FACE_DETECTION_OFF)
            for metadata in [(), (("authorization", "Bearer wrong"),), (("authorization", "s3cret-token"),)]:
                with pytest.raises(grpc.RpcError) as info:
                    stub.Classify(request, timeout=30, metadata=metadata)
                assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
            resp = stub.Classify(request, timeout=60, metadata=(("authorization", "Bearer s3cret-token"),))
            assert len(resp.faces) == 1
            # Health stays open for probes.
            assert health_status(channel) == health_pb2.HealthCheckResponse.SERVING
        from fakeface import classify as classify_cli
        crop_file = tmp_path / "crop.png"
        crop_file.write_bytes(crop_png)
        assert classify_cli.main([str(crop_file), "--server", f"127.0.0.1:{port}", "--detect", "off"]) == 1
        assert "refused the credentials" in capsys.readouterr().err
        assert classify_cli.main([str(crop_file), "--server", f"127.0.0.1:{port}", "--detect", "off",
                                  "--token", "s3cret-token", "--json"]) == 0
        assert len(json.loads(capsys.readouterr().out)[0]["faces"]) == 1
    finally:
        server.stop(0).wait()


def _self_signed(tmp_path):
    crypto = pytest.importorskip("cryptography", reason="cryptography is needed to make a test certificate")
    del crypto
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = _dt.datetime.now(_dt.timezone.utc)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _dt.timedelta(minutes=5)).not_valid_after(now + _dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"),
                                                     x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                       critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


def test_tls_with_token(ensemble, tmp_path):
    from fakeface.client import ClientError, DetectorClient

    cert, key = _self_signed(tmp_path)
    server, port = start(ensemble, tokens=("tls-token",), tls_cert=str(cert), tls_key=str(key))
    try:
        with DetectorClient(f"localhost:{port}", token="tls-token", tls_ca=cert) as client:
            assert {a.name for a in client.model_info().agents} == AGENTS
        with DetectorClient(f"localhost:{port}", token="tls-token", timeout_s=5) as plain:
            with pytest.raises(ClientError, match="cannot reach server"):
                plain.model_info()
    finally:
        server.stop(0).wait()


def test_drain_finishes_in_flight_calls_then_refuses(ensemble, face_png):
    server, port = start(ensemble)
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    stub = pb_grpc.DetectorStub(channel)
    try:
        pending = stub.Classify.future(classify_request(face_png), timeout=60)
        end = time.monotonic() + 30
        # Drain only once the call is inside the service (the in-flight gauge says so).
        while not server.metrics.registry.get_sample_value("fakeface_in_flight") and time.monotonic() < end:
            time.sleep(0.002)
        assert server.metrics.registry.get_sample_value("fakeface_in_flight") == 1
        drained = threading.Thread(target=server.drain, kwargs={"grace_s": 30})
        drained.start()
        resp = pending.result()
        assert len(resp.faces) >= 1
        drained.join(60)
        assert not drained.is_alive()
        with pytest.raises(grpc.RpcError) as info:
            stub.Classify(classify_request(face_png), timeout=5)
        assert info.value.code() == grpc.StatusCode.UNAVAILABLE
    finally:
        channel.close()


# ----------------------------------------------------------------- `fakeface classify --server`


@pytest.fixture(scope="module")
def inputs(tmp_path_factory, face_rgb, face_photo):
    folder = tmp_path_factory.mktemp("cli-inputs")
    # Two faces side by side (the photo and its mirror image): a "screenshot" with two rows.
    pair = folder / "pair.jpg"
    cv2.imwrite(str(pair), cv2.cvtColor(np.hstack([face_rgb, face_rgb[:, ::-1]]), cv2.COLOR_RGB2BGR))
    video = folder / "clip.mp4"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"mp4v"), 10, (512, 512))
    for i in range(10):  # one second, the face sliding right by 3 px per frame
        writer.write(cv2.cvtColor(np.ascontiguousarray(np.roll(face_rgb, 3 * i, axis=1)), cv2.COLOR_RGB2BGR))
    writer.release()
    return {"photo": face_photo, "pair": pair, "video": video}


def test_classify_cli_server_mode_json(served, inputs, capsys):
    from fakeface import classify as classify_cli
    code = classify_cli.main([str(inputs["photo"]), str(inputs["pair"]), "--server", f"127.0.0.1:{served['port']}",
                              "--json"])
    out, err = capsys.readouterr()
    assert code == 0, err
    results = json.loads(out)
    assert [r["file"] for r in results] == [str(inputs["photo"]), str(inputs["pair"])]
    assert len(results[0]["faces"]) == 1 and len(results[1]["faces"]) == 2
    for face in results[0]["faces"] + results[1]["faces"]:
        assert set(face["votes"]) == AGENTS and face["verdict"] in ("real", "fake", "uncertain")
        assert face["verdict"] != "uncertain" or face["reason"].startswith("borderline")
    # The mirrored face is the same face: the ensemble sees (almost) the same crop twice.
    left, right = sorted(results[1]["faces"], key=lambda f: f["box"][0])
    assert left["box"][0] < 512 <= right["box"][0]


def test_classify_cli_names_a_file_over_the_message_limit_and_goes_on(served, inputs, tmp_path, capsys):
    from fakeface import classify as classify_cli
    big = tmp_path / "noise.png"  # incompressible: over the test server's 2 MiB message limit
    cv2.imwrite(str(big), np.random.default_rng(0).integers(0, 255, (1000, 1000, 3), dtype=np.uint8))
    assert big.stat().st_size > MAX_MESSAGE
    code = classify_cli.main([str(big), str(inputs["photo"]), "--server", f"127.0.0.1:{served['port']}", "--json"])
    out, err = capsys.readouterr()
    assert code == 2, err
    assert f"{big}: server at" in err and "--max-message-mb" in err and "JPEG" in err
    results = json.loads(out)
    assert "error" in results[0] and len(results[1]["faces"]) == 1


def test_classify_cli_server_mode_table_and_video_tracks(served, inputs, capsys):
    from fakeface import classify as classify_cli
    code = classify_cli.main([str(inputs["pair"]), str(inputs["video"]), "--server", f"127.0.0.1:{served['port']}",
                              "--fps", "5"])
    out, err = capsys.readouterr()
    assert code == 0, err
    rows = [line.split() for line in out.splitlines()]
    assert sum(1 for r in rows if r and r[0] == "pair.jpg") == 2
    track = next(r for r in rows if r[:3] == ["clip.mp4", "track", "0"])
    video = next(r for r in rows if r[:2] == ["clip.mp4", "video"])
    assert 3 <= int(track[3].strip("(")) <= 5  # 10 frames at 10 fps sampled at 5 fps: one track
    assert not any(r[:3] == ["clip.mp4", "track", "1"] for r in rows)
    assert video[2] == track[5] and video[3] == track[6]  # one track: the video verdict is the track's
    from vision.video import VIDEO_RULE

    assert " ".join(VIDEO_RULE.split()) in " ".join(out.split())  # the clip rule, said in one sentence


# Last: kills replicas of the module's ensemble, then waits for Serve to replace them.
def test_killed_replicas_are_replaced_without_a_cap_and_requests_still_succeed(served, ensemble, face_png):
    import ray

    ray.kill(ensemble.actors("detector")[0])
    # The detector is being replaced: the call waits for it (back-off) instead of failing after ~4 s.
    resp = served["stub"].Classify(classify_request(face_png), timeout=120)
    assert len(resp.faces) >= 1
    for _ in range(4):  # past Ray's old restart budget of 3
        old = {a._actor_id for a in ensemble.actors("lenet")}
        ray.kill(ensemble.actors("lenet")[0])
        end = time.monotonic() + 120
        while not (ensemble.component_status(timeout_s=5)["agent/lenet"]
                   and {a._actor_id for a in ensemble.actors("lenet")} - old):
            assert time.monotonic() < end, "lenet was not replaced"
            time.sleep(0.5)
    # Every answer is whole or names lenet as missing, never wrong or failed; votes come back.
    end = time.monotonic() + 120
    while True:
        answer = served["stub"].Classify(classify_request(face_png), timeout=120)
        face = answer.faces[0]
        if not face.degraded:
            break
        assert list(face.missing_agents) == ["lenet"], face.missing_agents
        assert time.monotonic() < end, "lenet's votes did not come back after its replacements"
        time.sleep(1.0)
    assert {v.agent for v in face.votes} == AGENTS
    assert ensemble.describe().restarts.get("agent/lenet", 0) >= 4
    assert ensemble.describe().restarts.get("detector", 0) >= 1
