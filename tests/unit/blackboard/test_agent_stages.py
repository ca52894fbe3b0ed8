"""The agents' stages in this process: the same votes from an agent set and per-agent stages."""

from __future__ import annotations

import os

import cv2
import numpy as np
import pytest

from agents.bundle import load_bundle
from blackboard.agent_stages import AgentSetStage, AgentStage


@pytest.mark.slow  # loads real models (MTCNN / three agents): several seconds of CPU
def test_the_last_agent_stage_returns_only_the_kept_columns(tiny_bundle, face_crop, monkeypatch):
    """`keep` drops the face crops in the agent actor itself (no Ray Data task after the pools),
    for an agent set and for the last of per-agent stages, with the same votes."""
    for var in ("TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS", "OMP_NUM_THREADS"):
        monkeypatch.setenv(var, os.environ.get(var, "2"))
    threads = cv2.getNumThreads()
    agents = tuple(load_bundle(tiny_bundle).agent_names)
    batch = {"input_index": np.array([4, 7]), "has_face": np.array([True, False]),
             "face": np.stack([face_crop, np.zeros_like(face_crop)])}
    keep = ("input_index", *(f"{a}_p_fake" for a in agents))
    try:
        whole = AgentSetStage(bundle=str(tiny_bundle), agents=agents)(dict(batch))
        kept = AgentSetStage(bundle=str(tiny_bundle), agents=agents, keep=keep)(dict(batch))
        last = AgentStage(bundle=str(tiny_bundle), agent=agents[-1], keep=("input_index", f"{agents[-1]}_p_fake"))
        one = last(dict(batch))
    finally:
        cv2.setNumThreads(threads)
    assert "face" in whole and set(kept) == set(keep) and set(one) == {"input_index", f"{agents[-1]}_p_fake"}
    for a in agents:
        np.testing.assert_array_equal(kept[f"{a}_p_fake"], whole[f"{a}_p_fake"])
    assert np.isfinite(kept[keep[1]][0]) and np.isnan(kept[keep[1]][1])
    np.testing.assert_array_equal(one[f"{agents[-1]}_p_fake"], whole[f"{agents[-1]}_p_fake"])



@pytest.mark.slow  # loads the tiny bundle's three agents
def test_agents_of_one_contract_prepare_their_inputs_once_with_the_same_votes(tiny_bundle, face_crop, monkeypatch):
    from agents import predictor

    loaded = load_bundle(tiny_bundle)
    agents = tuple(loaded.agent_names)
    contracts = [loaded.agent(a).preprocessing for a in agents]
    assert len(set(contracts)) < len(contracts)  # LeNet and the custom CNN share one, as the shipped ones do
    made = []
    prepare = predictor.prepare_batch
    monkeypatch.setattr(predictor, "prepare_batch", lambda faces, spec: made.append(spec) or prepare(faces, spec))
    faces = np.stack([face_crop, np.roll(face_crop, 5, axis=1), np.zeros_like(face_crop), np.flipud(face_crop)])
    batch = {"has_face": np.array([True, True, False, True]), "face": faces}
    stage = AgentSetStage(bundle=str(tiny_bundle), agents=agents, batch_size=2, warm_up=False)
    together = stage(dict(batch))
    assert sorted(map(str, made)) == sorted(map(str, [c for c in set(contracts) for _ in range(2)]))  # 2 chunks each
    made.clear()
    stage._shared = set()  # each agent on its own, as before
    alone = stage(dict(batch))
    assert len(made) == 2 * len(agents)
    for a in agents:
        np.testing.assert_array_equal(together[f"{a}_p_fake"], alone[f"{a}_p_fake"])
    assert np.isfinite(together[f"{agents[0]}_p_fake"][[0, 1, 3]]).all()
