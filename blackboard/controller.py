"""The reinforcement-learning controller: per-agent, per-class trust learned from labelled votes.

In the spirit of CHIMACS (Kokorakis, Petridis, Kapetanakis, SGAI 2017) the controller keeps a
trust value ``Q[agent][class]`` for every agent and each class ("real", "fake"). Trust in an
agent's *verdict* c means "when this agent says c, how often is it right": each time an agent
predicts class c (the argmax of its probabilities) it earns reward +1 if c is the truth and -1
otherwise, and ``Q[agent][c] += alpha * (r - Q[agent][c])``, a running estimate of
``2 * precision(agent says c) - 1``. Fitting makes several passes over the val votes with a
step size that shrinks per epoch (``alpha_decay``), so the final table averages over many cases;
online feedback uses the base ``alpha`` so recent feedback counts.

Decision: the class maximising ``S_c = sum_agents w(Q[agent][c]) * p_agent(c)`` over the agents
that voted, with ``w`` a map from trust to a non-negative weight (``power``: ``max(q, 0) ** gamma +
min_weight``, an agent no better than chance on a verdict keeps only a tiny say; ``exp``:
``exp(beta * q)``, a smooth map where everyone keeps some say). The raw score ``s = S_fake / (S_fake + S_real)`` is calibrated on the same val split
(Platt scaling on ``logit(s)`` or isotonic regression) so ``predict_proba`` is a probability.

Exploration: while learning, the controller also acts. For every case it announces a class,
epsilon-greedily (a random class with probability epsilon, decaying per epoch, else the class of
the current combined score), and earns +1/-1 for it, as in a two-armed bandit. Those rewards update
its own action values ``V[c]`` (an estimate of how often the ensemble is right when it announces c)
and the per-epoch log in ``history`` (mean reward of greedy and exploring actions). Exploring keeps
both ``V`` entries estimated even when early greedy decisions are lopsided toward one class; the
agents' trust itself is learned from every case (their verdicts are always observed).
"""

from __future__ import annotations

import copy
import datetime as _dt
import hashlib
import json
import math
import os
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Sequence

import numpy as np
from sklearn.isotonic import IsotonicRegression
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import fbeta_score, precision_recall_curve, roc_curve

from agents.bundle import Bundle, BundleError, load_bundle, update_bundle
from agents.labels import CLASSES, FAKE, FAKE_INDEX, REAL, label_to_index

SCHEMA = "fakeface-controller"
SCHEMA_VERSION = 1
WEIGHT_MAPS = ("power", "exp")
CALIBRATIONS = ("platt", "isotonic", "none")
THRESHOLD_RULES = ("f0.5", "f1", "youden")  # plus "fixed:<value>"
_EPS = 1e-6


