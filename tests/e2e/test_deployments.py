"""The deployment bodies without Ray (plain classes), and the in-process board against the Serve one.

`AgentDeployment` and `DetectorDeployment` are what Ray Serve runs; called directly they must
give the predictor's own numbers, micro-batch concurrent calls and split the answers back.
`InProcessBoard` (the CLI's Ray-free path) must decide exactly as the Serve ensemble does.
"""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from agents.bundle import load_bundle
from agents.predictor import AgentPredictor
from blackboard.deployments import AgentDeployment, DetectorDeployment
from blackboard.inprocess import InProcessBoard


def test_agent_deployment_assesses_a_micro_batch_in_one_pass_and_splits_answers(tiny_bundle, face_crop):
    bundle = load_bundle(tiny_bundle)
    body = AgentDeployment(bundle, "lenet", max_batch_size=8)
    crops = [np.ascontiguousarray(np.roll(face_crop, 11 * i, axis=0)) for i in range(5)]
    answers = body.assess([crops[:1], crops[1:3], crops[3:]])
    want = AgentPredictor(bundle, "lenet").predict_p_fake(crops)
    np.testing.assert_allclose(np.concatenate([p for p, _ in answers]), want, atol=1e-5)
    assert [len(p) for p, _ in answers] == [1, 2, 2] and all(ms > 0 for _, ms in answers)
    assert body.stats() == {"batches": 1, "crops": 5}  # three requests, one forward pass
    assert body.assess([[]])[0][0].shape == (0,) and body.stats()["batches"] == 1


@pytest.mark.slow
def test_serve_batches_concurrent_calls_by_crops(ensemble, face_crop):
    """Through a real replica: concurrent calls share passes, and answers are not mixed up."""
    handle = ensemble.handle("custom")
    before = handle.stats.remote().result(timeout_s=30)
    crops = [np.ascontiguousarray(np.roll(face_crop, 7 * i, axis=1)) for i in range(6)]
    responses = [handle.remote([crop]) for crop in crops]
    answers = [r.result(timeout_s=60)[0][0] for r in responses]
    after = handle.stats.remote().result(timeout_s=30)
    assert after["crops"] - before["crops"] == 6 and after["batches"] - before["batches"] < 6
    alone = [handle.remote([crop]).result(timeout_s=60)[0][0] for crop in crops]
    np.testing.assert_allclose(answers, alone, atol=1e-4)


def test_detector_deployment_finds_the_face(face_rgb):
    faces = DetectorDeployment()(face_rgb, "auto")
    assert len(faces) == 1 and faces[0].crop.shape == (224, 224, 3) and faces[0].confidence > 0.9


@pytest.mark.slow
def test_in_process_board_decides_as_the_serve_ensemble(ensemble, session_bundle, face_rgb, face_crop):
    board = InProcessBoard(session_bundle)
    try:
        local, served = board.classify(face_rgb, request_id="local"), ensemble.classify(face_rgb)
        assert len(local.faces) == len(served.faces) == 1
        for name, vote in served.faces[0].votes.items():
            assert local.faces[0].votes[name].p_fake == pytest.approx(vote.p_fake, abs=1e-5)
        assert local.faces[0].decision.label == served.faces[0].decision.label
        assert local.faces[0].decision.p_fake == pytest.approx(served.faces[0].decision.p_fake, abs=1e-5)
        assert local.controller_version == served.controller_version and not local.degraded
        crops = board.classify_faces([face_crop, face_crop])
        assert len(crops.faces) == 2 and board.describe().agents[0].crops_sent == 3
        board.feedback("local", "fake")  # the same feedback path as the service
    finally:
        board.shutdown()
