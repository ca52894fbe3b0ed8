"""The plain workers (`blackboard.workers`): what the in-process board runs without Ray.

Their votes are checked against the Serve deployments' in tests/e2e/test_deployments.py; here,
that the one-shot paths never import Ray (importing Ray Serve alone costs about a second of a
cold `fakeface classify`).
"""

from __future__ import annotations

import numpy as np
import pytest

from agents.bundle import load_bundle
from blackboard.workers import AgentSet


def test_the_in_process_board_and_classify_import_no_ray():
    from processes import imported_by

    modules = ("blackboard.inprocess", "blackboard.workers", "fakeface.classify")
    assert imported_by(modules, ("ray", "ray.serve", "fastapi")) == []


def test_an_agent_set_votes_with_each_agent_and_leaves_a_failing_one_out(tiny_bundle, face_crop):
    bundle = load_bundle(tiny_bundle)
    agents = AgentSet(bundle, ("custom", "lenet"), batch_size=4, warm_up=False)
    try:
        answers = agents.assess([[face_crop], [face_crop, face_crop]])
        assert [sorted(a) for a in answers] == [["custom", "lenet"]] * 2
        assert [len(a["lenet"][0]) for a in answers] == [1, 2]
        assert np.all((answers[1]["custom"][0] >= 0) & (answers[1]["custom"][0] <= 1))

        def broken(requests):
            raise RuntimeError("this agent's model failed")

        agents.workers["lenet"].assess = broken
        assert [sorted(a) for a in agents.assess([[face_crop]])] == [["custom"]]
        assert agents.stats()["custom"]["crops"] == 4
    finally:
        agents.close()


def test_an_agent_set_needs_an_agent_and_a_detector_to_detect(tiny_bundle, face_rgb):
    import asyncio

    with pytest.raises(ValueError, match="received none"):
        AgentSet(load_bundle(tiny_bundle), ())
    agents = AgentSet(load_bundle(tiny_bundle), ("lenet",), warm_up=False)
    try:
        with pytest.raises(RuntimeError, match="without the face detector"):
            asyncio.run(agents.detect(face_rgb, "auto"))
    finally:
        agents.close()


def test_a_services_detector_runs_the_compiled_loops_and_a_commands_keeps_numpy(tiny_bundle, monkeypatch):
    # A service (warm_up) sees many pictures: Numba's start-up pays; one `classify` would not.
    from blackboard.workers import DetectorWorker
    from vision import jit

    monkeypatch.setattr(jit, "_IN_USE", [False])
    assert DetectorWorker().detector is not None and not jit.compiled_loops_in_use()
    made = []

    class Recorded(AgentSet):  # records what its detector is made with; no model is loaded
        worker_class = staticmethod(lambda bundle, agent, **kwargs: object())
        detector_class = staticmethod(lambda **kwargs: made.append(kwargs) or object())

    for warm_up in (False, True):
        Recorded(load_bundle(tiny_bundle), ("lenet",), warm_up=warm_up, detector=True).close()
    assert made == [{"compiled_loops": False}, {"compiled_loops": True}]
    assert DetectorWorker(compiled_loops=True).detector is not None and jit.compiled_loops_in_use()


def test_a_short_deadline_leaves_a_slow_agent_out_of_its_own_case_only(tiny_bundle, face_crop):
    import time

    agents = AgentSet(load_bundle(tiny_bundle), ("custom", "lenet"), batch_size=4, warm_up=False)
    try:
        agents.assess([[face_crop]])  # traced once, so only the sleep below makes lenet late
        fast = agents.workers["lenet"].assess

        def slow(requests):
            time.sleep(1.0)
            return fast(requests)

        agents.workers["lenet"].assess = slow
        now = time.time()
        hurried, patient, unbounded = agents.assess([[face_crop]] * 3, [now + 0.3, now + 10.0, None])
        assert sorted(hurried) == ["custom"] and sorted(patient) == sorted(unbounded) == ["custom", "lenet"]
        with pytest.raises(ValueError, match="2 deadlines for 1 requests"):
            agents.assess([[face_crop]], [None, None])
    finally:
        agents.close()
