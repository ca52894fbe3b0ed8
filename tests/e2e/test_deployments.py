"""The deployment bodies without Ray (plain classes), both Serve layouts, and the in-process board.

`AgentDeployment`, `AgentSetDeployment` and `DetectorDeployment` are what Ray Serve runs; called
directly they must give the predictor's own numbers, micro-batch concurrent calls and split the
answers back. An ensemble in layout "sets" (the default) must decide exactly as one in layout
"agents" (the session's), and survive its replica dying. `InProcessBoard` (the CLI's Ray-free
path) must decide exactly as the Serve ensemble does, whose ingress takes a case in one call.
"""

from __future__ import annotations

import asyncio
import time
from concurrent import futures

import numpy as np
import pytest
from slow_agents import classify_with_a_late_agent

from agents.bundle import load_bundle
from agents.predictor import AgentPredictor
from blackboard.deployments import AgentDeployment, AgentSetDeployment, DetectorDeployment
from blackboard.workers import AgentWorker
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


class _Broken(AgentWorker):
    def assess(self, requests):
        raise RuntimeError("this agent fails on every batch")


def test_agent_set_answers_every_agent_per_request_and_leaves_out_a_failing_one(tiny_bundle, face_crop):
    bundle = load_bundle(tiny_bundle)
    body = AgentSetDeployment(bundle, ("custom", "lenet"), max_batch_size=8)
    crops = [np.ascontiguousarray(np.roll(face_crop, 13 * i, axis=1)) for i in range(3)]
    answers = body.assess([crops[:1], crops[1:]])
    assert [set(a) for a in answers] == [{"custom", "lenet"}] * 2
    for name in ("custom", "lenet"):
        want = AgentPredictor(bundle, name).predict_p_fake(crops)
        np.testing.assert_allclose(np.concatenate([a[name][0] for a in answers]), want, atol=1e-5)
    assert body.stats() == {"custom": {"batches": 1, "crops": 3}, "lenet": {"batches": 1, "crops": 3}}
    body.workers["lenet"] = _Broken.__new__(_Broken)  # lenet now fails: custom still answers
    answers = body.assess([crops[:1]])
    assert set(answers[0]) == {"custom"}
    with pytest.raises(ValueError, match="at least one agent"):
        AgentSetDeployment(bundle, ())


@pytest.mark.slow
def test_agent_set_decides_as_one_application_per_agent(set_ensemble, ensemble, face_rgb, face_crop):
    assert len(set_ensemble.actors("agents")) == 1
    with pytest.raises(KeyError, match="agents"):
        set_ensemble.actors("lenet")  # no per-agent application in this layout
    one, other = set_ensemble.classify(face_rgb), ensemble.classify(face_rgb)
    assert len(one.faces) == len(other.faces) == 1 and not one.degraded
    assert set(one.faces[0].votes) == set(other.faces[0].votes) == set(set_ensemble.agent_names)
    for name, vote in other.faces[0].votes.items():
        assert one.faces[0].votes[name].p_fake == pytest.approx(vote.p_fake, abs=1e-5)
    assert one.faces[0].decision.p_fake == pytest.approx(other.faces[0].decision.p_fake, abs=1e-5)
    # Concurrent cases share forward passes (counted per agent), and answers are not mixed up.
    before = set_ensemble.describe().agents[0].batches_sent
    crops = [np.ascontiguousarray(np.roll(face_crop, 9 * i, axis=0)) for i in range(6)]
    with futures.ThreadPoolExecutor(6) as pool:
        together = list(pool.map(lambda c: set_ensemble.classify_faces([c]).faces[0].decision.p_fake, crops))
    passes = set_ensemble.describe().agents[0].batches_sent - before
    alone = [set_ensemble.classify_faces([c]).faces[0].decision.p_fake for c in crops]
    np.testing.assert_allclose(together, alone, atol=1e-5)
    assert 1 <= passes < 6


@pytest.mark.slow
def test_agent_set_replica_killed_is_replaced_and_no_case_is_lost(set_ensemble, face_crop):
    import ray

    set_ensemble.classify_faces([face_crop])  # warm
    victim = set_ensemble.actors("agents")[0]
    ray.kill(victim)  # every agent goes with it; Serve starts a new replica
    # Cases sent meanwhile go to the dead replica or wait for a live one: each is asked again
    # (with back-off) until the replacement answers, and comes back with every vote.
    cases = [set_ensemble.classify_faces([face_crop]) for _ in range(3)]
    assert all(not c.degraded and set(c.faces[0].votes) == set(set_ensemble.agent_names) for c in cases)
    until = time.monotonic() + 60
    while time.monotonic() < until and not any(a._actor_id != victim._actor_id for a in set_ensemble.actors("agents")):
        time.sleep(0.5)
    assert any(a._actor_id != victim._actor_id for a in set_ensemble.actors("agents"))
    status = set_ensemble.component_status()
    assert status["detector"] and all(status[f"agent/{n}"] for n in set_ensemble.agent_names)
    assert set_ensemble.describe().restarts.get("agent/lenet", 0) >= 1


