"""The Q-trust controller (kind ``"qtrust"``): the original per-(agent, class) trust table.

In the spirit of CHIMACS (Kokorakis, Petridis, Kapetanakis, SGAI 2017): ``Q[agent][c]`` moves toward
+1 each time the agent says ``c`` and is right, toward -1 when it is wrong
(``Q += alpha * (r - Q)``), so it estimates ``2 * precision(agent says c) - 1``. The decision is the
class maximising ``S_c = sum_agents w(Q[agent][c]) * p_agent(c)`` with ``w(q) = max(q, 0) ** gamma +
min_weight`` (``power``) or ``exp(beta * q)``; the ratio ``S_fake / (S_fake + S_real)`` is calibrated.
While learning it also announces a class per case epsilon-greedily (a two-armed bandit) and logs the
mean reward of its greedy and exploring announcements per epoch.
"""

from __future__ import annotations

from typing import Any, Literal, Sequence

import numpy as np
from pydantic import ConfigDict, Field
from pydantic.dataclasses import dataclass

from agents.labels import CLASSES, FAKE_INDEX
from blackboard.calibration import CalibrationKind, Prior, ThresholdRule
from blackboard.combine import mean_vote
from blackboard.controllers.base import Controller, agent_class_table, check_config_keys, register_controller


@dataclass(frozen=True, config=ConfigDict(extra="forbid"))
class ControllerConfig:
    """How the Q-trust controller learns, weighs and calibrates."""

    alpha: float = Field(0.02, gt=0, le=1)  # learning rate of the trust update Q += alpha * (r - Q)
    # alpha is multiplied by this after every fitting epoch (online updates use alpha)
    alpha_decay: float = Field(0.5, gt=0, le=1)
    # probability the controller explores (announces a random class) while learning
    epsilon: float = Field(0.1, ge=0, le=1)
    epsilon_decay: float = Field(0.5, ge=0, le=1)  # epsilon is multiplied by this after every epoch
    epochs: int = Field(3, ge=1)  # passes over the val votes (shuffled per epoch)
    seed: int = 0  # seeds the shuffling and exploration, so fitting is reproducible
    weight_map: Literal["power", "exp"] = "power"  # "power": max(q,0)**gamma; "exp": exp(beta*q)
    gamma: float = Field(2.0, gt=0)  # exponent of the power map (higher = trust matters more)
    beta: float = Field(3.0, gt=0)  # slope of the exp map
    # Floor added to the power map: an untrusted agent keeps a whisper of a say, so the score
    # still ranks cases when no agent is trusted on one class (else it would be constant).
    min_weight: float = Field(0.01, ge=0)
    calibration: CalibrationKind = "platt"  # "none": the raw combined score
    threshold_rule: ThresholdRule = "f0.5"  # "f0.5", "f1", "youden" or "fixed:<p>"
    # Fake share the ensemble's probabilities assume (None: the fitting split's own, e.g. 65 % fake
    # on DFDC val). One image sent by a user comes with no such mix, so the default states even odds.
    prior: Prior = 0.5

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "ControllerConfig":
        """Builds a config from a mapping, refusing unknown keys."""
        return cls(**check_config_keys(cls, data))