@dataclass(frozen=True)
class ControllerConfig:
    """How the controller learns, weighs and calibrates."""

    alpha: float = 0.02  # learning rate of the trust update Q += alpha * (r - Q)
    alpha_decay: float = 0.5  # alpha is multiplied by this after every fitting epoch (online updates use alpha)
    epsilon: float = 0.1  # probability the controller explores (announces a random class) while learning
    epsilon_decay: float = 0.5  # epsilon is multiplied by this after every epoch
    epochs: int = 3  # passes over the val votes (shuffled per epoch)
    seed: int = 0  # seeds the shuffling and exploration, so fitting is reproducible
    weight_map: str = "power"  # "power": max(q,0)**gamma; "exp": exp(beta*q)
    gamma: float = 2.0  # exponent of the power map (higher = trust matters more)
    beta: float = 3.0  # slope of the exp map
    min_weight: float = 0.01  # floor added to the power map: an untrusted agent keeps a whisper of a say,
    # so the score still ranks cases when no agent is trusted on one class (else it would be constant)
    calibration: str = "platt"  # "platt", "isotonic" or "none" (raw combined score)
    threshold_rule: str = "f0.5"  # "f0.5", "f1", "youden" or "fixed:<p>"

    def __post_init__(self) -> None:
        if not 0.0 < self.alpha <= 1.0:
            raise ValueError(f"alpha must be in (0, 1], received {self.alpha}.")
        if not 0.0 <= self.epsilon <= 1.0:
            raise ValueError(f"epsilon must be in [0, 1], received {self.epsilon}.")
        if not 0.0 < self.alpha_decay <= 1.0:
            raise ValueError(f"alpha_decay must be in (0, 1], received {self.alpha_decay}.")
        if not 0.0 <= self.epsilon_decay <= 1.0:
            raise ValueError(f"epsilon_decay must be in [0, 1], received {self.epsilon_decay}.")
        if self.epochs < 1:
            raise ValueError(f"epochs must be at least 1, received {self.epochs}.")
        if self.weight_map not in WEIGHT_MAPS:
            raise ValueError(f"weight_map must be one of {WEIGHT_MAPS}, received {self.weight_map!r}.")
        if self.min_weight < 0:
            raise ValueError(f"min_weight must be >= 0, received {self.min_weight}.")
        if self.gamma <= 0 or self.beta <= 0:
            raise ValueError(f"gamma and beta must be positive, received gamma={self.gamma}, beta={self.beta}.")
        if self.calibration not in CALIBRATIONS:
            raise ValueError(f"calibration must be one of {CALIBRATIONS}, received {self.calibration!r}.")
        _parse_threshold_rule(self.threshold_rule)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "ControllerConfig":
        """Builds a config from a mapping, refusing unknown keys (typos would otherwise be silent)."""
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"Unknown controller config keys {unknown}; known keys: {sorted(known)}.")
        return cls(**data)


def _parse_threshold_rule(rule: str) -> tuple[str, float | None]:
    if rule in THRESHOLD_RULES:
        return rule, None
    if isinstance(rule, str) and rule.startswith("fixed:"):
        try:
            value = float(rule.split(":", 1)[1])
        except ValueError:
            value = math.nan
        if 0.0 < value < 1.0:
            return "fixed", value
    raise ValueError(f"threshold_rule must be one of {THRESHOLD_RULES} or 'fixed:<p>' with 0<p<1, received {rule!r}.")


def choose_threshold(p_fake: np.ndarray, labels: np.ndarray, rule: str) -> float:
    """Picks a decision threshold on calibrated p_fake from labelled val scores.

    Args:
        p_fake: calibrated scores, shape (N,).
        labels: 0 = real, 1 = fake.
        rule: "f0.5" / "f1" (maximise F-beta for fake), "youden" (max TPR - FPR) or "fixed:<p>".
    """
    kind, value = _parse_threshold_rule(rule)
    if kind == "fixed":
        return float(value)
    labels = np.asarray(labels).astype(int)
    if len(np.unique(labels)) < 2:
        return 0.5
    if kind == "youden":
        fpr, tpr, thr = roc_curve(labels, p_fake)
        best = int(np.argmax(tpr - fpr))
        return float(np.clip(thr[best], 1e-6, 1 - 1e-6))
    beta = 0.5 if kind == "f0.5" else 1.0
    precision, recall, thr = precision_recall_curve(labels, p_fake)
    p, r = precision[:-1], recall[:-1]
    f = (1 + beta**2) * p * r / np.maximum(beta**2 * p + r, 1e-12)
    return float(thr[int(np.argmax(f))])


def _labels_to_int(labels: Any) -> np.ndarray:
    arr = np.asarray(labels)
    if arr.dtype.kind in "USO":
        return np.array([label_to_index(x) for x in arr], dtype=int)
    arr = arr.astype(int)
    if arr.size and not np.isin(arr, (0, 1)).all():
        raise ValueError(f"labels must be 0 (real) / 1 (fake) or names, received values {np.unique(arr)[:5]}.")
    return arr