@pytest.mark.slow
def test_a_late_agent_in_the_set_degrades_the_answer_in_time(set_ensemble, face_crop):
    case, elapsed = classify_with_a_late_agent(set_ensemble, face_crop, agent="vgg16", delay_s=4.0, deadline_s=1.5)
    assert elapsed < 2.5
    assert case.degraded and case.missing_agents == ["vgg16"]
    assert set(case.faces[0].votes) == set(set_ensemble.agent_names) - {"vgg16"}
    assert case.faces[0].decision is not None
    time.sleep(3.0)  # the late vgg16 call finishes in the background; then vgg16 votes again
    later = set_ensemble.classify_faces([face_crop])
    assert not later.degraded and set(later.faces[0].votes) == set(set_ensemble.agent_names)


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


def test_agent_set_with_the_detector_finds_faces_as_the_detector_does(tiny_bundle, face_rgb):
    bundle = load_bundle(tiny_bundle)
    body = AgentSetDeployment(bundle, ("lenet",), detector=True)
    try:
        faces = asyncio.run(body.detect(face_rgb, "auto"))
        alone = DetectorDeployment()(face_rgb, "auto")
        assert len(faces) == len(alone) == 1
        np.testing.assert_allclose(faces[0].box, alone[0].box, atol=1e-3)
        assert asyncio.run(body.detect(face_rgb[:200, :200], "off"))[0].crop.shape == (224, 224, 3)
    finally:
        body.close()
    plain = AgentSetDeployment(bundle, ("lenet",))
    with pytest.raises(RuntimeError, match="without the face detector"):
        asyncio.run(plain.detect(face_rgb, "auto"))


@pytest.mark.slow
def test_layout_sets_runs_detector_agents_and_heat_maps_in_one_replica(set_ensemble, face_rgb, face_crop):
    """One TensorFlow process (issue 26): the detector component is the agent set's replica, and
    the heat maps come from it too, one per agent."""
    detector = {a._actor_id for a in set_ensemble.actors("detector")}
    assert detector and detector == {a._actor_id for a in set_ensemble.actors("agents")}
    case = set_ensemble.classify(face_rgb, detect="on")
    assert len(case.faces) == 1 and not case.degraded
    maps = set_ensemble.heatmap_renderer().render_png([case.faces[0].crop, face_crop])
    assert [set(m) for m in maps] == [set(set_ensemble.agent_names)] * 2
    # Each agent's tile, or (the registered CNNs, measured to show no location) why it has none.
    assert all(tile.png.startswith(b"\x89PNG") or "shows no location" in tile.withheld
               for m in maps for tile in m.values())


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
        assert board.case_evidence("local")["agents"]  # the same feedback evidence as the service
    finally:
        board.shutdown()


@pytest.mark.slow
def test_served_ingress_gives_the_in_process_p_fake_per_face(set_ensemble, session_bundle, face_rgb):
    """One call to the ingress (image -> faces -> votes in the agent set's replica) decides each
    face of a generated image as the in-process board does, and keeps the crops unless asked."""
    pair = np.ascontiguousarray(np.hstack([face_rgb, face_rgb[:, ::-1]]))  # two faces, 512x1024
    noise = np.random.default_rng(5).integers(0, 256, (300, 260, 3), dtype=np.uint8)  # used whole
    board = InProcessBoard(session_bundle)
    try:
        for image, detect in ((pair, "on"), (noise, "off")):
            local = board.classify(image, detect=detect, deadline_s=60)
            served = set_ensemble.classify(image, detect=detect, deadline_s=60, keep_crops=False)
            assert len(served.faces) == len(local.faces) >= 1 and not served.degraded
            for mine, theirs in zip(served.faces, local.faces):
                assert mine.crop is None and theirs.crop is not None  # the pixels stayed in the replica
                np.testing.assert_allclose(mine.box, theirs.box, atol=1e-3)
                assert set(mine.votes) == set(theirs.votes) == set(set_ensemble.agent_names)
                for name, vote in theirs.votes.items():
                    assert mine.votes[name].p_fake == pytest.approx(vote.p_fake, abs=1e-5)
                assert mine.decision.p_fake == pytest.approx(theirs.decision.p_fake, abs=1e-5)
                assert mine.decision.label == theirs.decision.label
                assert (mine.ood_score is None) == (theirs.ood_score is None)
                assert theirs.ood_score is None or mine.ood_score == pytest.approx(theirs.ood_score)
                assert mine.context == pytest.approx(theirs.context)
        assert len(set_ensemble.classify(pair, detect="on", deadline_s=60).faces[1].crop) == 224  # asked: sent
    finally:
        board.shutdown()
