"""Agent calibration refitted for a prior (`training.calibrate.refit_agent_calibration`)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from agents.bundle import AgentInfo
from agents.predictor import apply_temperature
from blackboard.calibration import logit
from training.calibrate import refit_agent_calibration


class Agents:
    """What the refit reads of a bundle: agent names and their manifest entries."""

    def __init__(self, infos: list[AgentInfo]) -> None:
        self.infos = {info.name: info for info in infos}
        self.agent_names = list(self.infos)

    def agent(self, name: str) -> AgentInfo:
        return self.infos[name]

    def updated(self, updates: dict) -> "Agents":
        return Agents([replace(info, **{k: v for k, v in updates.get(info.name, {}).items()
                                        if k in ("temperature", "bias", "threshold")})
                       for info in self.infos.values()])


def info(name: str, temperature: float, threshold: float) -> AgentInfo:
    return AgentInfo(name=name, file=f"{name}.keras", sha256="0" * 64, preprocessing=None, temperature=temperature,
                     threshold=threshold, threshold_rule="f0.5", val_metrics={}, training={})


@pytest.fixture
def val():
    """Raw probabilities of two agents on a val split 65 % fake: ``sure`` has log-odds that carry
    that share (as a temperature-only calibration leaves them), ``contrary`` ranks backwards."""
    rng = np.random.default_rng(0)
    labels = (rng.random(4000) < 0.65).astype(int)
    sure = 2.0 * (labels - 0.5) * 2.0 + rng.normal(0, 1.5, len(labels)) + logit(0.65)
    contrary = -(2.0 * (labels - 0.5)) + rng.normal(0, 1.0, len(labels))
    raw = {name: np.stack([1 / (1 + np.exp(z)), 1 / (1 + np.exp(-z))], axis=1) for name, z in
           (("sure", sure), ("contrary", contrary))}
    return raw, labels


def test_bias_moves_the_fake_log_odds_after_the_temperature():
    p = np.array([[0.2, 0.8], [0.7, 0.3]])
    moved = apply_temperature(p, 2.0, bias=0.5)
    np.testing.assert_allclose(logit(moved[:, 1]), logit(p[:, 1]) / 2.0 + 0.5, atol=1e-5)
    np.testing.assert_allclose(moved.sum(axis=1), 1.0, atol=1e-6)


def test_refit_states_even_odds_keeps_decisions_and_matches_the_manifest_fields(val):
    raw, labels = val
    agents = Agents([info("sure", 1.3, 0.6), info("contrary", 1.0, 0.5)])
    votes = np.stack([apply_temperature(raw[n], agents.agent(n).temperature)[:, 1] for n in agents.agent_names], 1)
    fit_rows = np.arange(0, len(labels), 2)
    new, updates = refit_agent_calibration(agents, votes, labels, 0.5, rows=fit_rows)
    assert set(updates) == {"sure"}  # the agent that ranks backwards keeps its calibration
    np.testing.assert_array_equal(new[:, 1], votes[:, 1])
    refit = agents.updated(updates).agent("sure")
    # The returned votes are what the agent now says from its raw output (temperature and bias).
    np.testing.assert_allclose(apply_temperature(raw["sure"], refit.temperature, refit.bias)[:, 1], new[:, 0],
                               atol=1e-5)
    # Same decisions at the moved threshold.
    np.testing.assert_array_equal(new[:, 0] >= refit.threshold, votes[:, 0] >= agents.agent("sure").threshold)
    # On an even mix of the other rows, the probability now averages about one half (it carried 65 %).
    held = np.setdiff1d(np.arange(len(labels)), fit_rows)
    even = np.concatenate([held[labels[held] == 0], held[labels[held] == 1][:int((labels[held] == 0).sum())]])
    assert votes[even, 0].mean() > 0.56
    assert abs(new[even, 0].mean() - 0.5) < 0.03
    assert updates["sure"]["calibration_refit"]["prior"] == 0.5
    # A second refit on the refitted votes changes nothing (so a rerun reuses its vote cache).
    again, more = refit_agent_calibration(agents.updated(updates), new, labels, 0.5, rows=fit_rows)
    assert more == {} and np.array_equal(again, new)
