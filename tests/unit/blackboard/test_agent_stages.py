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