@dataclass
class _Calibrator:
    """Maps the raw combined score to a probability (kept as plain numbers for JSON)."""

    kind: str = "none"  # "platt", "isotonic" or "none"
    coef: float = 1.0  # Platt: p = sigmoid(coef * logit(s) + intercept)
    intercept: float = 0.0
    x: list[float] = field(default_factory=list)  # isotonic knots (raw score)
    y: list[float] = field(default_factory=list)  # isotonic knots (probability)

    def fit(self, s: np.ndarray, labels: np.ndarray) -> "_Calibrator":
        if self.kind == "none" or len(np.unique(labels)) < 2:
            self.kind = "none"
            return self
        if self.kind == "platt":
            lr = LogisticRegression(C=1e4)
            lr.fit(_logit(s)[:, None], labels)
            self.coef, self.intercept = float(lr.coef_[0, 0]), float(lr.intercept_[0])
        else:
            iso = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip").fit(s, labels)
            self.x = [float(v) for v in iso.X_thresholds_]
            self.y = [float(v) for v in iso.y_thresholds_]
        return self

    def apply(self, s: np.ndarray) -> np.ndarray:
        if self.kind == "platt":
            return 1.0 / (1.0 + np.exp(-(self.coef * _logit(s) + self.intercept)))
        if self.kind == "isotonic":
            return np.interp(s, self.x, self.y)
        return s


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(np.asarray(p, dtype=np.float64), _EPS, 1 - _EPS)
    return np.log(p / (1 - p))


