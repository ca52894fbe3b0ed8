"""The blackboard on a real local Ray Serve: detector and agent deployments, the controller, faults, deadlines.

The session's ensemble (tests/conftest.py) serves these tests: its agent replicas have a
``set_delay`` knob, so a test can make one agent slow (to miss a deadline, or to be killed
mid-call); a replica that Serve starts in place of a dead one comes back with no delay.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import ray
from slow_agents import classify_with_a_late_agent, late, set_delay

from agents.bundle import load_bundle
from blackboard.ensemble import DeadlineExceeded, Ensemble
from blackboard.config import EnsembleConfig

pytestmark = pytest.mark.slow


def test_case_flows_from_board_to_agents_to_controller(ensemble, face_rgb, session_bundle):
    case = ensemble.classify(face_rgb, source="astronaut.png", request_id="flow-1")
    assert case.request_id == "flow-1" and case.source == "astronaut.png"
    assert len(case.faces) == 1, case.no_face_reason
    face = case.faces[0]
    assert face.crop.shape == (224, 224, 3) and len(face.landmarks) == 5 and face.confidence > 0.9
    bundle = load_bundle(session_bundle)
    assert set(face.votes) == set(bundle.agent_names)
    for name, vote in face.votes.items():
        assert 0.0 <= vote.p_fake <= 1.0 and vote.latency_ms > 0
        assert vote.model_sha == bundle.agent(name).sha256
    assert abs(sum(v.weight for v in face.votes.values()) - 1.0) < 1e-6
    decision = face.decision
    controller = ensemble.controller
    assert decision.combiner == "ensemble" and decision.controller_version == controller.version
    row = np.array([[face.votes[a].p_fake for a in controller.agents]])
    assert decision.p_fake == pytest.approx(float(controller.predict_proba(row)[0]))
    if abs(decision.p_fake - controller.threshold) < ensemble.borderline.half_width:  # the can't-tell band
        assert decision.label == "uncertain" and decision.reason.startswith("borderline")
    else:
        assert decision.label == ("fake" if decision.p_fake >= controller.threshold else "real")
    assert not case.degraded and case.bundle_version == bundle.version
    assert {"detect", "agents", "decide", "total"} <= set(case.timings_ms)


def test_killed_agent_gives_degraded_decision_and_comes_back(ensemble, face_crop):
    ensemble.classify_faces([face_crop])  # warm
    victim = ensemble.actors("lenet")[0]
    set_delay(ensemble, "lenet", 30.0)
    result: dict = {}
    worker = threading.Thread(target=lambda: result.update(case=ensemble.classify_faces([face_crop])))
    worker.start()
    time.sleep(1.5)  # the slow lenet call is running now
    ray.kill(victim)  # dead for good: Serve replaces it with a new replica
    worker.join(timeout=30)
    case = result["case"]
    assert case.degraded and case.missing_agents == ["lenet"]
    assert set(case.faces[0].votes) == {"custom", "vgg16"}
    assert case.faces[0].decision is not None and case.faces[0].votes.get("lenet") is None
    # Serve starts a new replica (fresh, so without the delay); the next case waits for it and
    # has every vote, and the replacement is counted.
    later = ensemble.classify_faces([face_crop])
    assert not later.degraded and set(later.faces[0].votes) == {"custom", "lenet", "vgg16"}
    assert ensemble.actors("lenet") and ensemble.actors("lenet")[0]._actor_id != victim._actor_id
    assert ensemble.component_status()["agent/lenet"]
    assert ensemble.describe().restarts.get("agent/lenet", 0) >= 1


def test_deadline_shorter_than_an_agent_gives_degraded_decision_in_time(ensemble, face_crop):
    case, elapsed = classify_with_a_late_agent(ensemble, face_crop, agent="vgg16", delay_s=4.0, deadline_s=1.5)
    assert elapsed < 1.5 + 1.0, elapsed
    assert case.degraded and case.missing_agents == ["vgg16"]
    assert case.faces[0].decision.p_fake == pytest.approx(
        float(ensemble.controller.predict_proba(
            np.array([[case.faces[0].votes["custom"].p_fake, case.faces[0].votes["lenet"].p_fake, 0.5]]),
            np.array([[True, True, False]]))[0]))


def test_no_vote_in_time_raises_deadline_exceeded(ensemble, face_crop):
    with late(ensemble, ensemble.agent_names, 2.0), pytest.raises(DeadlineExceeded, match="no agent voted"):
        ensemble.classify_faces([face_crop], deadline_s=0.5)
    assert not ensemble.classify_faces([face_crop]).degraded


def test_concurrent_classify_from_eight_threads(ensemble, face_crop):
    before = {name: ensemble.model_info()["agents"][name]["batches_sent"] for name in ensemble.agent_names}
    crops = [np.ascontiguousarray(np.roll(face_crop, 7 * i, axis=1)) for i in range(8)]
    with ThreadPoolExecutor(max_workers=8) as pool:
        cases = list(pool.map(lambda i: ensemble.classify_faces([crops[i]], request_id=f"t{i}"), range(8)))
    assert [c.request_id for c in cases] == [f"t{i}" for i in range(8)]
    assert all(not c.degraded and len(c.faces[0].votes) == 3 for c in cases)
    # Each case's own crop got its own vote (answers are not mixed up by micro-batching).
    alone = ensemble.classify_faces([crops[3]])
    assert cases[3].faces[0].votes["vgg16"].p_fake == pytest.approx(alone.faces[0].votes["vgg16"].p_fake, abs=1e-4)
    after = ensemble.model_info()["agents"]
    # Concurrent requests were micro-batched by @serve.batch: fewer forward passes than cases.
    assert any(after[n]["batches_sent"] - before[n] < 8 for n in ensemble.agent_names), (before, after)


def test_feedback_evidence_changes_nothing_and_a_set_controller_can_be_rolled_back(ensemble, face_crop):
    original = ensemble.controller
    v0 = ensemble.controller_version
    case = ensemble.classify_faces([face_crop], request_id="fb-1")
    evidence = ensemble.case_evidence("fb-1")
    assert evidence["agents"] == list(original.agents) and len(evidence["votes"]) == 1
    assert ensemble.case_evidence("never-seen") is None
    assert ensemble.controller_version == v0  # looking at evidence moves nothing
    bumped = original.online_update(np.array(evidence["votes"][0], dtype=float), None, "fake")
    v1 = ensemble.set_controller(bumped)  # what an operator's promotion does
    assert v1 != v0 and original.version == v0  # the old table was not mutated
    assert ensemble.classify_faces([face_crop]).faces[0].decision.controller_version == v1
    assert case.faces[0].decision.controller_version == v0
    assert ensemble.rollback_controller() == v0 and ensemble.controller_version == v0
    assert ensemble.rollback_controller(v1) == v1
    assert ensemble.model_info()["controller"]["feedback_count"] == 1
    assert ensemble.rollback_controller(v0) == v0  # the session's ensemble goes back as it was


def test_unschedulable_deployment_is_refused(ray_session, session_bundle):
    with pytest.raises(ValueError, match="needs 7 CPUs"):  # 2 x 3 agents + the detector
        Ensemble(session_bundle, EnsembleConfig(layout="agents", replicas=2, num_cpus_per_actor=1.0))
    with pytest.raises(ValueError, match="needs 5 CPUs"):  # 5 agent sets (each runs the detector too)
        Ensemble(session_bundle, EnsembleConfig(layout="sets", replicas=5, num_cpus_per_actor=1.0))
    with pytest.raises(ValueError, match="'sets' or 'agents'"):
        EnsembleConfig(layout="pool")


def test_cpu_share_spreads_the_cluster_over_every_replica():
    from blackboard.serve_apps import cpus_per_replica

    # Four agents + the detector on 2 CPUs: 0.4 each, so all five can be scheduled.
    share = cpus_per_replica(None, replicas=1, agents=4, available=2.0)
    assert 0.35 <= share and share * 5 <= 2.0
    assert cpus_per_replica(None, replicas=1, agents=3, available=16.0) == 1.0  # never more than a core
    assert cpus_per_replica(0.25, replicas=2, agents=3, available=2.0) == 0.25
    with pytest.raises(ValueError, match="needs 3.5 CPUs"):
        cpus_per_replica(0.5, replicas=2, agents=3, available=2.0)
    # Layout "sets": the detector runs in the set's replicas, so two replicas fit on 2 CPUs at 1 each.
    assert cpus_per_replica(None, replicas=2, agents=1, available=2.0, detector_apart=False) == 0.99
    with pytest.raises(ValueError, match=r"needs 3 CPUs \(3 replica\(s\) x 1 agent application\(s\) at 1"):
        cpus_per_replica(1.0, replicas=3, agents=1, available=2.0, detector_apart=False)
