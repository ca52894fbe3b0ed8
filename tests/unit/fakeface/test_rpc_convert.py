"""The wire's enum maps, each defined once, and the request builder every client uses."""

from __future__ import annotations

import pytest

from fakeface.rpc.fakeface.v1 import detector_pb2 as pb
from fakeface.rpc_convert import DETECT_ENUMS, DETECT_MODES, classify_request, feedback_label, verdict_name


def test_each_detection_mode_goes_to_the_wire_and_back():
    assert sorted(DETECT_ENUMS) == ["auto", "off", "on"]
    assert all(DETECT_MODES[DETECT_ENUMS[mode]] == mode for mode in DETECT_ENUMS)
    assert DETECT_MODES[pb.FACE_DETECTION_UNSPECIFIED] == "auto"  # an unset field means the default


def test_labels_read_as_words_and_only_real_or_fake_are_feedback():
    words = [verdict_name(v) for v in (pb.LABEL_REAL, pb.LABEL_FAKE, pb.LABEL_UNCERTAIN, pb.LABEL_UNSPECIFIED, 99)]
    assert words == ["real", "fake", "uncertain", "undecided", "undecided"]
    assert (feedback_label(pb.LABEL_REAL), feedback_label(pb.LABEL_FAKE)) == ("real", "fake")
    assert feedback_label(pb.LABEL_UNCERTAIN) == "LABEL_UNCERTAIN" and feedback_label(7) == "<undefined value 7>"


def test_a_classify_request_carries_mode_heatmaps_source_and_sequence():
    request = classify_request(b"img", detect="off", heatmaps=True, source="a.png", sequence_id=4)
    assert request.options.face_detection == pb.FACE_DETECTION_OFF and request.options.want_heatmaps
    assert (request.image, request.options.source, request.sequence_id) == (b"img", "a.png", 4)
    assert not classify_request(b"img").options.HasField("source")  # no source: the field stays unset
    with pytest.raises(ValueError, match="detect must be one of"):
        classify_request(b"img", detect="sideways")


def test_model_info_carries_each_agents_calibration_to_the_wire():
    import json

    from agents.preprocessing import Preprocessing
    from blackboard.model_info import AgentInfo, EnsembleInfo
    from fakeface.rpc_convert import model_info_to_proto

    agent = AgentInfo(name="forensic", sha256="ab" * 32, preprocessing=Preprocessing(height=224, width=224),
                      temperature=1.25, threshold=0.4, threshold_rule="f0.5", val_metrics={}, replicas=1,
                      batches_sent=0, crops_sent=0, bias=-0.5)
    info = EnsembleInfo(bundle_path="b", bundle_version="v", manifest={}, agents=(agent,), combiner="logodds",
                        controller_version="1", controller=None, trust={}, threshold=0.5, config={})
    wire = model_info_to_proto(info)
    assert wire.agents[0].temperature == 1.25 and wire.agents[0].bias == -0.5
    assert json.loads(wire.info_json)["agents"]["forensic"]["bias"] == -0.5