class QController:
    """Per-class trust controller; implements the ``Combiner`` protocol (``name = "ensemble"``).

    Args:
        agents: agent names, in the column order of every votes array.
        config: learning, weighting, calibration and threshold settings.
    """

    name = "ensemble"

    def __init__(self, agents: Sequence[str], config: ControllerConfig = ControllerConfig()) -> None:
        agents = [str(a) for a in agents]
        if not agents or len(set(agents)) != len(agents):
            raise ValueError(f"agents must be a non-empty list of distinct names, received {agents}.")
        self.agents: list[str] = agents
        self.config = config
        self.q = np.zeros((len(agents), len(CLASSES)), dtype=np.float64)  # Q[agent, class]
        self.action_value = np.zeros(len(CLASSES), dtype=np.float64)  # V[class] of its own announcements
        self.calibrator = _Calibrator(kind="none")
        self.threshold = 0.5
        self.counter = 0  # bumped by every fit / online update; the readable half of `version`
        self.history: list[dict[str, float]] = []  # per-epoch exploration log of the last fit
        self.fitted_on: dict[str, Any] = {}  # size and class balance of the fitting data
        self.feedback_count = 0

    # ----------------------------------------------------------------- scoring
    def _check(self, votes: np.ndarray, present: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        votes = np.asarray(votes, dtype=np.float64)
        if votes.ndim == 1:
            votes = votes[None]
        if votes.ndim != 2 or votes.shape[1] != len(self.agents):
            raise ValueError(
                f"votes must have shape (N, {len(self.agents)}) for agents {self.agents}, received {votes.shape}."
            )
        if present is None:
            mask = np.isfinite(votes)
        else:
            mask = np.asarray(present, dtype=bool).reshape(votes.shape) & np.isfinite(votes)
        return np.where(mask, votes, 0.5), mask

    def _w(self, q: np.ndarray) -> np.ndarray:
        if self.config.weight_map == "power":
            return np.maximum(q, 0.0) ** self.config.gamma + self.config.min_weight
        return np.exp(self.config.beta * q)

    def _class_scores(self, votes: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """S[n, c] = sum over present agents of w(Q[a, c]) * p_a(c)."""
        probs = np.stack([1.0 - votes, votes], axis=2)  # (N, A, 2) in CLASSES order
        w = self._w(self.q)[None, :, :] * mask[:, :, None]
        return (w * probs).sum(axis=1)

    def raw_score(self, votes: np.ndarray, present: np.ndarray | None = None) -> np.ndarray:
        """Uncalibrated combined score s = S_fake / (S_fake + S_real), shape (N,).

        When every present agent has zero weight (untrained, or all distrusted) the score falls
        back to the mean of the present p_fake; with no agent present it is 0.5.
        """
        votes, mask = self._check(votes, present)
        s = self._class_scores(votes, mask)
        total = s.sum(axis=1)
        n = mask.sum(axis=1)
        mean = np.where(n > 0, (votes * mask).sum(axis=1) / np.maximum(n, 1), 0.5)
        return np.where(total > 1e-12, s[:, FAKE_INDEX] / np.maximum(total, 1e-12), mean)

    def predict_proba(self, votes: np.ndarray, present: np.ndarray | None = None) -> np.ndarray:
        """Calibrated p_fake, shape (N,); rows with no vote at all get 0.5."""
        votes_arr, mask = self._check(votes, present)
        p = self.calibrator.apply(self.raw_score(votes_arr, mask))
        return np.where(mask.any(axis=1), p, 0.5)

    def predict(self, votes: np.ndarray, present: np.ndarray | None = None) -> np.ndarray:
        """0/1 labels at the stored threshold."""
        return (self.predict_proba(votes, present) >= self.threshold).astype(int)

    def weights(self) -> dict[str, dict[str, float]]:
        """agent -> class -> the non-negative weight w(Q[agent][class]) used in decisions."""
        w = self._w(self.q)
        return {a: {c: float(w[i, j]) for j, c in enumerate(CLASSES)} for i, a in enumerate(self.agents)}

    def trust(self) -> dict[str, dict[str, float]]:
        """agent -> class -> learned trust Q (in [-1, 1])."""
        return {a: {c: float(self.q[i, j]) for j, c in enumerate(CLASSES)} for i, a in enumerate(self.agents)}

    def explain(self, row_votes: np.ndarray, present: np.ndarray | None = None) -> dict[str, float]:
        """Share of the decided class's score each agent's vote carried (0 for missing agents).

        The decided class is the one at the stored threshold; shares sum to 1 over the agents
        that voted (equal shares when no agent has positive weight for that class).
        """
        votes, mask = self._check(np.asarray(row_votes, dtype=np.float64).reshape(1, -1),
                                  None if present is None else np.asarray(present).reshape(1, -1))
        decided = int(self.predict_proba(votes, mask)[0] >= self.threshold)
        probs = votes[0] if decided == FAKE_INDEX else 1.0 - votes[0]
        contrib = self._w(self.q[:, decided]) * probs * mask[0]
        total = contrib.sum()
        if total <= 1e-12:
            n = mask[0].sum()
            contrib = mask[0] / max(n, 1)
        else:
            contrib = contrib / total
        return {a: float(contrib[i]) for i, a in enumerate(self.agents)}

    # ---------------------------------------------------------------- learning
    def _update_agents(self, votes_row: np.ndarray, mask_row: np.ndarray, truth: int, alpha: float) -> None:
        """One trust update: each present agent's verdict is rewarded +1 if right, -1 if wrong."""
        verdicts = (votes_row >= 0.5).astype(int)
        for i in np.flatnonzero(mask_row):
            c = verdicts[i]
            reward = 1.0 if c == truth else -1.0
            self.q[i, c] += alpha * (reward - self.q[i, c])

    def fit(self, votes: np.ndarray, labels: np.ndarray, present: np.ndarray | None = None) -> "QController":
        """Learns trust from labelled votes, then fits calibration and the threshold on them.

        Args:
            votes: (N, A) calibrated p_fake, columns in ``agents`` order (NaN = missing).
            labels: (N,) 0 = real / 1 = fake, or the names.
            present: optional (N, A) mask of votes that exist.

        Returns:
            self, refitted from zero trust.
        """
        votes_arr, mask = self._check(votes, present)
        y = _labels_to_int(labels)
        if y.shape != (votes_arr.shape[0],):
            raise ValueError(f"labels must have shape ({votes_arr.shape[0]},), received {y.shape}.")
        if len(y) == 0:
            raise ValueError("Cannot fit the controller on zero cases.")
        cfg = self.config
        rng = np.random.default_rng(cfg.seed)
        self.q[:] = 0.0
        self.action_value[:] = 0.0
        self.history = []
        epsilon, alpha = cfg.epsilon, cfg.alpha
        for epoch in range(cfg.epochs):
            rewards = {"greedy": [], "explore": []}
            for n in rng.permutation(len(y)):
                # The controller acts first with its current trust (epsilon-greedy), then learns.
                greedy = int(self.raw_score(votes_arr[n:n + 1], mask[n:n + 1])[0] >= 0.5)
                explore = rng.random() < epsilon
                action = int(rng.integers(len(CLASSES))) if explore else greedy
                reward = 1.0 if action == y[n] else -1.0
                self.action_value[action] += alpha * (reward - self.action_value[action])
                rewards["explore" if explore else "greedy"].append(reward)
                self._update_agents(votes_arr[n], mask[n], int(y[n]), alpha)
            self.history.append({
                "epoch": epoch + 1,
                "epsilon": float(epsilon),
                "alpha": float(alpha),
                "explored": len(rewards["explore"]),
                "mean_reward_greedy": float(np.mean(rewards["greedy"])) if rewards["greedy"] else 0.0,
                "mean_reward_explore": float(np.mean(rewards["explore"])) if rewards["explore"] else 0.0,
            })
            epsilon *= cfg.epsilon_decay
            # A shrinking step averages over more cases each epoch: less noisy trust at the end.
            alpha *= cfg.alpha_decay
        s = self.raw_score(votes_arr, mask)
        self.calibrator = _Calibrator(kind=cfg.calibration).fit(s, y)
        self.threshold = choose_threshold(self.calibrator.apply(s), y, cfg.threshold_rule)
        self.fitted_on = {"cases": int(len(y)), "fake": int(y.sum()), "real": int(len(y) - y.sum())}
        self.counter += 1
        return self

    def online_update(self, votes_row: np.ndarray, present: np.ndarray | None, label: str | int) -> "QController":
        """Learns from one piece of user feedback and returns an UPDATED COPY (self is untouched).

        Calibration and threshold are kept (one case is too little to refit them).
        """
        votes, mask = self._check(np.asarray(votes_row, dtype=np.float64).reshape(1, -1),
                                  None if present is None else np.asarray(present).reshape(1, -1))
        truth = label_to_index(label) if isinstance(label, str) else int(label)
        if truth not in (0, 1):
            raise ValueError(f"label must be 'real'/'fake' or 0/1, received {label!r}.")
        if not mask.any():
            raise ValueError("online_update needs at least one present vote.")
        new = copy.deepcopy(self)
        new._update_agents(votes[0], mask[0], truth, new.config.alpha)
        decided = int(new.predict_proba(votes, mask)[0] >= new.threshold)
        reward = 1.0 if decided == truth else -1.0
        new.action_value[decided] += new.config.alpha * (reward - new.action_value[decided])
        new.counter += 1
        new.feedback_count += 1
        return new

    # ----------------------------------------------------------- persistence
    def _content(self) -> dict[str, Any]:
        return {
            "schema": SCHEMA,
            "schema_version": SCHEMA_VERSION,
            "name": self.name,
            "agents": list(self.agents),
            "classes": list(CLASSES),
            "config": asdict(self.config),
            "q": [[float(v) for v in row] for row in self.q],
            "action_value": [float(v) for v in self.action_value],
            "calibration": asdict(self.calibrator),
            "threshold": float(self.threshold),
            "counter": int(self.counter),
            "feedback_count": int(self.feedback_count),
            "history": list(self.history),
            "fitted_on": dict(self.fitted_on),
        }

    @property
    def version(self) -> str:
        """``"<counter>-<hash8>"``: a readable counter plus a hash of the full table."""
        digest = hashlib.sha256(json.dumps(self._content(), sort_keys=True).encode()).hexdigest()[:8]
        return f"{self.counter}-{digest}"

    def to_json(self) -> bytes:
        """Serialises everything needed to reproduce decisions (plus the version, for readers)."""
        return json.dumps({**self._content(), "version": self.version}, indent=2, sort_keys=True).encode()

    @classmethod
    def from_json(cls, data: bytes | str) -> "QController":
        """Restores a controller; refuses other schemas and tables whose content changed."""
        try:
            obj = json.loads(data)
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise ValueError(f"Controller table is not valid JSON: {err}") from err
        if not isinstance(obj, dict):
            raise ValueError(f"Controller table must be a JSON object, received {type(obj).__name__}.")
        if obj.get("schema") != SCHEMA or obj.get("schema_version") != SCHEMA_VERSION:
            raise ValueError(
                f"Not a fakeface controller table (schema={obj.get('schema')!r}, "
                f"version={obj.get('schema_version')!r}); expected {SCHEMA} v{SCHEMA_VERSION}."
            )
        if list(obj.get("classes", [])) != list(CLASSES):
            raise ValueError(f"Controller classes {obj.get('classes')} differ from {list(CLASSES)}.")
        ctrl = cls(obj["agents"], ControllerConfig.from_dict(obj["config"]))
        ctrl.q = np.asarray(obj["q"], dtype=np.float64).reshape(len(ctrl.agents), len(CLASSES))
        ctrl.action_value = np.asarray(obj["action_value"], dtype=np.float64)
        ctrl.calibrator = _Calibrator(**obj["calibration"])
        ctrl.threshold = float(obj["threshold"])
        ctrl.counter = int(obj["counter"])
        ctrl.feedback_count = int(obj.get("feedback_count", 0))
        ctrl.history = list(obj.get("history", []))
        ctrl.fitted_on = dict(obj.get("fitted_on", {}))
        if "version" in obj and obj["version"] != ctrl.version:
            raise ValueError(
                f"Controller table content does not match its version {obj['version']!r} "
                f"(recomputed {ctrl.version!r}); it was edited by hand. Refit with `fakeface fit-controller`."
            )
        return ctrl

    def with_threshold(self, rule: str, p_fake: np.ndarray, labels: np.ndarray) -> "QController":
        """A copy whose threshold is re-chosen with another rule on calibrated val scores."""
        new = copy.deepcopy(self)
        new.config = replace(new.config, threshold_rule=rule)
        new.threshold = choose_threshold(np.asarray(p_fake), _labels_to_int(labels), rule)
        new.counter += 1
        return new

    def summary(self) -> dict[str, Any]:
        """Trust table, weights, threshold and version, for reports and `model_info`."""
        return {
            "version": self.version,
            "agents": list(self.agents),
            "trust": self.trust(),
            "weights": self.weights(),
            "action_value": {c: float(self.action_value[j]) for j, c in enumerate(CLASSES)},
            "threshold": float(self.threshold),
            "threshold_rule": self.config.threshold_rule,
            "calibration": self.calibrator.kind,
            "fitted_on": dict(self.fitted_on),
            "feedback_count": int(self.feedback_count),
        }


def f_half(labels: np.ndarray, predicted: np.ndarray) -> float:
    """F0.5 for the fake class (sklearn), the default operating-point metric."""
    return float(fbeta_score(labels, predicted, beta=0.5, pos_label=1, zero_division=0))


# ------------------------------------------------------------ bundle storage
CONTROLLER_KEY = "controller"


def _history(bundle: Bundle) -> list[dict[str, Any]]:
    entry = bundle.extra(CONTROLLER_KEY)
    return [] if entry is None else list(entry.get("history", []))


def save_controller(bundle_dir: str | os.PathLike[str], controller: QController) -> Bundle:
    """Stores the controller as ``controller/v{N}.json`` in the bundle and makes it active.

    Earlier versions stay in the bundle, their checksums listed in the manifest's history, so
    :func:`rollback_controller` can verify and restore them.

    Raises:
        BundleError: the bundle is invalid, or its agents differ from the controller's.
    """
    bundle = load_bundle(bundle_dir)
    if not set(controller.agents) <= set(bundle.agent_names):
        raise BundleError(
            f"Controller agents {controller.agents} are not agents of bundle {bundle.path} ({bundle.agent_names})."
        )
    history = _history(bundle)
    n = max((int(h["n"]) for h in history), default=0) + 1
    data = controller.to_json()
    rel = f"controller/v{n}.json"
    record = {
        "n": n,
        "version": controller.version,
        "file": rel,
        "sha256": hashlib.sha256(data).hexdigest(),
        "saved": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }
    fields = {
        "n": n,
        "version": controller.version,
        "agents": list(controller.agents),
        "fitted_on": dict(controller.fitted_on),
        "history": history + [record],
    }
    return update_bundle(bundle_dir, extras={CONTROLLER_KEY: (rel, data, fields)})


def load_controller(bundle: Bundle | str | os.PathLike[str] | None) -> QController | None:
    """The bundle's active controller (checksum-verified), or None when it has none.

    Raises:
        BundleError: the controller file was modified (checksum mismatch) or is not a table.
    """
    bundle = bundle if isinstance(bundle, Bundle) else load_bundle(bundle)
    data = bundle.read_extra(CONTROLLER_KEY)
    if data is None:
        return None
    try:
        return QController.from_json(data)
    except (ValueError, KeyError, TypeError) as err:
        raise BundleError(f"{bundle.extra_path(CONTROLLER_KEY)}: {err}") from err


def list_controller_versions(bundle: Bundle | str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Every stored controller version, oldest first, with ``active`` marking the one in use."""
    bundle = bundle if isinstance(bundle, Bundle) else load_bundle(bundle)
    entry = bundle.extra(CONTROLLER_KEY) or {}
    active = entry.get("file")
    return [{**h, "active": h["file"] == active} for h in _history(bundle)]


def rollback_controller(bundle_dir: str | os.PathLike[str], version: str | int | None = None) -> Bundle:
    """Makes an earlier stored controller active again (after verifying its checksum).

    Args:
        bundle_dir: the bundle.
        version: a controller version string ("3-1a2b3c4d"), a stored number (3 or "v3"), or
            None for the version saved before the active one.

    Raises:
        BundleError: no such version, or its file was modified.
    """
    bundle = load_bundle(bundle_dir)
    versions = list_controller_versions(bundle)
    if not versions:
        raise BundleError(f"Bundle {bundle.path} has no controller to roll back; run `fakeface fit-controller`.")
    if version is None:
        active = [i for i, v in enumerate(versions) if v["active"]]
        idx = (active[0] if active else len(versions)) - 1
        if idx < 0:
            raise BundleError(f"Bundle {bundle.path}: the active controller is the oldest; nothing to roll back to.")
        target = versions[idx]
    else:
        key = str(version)
        matches = [v for v in versions if key in (v["version"], str(v["n"]), f"v{v['n']}")]
        if not matches:
            known = ", ".join(f"v{v['n']} ({v['version']})" for v in versions)
            raise BundleError(f"Bundle {bundle.path} has no controller version {version!r}; stored: {known}.")
        target = matches[-1]
    path = bundle.path / target["file"]
    if not path.is_file():
        raise BundleError(f"Controller version file {path} is missing; cannot roll back to {target['version']}.")
    data = path.read_bytes()
    if hashlib.sha256(data).hexdigest() != target["sha256"]:
        raise BundleError(f"Checksum mismatch for {path}: the stored controller was modified; refusing to roll back.")
    controller = QController.from_json(data)
    fields = {
        "n": int(target["n"]),
        "version": target["version"],
        "agents": list(controller.agents),
        "fitted_on": dict(controller.fitted_on),
        "history": [{k: v for k, v in h.items() if k != "active"} for h in versions],
        "rolled_back": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }
    return update_bundle(bundle_dir, extras={CONTROLLER_KEY: (target["file"], data, fields)})


__all__ = [
    "ControllerConfig", "QController", "choose_threshold", "f_half", "save_controller", "load_controller",
    "list_controller_versions", "rollback_controller", "REAL", "FAKE",
]
