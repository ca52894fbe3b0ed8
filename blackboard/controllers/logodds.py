"""The log-odds controller: a weight per agent and per class it speaks for, learned from rewards.

Each present agent ``a`` votes a calibrated ``p_a``; the class it speaks for is ``c_a`` (fake when
``p_a >= 0.5``, else real) and its evidence is its log-odds ``L_a = logit(p_a)``. The controller's
policy announces "fake" with probability::

    pi(fake | votes) = sigmoid(b + sum_a W[a, c_a] * L_a  [+ context terms])

``W[a, c]`` is how many units of log-odds the controller takes from one unit of agent ``a``'s
log-odds *when a says c*: 1 = take the agent at its word, 0 = ignore it on that class, above 1 =
the agent is under-confident there, negative = it is wrong more often than not when it says c.

Learning is online, one decision at a time (several shuffled passes over val when fitting; one step
per feedback event when serving). The reward of a decision is either the log-likelihood of the
truth under the policy (``reward="log"``, a proper scoring rule; its policy gradient is
``(y - pi) * phi``) or +1/-1 for an announcement sampled from the policy (``reward="reinforce"``,
REINFORCE with a running-mean baseline). An L2 pull toward the starting weights (``1/A``: the
mean of the agents' log-odds) keeps rarely-seen weights sensible. The score is then calibrated
(Platt by default) and thresholded like every controller.

Context (``context=("blur",)``): each named case feature is standardised on the fitting data and
every weight gets a slope along it, ``W[a, c] + sum_k V[k, a, c] * z_k``, plus a main effect.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, Sequence

import numpy as np
from pydantic import AfterValidator, ConfigDict, Field
from pydantic.dataclasses import dataclass

from agents.labels import CLASSES, FAKE_INDEX
from blackboard.calibration import CalibrationKind, Prior, ThresholdRule, logit, sigmoid
from blackboard.controllers.base import Controller, agent_class_table, register_controller

_CONTEXT_CLIP = 3.0  # standardised context values are clipped to +/- this many deviations


def _distinct(names: tuple[str, ...]) -> tuple[str, ...]:
    if len(set(names)) != len(names):
        raise ValueError(f"context names must be distinct, received {names}.")
    return names


# Case-context feature names (a JSON list reads as a tuple); each names one column of the context.
ContextNames = Annotated[tuple[str, ...], AfterValidator(_distinct)]


@dataclass(frozen=True, config=ConfigDict(extra="forbid"))
class LogOddsConfig:
    """How the log-odds controller learns, calibrates and decides."""

    lr: float = Field(0.05, gt=0, le=1)  # policy-gradient step size in the first fitting epoch
    lr_decay: float = Field(0.7, gt=0, le=1)  # the step is multiplied by this after every epoch
    online_lr: float = Field(0.02, gt=0, le=1)  # step size of one feedback update while serving
    epochs: int = Field(8, ge=1)  # passes over the fitting votes (shuffled per epoch)
    # "log": log-likelihood of the truth; "reinforce": +1/-1 of a sampled announcement
    reward: Literal["log", "reinforce"] = "log"
    l2: float = Field(1e-3, ge=0)  # pull of every step toward the starting weights (1/A, bias 0)
    seed: int = 0  # seeds shuffling and sampled announcements, so fitting is reproducible
    context: ContextNames = ()  # case-context features the weights may depend on (e.g. "blur")
    calibration: CalibrationKind = "platt"  # "none": sigmoid of the raw log-odds
    threshold_rule: ThresholdRule = "f0.5"  # "f0.5", "f1", "youden" or "fixed:<p>"
    # Fake share the ensemble's probabilities assume (None: the fitting split's own, e.g. 65 % fake
    # on DFDC val). One image sent by a user comes with no such mix, so the default states even odds.
    prior: Prior = 0.5


@register_controller
class LogOddsController(Controller):
    """Per-(agent, spoken class) log-odds weights learned by policy gradient.

    Args:
        agents: agent names, in the column order of every votes array.
        config: learning, context, calibration and threshold settings.
    """

    kind = "logodds"
    schema_version = 2
    config_class = LogOddsConfig

    def __init__(self, agents: Sequence[str], config: LogOddsConfig = LogOddsConfig()) -> None:
        super().__init__(agents, config)
        n_agents, n_ctx = len(self.agents), len(config.context)
        self.w0 = np.full((n_agents, len(CLASSES)), 1.0 / n_agents)  # starting weights (mean log-odds)
        self.w = self.w0.copy()  # W[agent, class spoken]
        self.v = np.zeros((n_ctx, n_agents, len(CLASSES)))  # V[context, agent, class]: slopes of W
        self.u = np.zeros(n_ctx)  # main effect of each context feature on the log-odds
        self.bias = 0.0
        self.ctx_mean = np.zeros(n_ctx)  # standardisation of context, from the fitting data
        self.ctx_std = np.ones(n_ctx)
        self.baseline = 0.0  # running mean reward (REINFORCE baseline)

    @property
    def context_names(self) -> tuple[str, ...]:
        return self.config.context

    # ------------------------------------------------------------ parameters
    def _theta(self) -> np.ndarray:
        return np.concatenate([self.w.ravel(), self.v.ravel(), self.u, [self.bias]])

    def _set_theta(self, theta: np.ndarray) -> None:
        n_w, n_v, n_u = self.w.size, self.v.size, self.u.size
        self.w = theta[:n_w].reshape(self.w.shape).copy()
        self.v = theta[n_w:n_w + n_v].reshape(self.v.shape).copy()
        self.u = theta[n_w + n_v:n_w + n_v + n_u].copy()
        self.bias = float(theta[-1])

    def _theta0(self) -> np.ndarray:
        return np.concatenate([self.w0.ravel(), np.zeros(self.v.size + self.u.size + 1)])

    def _z(self, context: np.ndarray | None, n: int) -> np.ndarray:
        """Standardised, clipped context (N, K); missing context (None or NaN) is the mean case, 0."""
        k = len(self.config.context)
        if context is None or k == 0:
            return np.zeros((n, k))
        ctx = np.asarray(context, dtype=np.float64).reshape(n, -1)
        if ctx.shape[1] != k:
            raise ValueError(f"context must have shape (N, {k}) for {self.config.context}, received {ctx.shape}.")
        z = (ctx - self.ctx_mean) / self.ctx_std
        return np.clip(np.where(np.isfinite(z), z, 0.0), -_CONTEXT_CLIP, _CONTEXT_CLIP)

    def _features(self, votes: np.ndarray, mask: np.ndarray, z: np.ndarray) -> np.ndarray:
        """phi (N, P) such that the policy's log-odds are phi @ theta."""
        n, n_agents = votes.shape
        spoken = (votes >= 0.5).astype(int)
        base = np.zeros((n, n_agents, len(CLASSES)))
        rows, cols = np.nonzero(mask)
        base[rows, cols, spoken[rows, cols]] = logit(votes[rows, cols])
        base = base.reshape(n, -1)
        inter = (z[:, :, None] * base[:, None, :]).reshape(n, -1)
        return np.concatenate([base, inter, z, np.ones((n, 1))], axis=1)

    def raw_score(self, votes: np.ndarray, present: np.ndarray | None = None,
                  context: np.ndarray | None = None) -> np.ndarray:
        """pi(fake | votes): the sigmoid of the learned log-odds; 0.5 with no vote."""
        votes, mask = self._check(votes, present)
        phi = self._features(votes, mask, self._z(context, len(votes)))
        return np.where(mask.any(axis=1), sigmoid(phi @ self._theta()), 0.5)

    # -------------------------------------------------------------- learning
    def _step(self, phi: np.ndarray, truth: int, lr: float, rng: np.random.Generator) -> tuple[float, float]:
        """One policy-gradient step on one case; returns (log-likelihood of truth, +/-1 reward)."""
        theta = self._theta()
        p = float(sigmoid(phi @ theta))
        loglik = float(np.log(max(p if truth == 1 else 1.0 - p, 1e-12)))
        if self.config.reward == "log":
            grad = (truth - p) * phi
            announced = int(p >= 0.5)
        else:
            announced = int(rng.random() < p)
            reward = 1.0 if announced == truth else -1.0
            grad = (reward - self.baseline) * (announced - p) * phi
            self.baseline += 0.01 * (reward - self.baseline)
        grad -= self.config.l2 * (theta - self._theta0())
        self._set_theta(theta + lr * grad)
        return loglik, 1.0 if announced == truth else -1.0

    def fit_rule(self, votes: np.ndarray, mask: np.ndarray, y: np.ndarray, context: np.ndarray | None) -> None:
        cfg = self.config
        rng = np.random.default_rng(cfg.seed)
        if cfg.context and context is not None:
            ctx = np.asarray(context, dtype=np.float64).reshape(len(y), -1)
            self.ctx_mean = np.nan_to_num(np.nanmean(ctx, axis=0))
            self.ctx_std = np.nan_to_num(np.nanstd(ctx, axis=0), nan=1.0)
            self.ctx_std[self.ctx_std < 1e-9] = 1.0
        self._set_theta(self._theta0())
        self.baseline = 0.0
        phi = self._features(votes, mask, self._z(context, len(y)))
        lr = cfg.lr
        for epoch in range(cfg.epochs):
            logliks, rewards = [], []
            for n in rng.permutation(len(y)):
                loglik, reward = self._step(phi[n], int(y[n]), lr, rng)
                logliks.append(loglik)
                rewards.append(reward)
            self.history.append({"epoch": epoch + 1, "lr": float(lr), "mean_loglik": float(np.mean(logliks)),
                                 "mean_reward": float(np.mean(rewards))})
            lr *= cfg.lr_decay

    def _learn_one(self, votes_row: np.ndarray, mask_row: np.ndarray, truth: int,
                   context_row: np.ndarray | None) -> None:
        z = self._z(None if context_row is None else context_row[None], 1)
        phi = self._features(votes_row[None], mask_row[None], z)[0]
        self._step(phi, truth, self.config.online_lr, np.random.default_rng(self.counter))

    # ------------------------------------------------------------ explaining
    def weights(self) -> dict[str, dict[str, float]]:
        """agent -> class spoken -> W (log-odds taken per unit of the agent's log-odds; mean context)."""
        return agent_class_table(self.agents, self.w)

    def trust(self) -> dict[str, dict[str, float]]:
        """The same table as :meth:`weights`: for this rule the weight is the trust."""
        return self.weights()

    def _spoken_weights(self, row_votes: np.ndarray, present: np.ndarray | None,
                        context: np.ndarray | None) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """One face's (votes (1, A), mask (1, A), each agent's context-free W for the class it
        spoke (A,), and what the face's context adds to it (A,))."""
        votes, mask = self._row(row_votes, present)
        z = self._z(None if context is None else np.asarray(context).reshape(1, -1), 1)
        spoken = (votes[0] >= 0.5).astype(int)
        idx = np.arange(len(self.agents))
        return votes, mask, self.w[idx, spoken], np.einsum("k,ka->a", z[0], self.v[:, idx, spoken])

    def explain(self, row_votes: np.ndarray, present: np.ndarray | None = None,
                context: np.ndarray | None = None) -> dict[str, float]:
        """Share of the evidence for the decided class each agent's weighted log-odds carried."""
        votes, mask, w, shift = self._spoken_weights(row_votes, present, context)
        decided = int(self.predict_proba(votes, mask, None if context is None else context)[0] >= self.threshold)
        contrib = (w + shift) * logit(votes[0])
        shares = self._shares(contrib if decided == FAKE_INDEX else -contrib, mask[0])
        return {a: float(shares[i]) for i, a in enumerate(self.agents)}

    def context_shift(self, row_votes: np.ndarray, present: np.ndarray | None = None,
                      context: np.ndarray | None = None) -> dict[str, float]:
        """How the face's context moved each voting agent's weight: applied minus context-free W."""
        _, mask, _, shift = self._spoken_weights(row_votes, present, context)
        return {a: float(shift[i] * mask[0][i]) for i, a in enumerate(self.agents)}

    # ----------------------------------------------------------- persistence
    def _state(self) -> dict[str, Any]:
        return {"w": self.w.tolist(), "v": self.v.tolist(), "u": self.u.tolist(), "bias": float(self.bias),
                "ctx_mean": self.ctx_mean.tolist(), "ctx_std": self.ctx_std.tolist(),
                "baseline": float(self.baseline)}

    def _restore(self, obj: dict[str, Any]) -> None:
        self.w = np.asarray(obj["w"], dtype=np.float64).reshape(self.w.shape)
        self.v = np.asarray(obj["v"], dtype=np.float64).reshape(self.v.shape)
        self.u = np.asarray(obj["u"], dtype=np.float64).reshape(self.u.shape)
        self.bias = float(obj["bias"])
        self.ctx_mean = np.asarray(obj["ctx_mean"], dtype=np.float64).reshape(self.ctx_mean.shape)
        self.ctx_std = np.asarray(obj["ctx_std"], dtype=np.float64).reshape(self.ctx_std.shape)
        self.baseline = float(obj.get("baseline", 0.0))

    def summary(self) -> dict[str, Any]:
        return {**super().summary(), "bias": float(self.bias), "context": list(self.config.context),
                "context_slopes": {k: agent_class_table(self.agents, self.v[i])
                                   for i, k in enumerate(self.config.context)}}