@register_controller
class QController(Controller):
    """Per-class trust from +/-1 rewards on each agent's verdict (the original rule).

    Its tables keep schema v1 (no ``kind`` field), so files written before the log-odds rule
    existed load unchanged and keep their version strings.
    """

    kind = "qtrust"
    schema_version = 1
    config_class = ControllerConfig

    def __init__(self, agents: Sequence[str], config: ControllerConfig = ControllerConfig()) -> None:
        super().__init__(agents, config)
        self.q = np.zeros((len(self.agents), len(CLASSES)), dtype=np.float64)  # Q[agent, class]
        self.action_value = np.zeros(len(CLASSES), dtype=np.float64)  # V[class] of its own announcements

    def _w(self, q: np.ndarray) -> np.ndarray:
        if self.config.weight_map == "power":
            return np.maximum(q, 0.0) ** self.config.gamma + self.config.min_weight
        return np.exp(self.config.beta * q)

    def raw_score(self, votes: np.ndarray, present: np.ndarray | None = None,
                  context: np.ndarray | None = None) -> np.ndarray:
        """s = S_fake / (S_fake + S_real) with S_c = sum over present agents of w(Q[a, c]) * p_a(c).

        When every present agent has zero weight the score is the mean of the present p_fake;
        with no agent present it is 0.5. ``context`` is ignored (Q-trust has none).
        """
        votes, mask = self._check(votes, present)
        probs = np.stack([1.0 - votes, votes], axis=2)  # (N, A, 2) in CLASSES order
        s = ((self._w(self.q)[None, :, :] * mask[:, :, None]) * probs).sum(axis=1)
        total = s.sum(axis=1)
        return np.where(total > 1e-12, s[:, FAKE_INDEX] / np.maximum(total, 1e-12), mean_vote(votes, mask))

    def weights(self) -> dict[str, dict[str, float]]:
        """agent -> class -> the non-negative weight w(Q[agent][class]) used in decisions."""
        return agent_class_table(self.agents, self._w(self.q))

    def trust(self) -> dict[str, dict[str, float]]:
        """agent -> class -> learned trust Q (in [-1, 1])."""
        return agent_class_table(self.agents, self.q)

    def explain(self, row_votes: np.ndarray, present: np.ndarray | None = None,
                context: np.ndarray | None = None) -> dict[str, float]:
        """Share of the decided class's score each agent's vote carried (0 for missing agents)."""
        votes, mask = self._row(row_votes, present)
        decided = int(self.predict_proba(votes, mask)[0] >= self.threshold)
        probs = votes[0] if decided == FAKE_INDEX else 1.0 - votes[0]
        shares = self._shares(self._w(self.q[:, decided]) * probs, mask[0])
        return {a: float(shares[i]) for i, a in enumerate(self.agents)}

    def _update_agents(self, votes_row: np.ndarray, mask_row: np.ndarray, truth: int, alpha: float) -> None:
        """One trust update: each present agent's verdict is rewarded +1 if right, -1 if wrong."""
        verdicts = (votes_row >= 0.5).astype(int)
        for i in np.flatnonzero(mask_row):
            c = verdicts[i]
            reward = 1.0 if c == truth else -1.0
            self.q[i, c] += alpha * (reward - self.q[i, c])

    def fit_rule(self, votes: np.ndarray, mask: np.ndarray, y: np.ndarray, context: np.ndarray | None) -> None:
        cfg = self.config
        rng = np.random.default_rng(cfg.seed)
        self.q[:] = 0.0
        self.action_value[:] = 0.0
        epsilon, alpha = cfg.epsilon, cfg.alpha
        for epoch in range(cfg.epochs):
            rewards: dict[str, list[float]] = {"greedy": [], "explore": []}
            for n in rng.permutation(len(y)):
                # The controller acts first with its current trust (epsilon-greedily), then learns.
                greedy = int(self.raw_score(votes[n:n + 1], mask[n:n + 1])[0] >= 0.5)
                explore = rng.random() < epsilon
                action = int(rng.integers(len(CLASSES))) if explore else greedy
                reward = 1.0 if action == y[n] else -1.0
                self.action_value[action] += alpha * (reward - self.action_value[action])
                rewards["explore" if explore else "greedy"].append(reward)
                self._update_agents(votes[n], mask[n], int(y[n]), alpha)
            self.history.append({
                "epoch": epoch + 1,
                "epsilon": float(epsilon),
                "alpha": float(alpha),
                "explored": len(rewards["explore"]),
                "mean_reward_greedy": float(np.mean(rewards["greedy"])) if rewards["greedy"] else 0.0,
                "mean_reward_explore": float(np.mean(rewards["explore"])) if rewards["explore"] else 0.0,
            })
            epsilon *= cfg.epsilon_decay
            alpha *= cfg.alpha_decay  # a shrinking step averages over more cases each epoch

    def _learn_one(self, votes_row: np.ndarray, mask_row: np.ndarray, truth: int,
                   context_row: np.ndarray | None) -> None:
        self._update_agents(votes_row, mask_row, truth, self.config.alpha)
        decided = int(self.predict_proba(votes_row[None], mask_row[None])[0] >= self.threshold)
        reward = 1.0 if decided == truth else -1.0
        self.action_value[decided] += self.config.alpha * (reward - self.action_value[decided])

    def _content(self) -> dict[str, Any]:
        # Schema v1 as written before kinds existed: no "kind" key, so old version hashes hold.
        content = super()._content()
        del content["kind"]
        return content

    def _state(self) -> dict[str, Any]:
        return {"q": [[float(v) for v in row] for row in self.q],
                "action_value": [float(v) for v in self.action_value]}

    def _restore(self, obj: dict[str, Any]) -> None:
        self.q = np.asarray(obj["q"], dtype=np.float64).reshape(len(self.agents), len(CLASSES))
        self.action_value = np.asarray(obj["action_value"], dtype=np.float64)

    def summary(self) -> dict[str, Any]:
        return {**super().summary(),
                "action_value": {c: float(self.action_value[j]) for j, c in enumerate(CLASSES)}}
