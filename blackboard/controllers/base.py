"""The reinforcement-learning controllers: per-(agent, class) trust learned from rewarded decisions.

Two learning rules share one interface (:class:`Controller`): columns of votes in ``agents``
order, calibrated ``predict_proba``, a threshold, ``explain`` (each agent's share of a decision),
``online_update`` (one rewarded case -> an updated COPY), a content-hashed ``version`` and JSON.

- ``QController`` (kind ``"qtrust"``, :mod:`blackboard.controllers.qtrust`): the original trust
  table, ``Q[agent][c]`` ~ ``2 * precision(agent says c) - 1`` learned from +/-1 rewards, weighing
  the agents' probabilities.
- ``LogOddsController`` (kind ``"logodds"``, :mod:`blackboard.controllers.logodds`): a weight per
  agent and per class the agent speaks for, applied to the agent's log-odds, learned by a
  policy-gradient update from the reward of each decision.

Persistence lives in :mod:`blackboard.controllers.store`; :func:`controller_from_json` reads any
stored table (schema v1 files are Q-trust tables and load unchanged).
"""

from __future__ import annotations

import copy
import hashlib
import json
from dataclasses import asdict, replace
from typing import Any, ClassVar, Sequence

import numpy as np

from agents.errors import parse_json
from agents.labels import CLASSES, label_to_index
from blackboard.calibration import Calibrator, choose_threshold, labels_to_int

SCHEMA = "fakeface-controller"


def check_config_keys(cls: type, data: dict[str, Any], *, kind: str = "controller") -> dict[str, Any]:
    """Refuses unknown keys of a config mapping (typos would otherwise be silent); ``kind`` names
    the config in the message."""
    known = set(cls.__dataclass_fields__)
    unknown = sorted(set(data) - known)
    if unknown:
        raise ValueError(f"Unknown {kind} config keys {unknown}; known keys: {sorted(known)}.")
    return data


def agent_class_table(agents: Sequence[str], matrix: np.ndarray) -> dict[str, dict[str, float]]:
    """agent -> class -> value, from an (agents, classes) matrix in CLASSES order: the shape every
    weight and trust table of the controllers is reported in."""
    return {a: {c: float(matrix[i, j]) for j, c in enumerate(CLASSES)} for i, a in enumerate(agents)}


class Controller:
    """What every learning rule shares: vote checks, calibration, threshold, version and JSON.

    Subclasses set ``kind``, ``schema_version`` and ``config_class`` and implement ``raw_score``,
    ``_learn_one``, ``fit_rule``, ``explain``, ``weights``, ``trust`` and ``_state`` /
    ``_restore``.

    Args:
        agents: agent names, in the column order of every votes array.
        config: the rule's frozen config dataclass.
    """

    name = "ensemble"
    kind: ClassVar[str] = ""
    schema_version: ClassVar[int] = 2
    config_class: ClassVar[type] = object

    def __init__(self, agents: Sequence[str], config: Any) -> None:
        agents = [str(a) for a in agents]
        if not agents or len(set(agents)) != len(agents):
            raise ValueError(f"agents must be a non-empty list of distinct names, received {agents}.")
        self.agents: list[str] = agents
        self.config = config
        self.calibrator = Calibrator(kind="none")
        self.threshold = 0.5
        self.counter = 0  # bumped by every fit / online update; the readable half of `version`
        self.history: list[dict[str, float]] = []  # per-epoch learning log of the last fit
        self.fitted_on: dict[str, Any] = {}  # size and class balance of the fitting data
        self.feedback_count = 0

    @property
    def context_names(self) -> tuple[str, ...]:
        """Case-context features this rule reads (see ``blackboard.decision.case_context``); none by default."""
        return ()

    # ----------------------------------------------------------------- scoring
    def _check(self, votes: np.ndarray, present: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        """(votes with missing cells set to 0.5, boolean mask of real votes), both (N, A)."""
        votes = np.asarray(votes, dtype=np.float64)
        if votes.ndim == 1:
            votes = votes[None]
        if votes.ndim != 2 or votes.shape[1] != len(self.agents):
            raise ValueError(
                f"votes must have shape (N, {len(self.agents)}) for agents {self.agents}, received {votes.shape}."
            )
        mask = np.isfinite(votes)
        if present is not None:
            mask &= np.asarray(present, dtype=bool).reshape(votes.shape)
        return np.where(mask, votes, 0.5), mask

    def raw_score(self, votes: np.ndarray, present: np.ndarray | None = None,
                  context: np.ndarray | None = None) -> np.ndarray:
        """Uncalibrated combined score in (0, 1), shape (N,)."""
        raise NotImplementedError

    def predict_proba(self, votes: np.ndarray, present: np.ndarray | None = None,
                      context: np.ndarray | None = None) -> np.ndarray:
        """Calibrated p_fake, shape (N,); rows with no vote at all get 0.5."""
        votes_arr, mask = self._check(votes, present)
        p = self.calibrator.apply(self.raw_score(votes_arr, mask, context))
        return np.where(mask.any(axis=1), p, 0.5)

    def predict(self, votes: np.ndarray, present: np.ndarray | None = None) -> np.ndarray:
        """0/1 labels at the stored threshold."""
        return (self.predict_proba(votes, present) >= self.threshold).astype(int)

    def explain(self, row_votes: np.ndarray, present: np.ndarray | None = None,
                context: np.ndarray | None = None) -> dict[str, float]:
        """Share of the decided class's evidence each agent carried (sums to 1 over voters)."""
        raise NotImplementedError

    def context_shift(self, row_votes: np.ndarray, present: np.ndarray | None = None,
                      context: np.ndarray | None = None) -> dict[str, float]:
        """agent -> how the face's context moved its weight (0 for rules without context)."""
        return {a: 0.0 for a in self.agents}

    def weights(self) -> dict[str, dict[str, float]]:
        """agent -> class -> the weight the rule gives the agent's vote for that class."""
        raise NotImplementedError

    def trust(self) -> dict[str, dict[str, float]]:
        """agent -> class -> the learned trust value behind the weight (what the plot shows)."""
        raise NotImplementedError

    def _row(self, row_votes: np.ndarray, present: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        return self._check(np.asarray(row_votes, dtype=np.float64).reshape(1, -1),
                           None if present is None else np.asarray(present).reshape(1, -1))

    @staticmethod
    def _shares(contrib: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """Non-negative contributions normalised to shares; equal shares when none is positive."""
        contrib = np.maximum(contrib, 0.0) * mask
        total = contrib.sum()
        return contrib / total if total > 1e-12 else mask / max(int(mask.sum()), 1)

    # ---------------------------------------------------------------- learning
    def fit_rule(self, votes: np.ndarray, mask: np.ndarray, y: np.ndarray, context: np.ndarray | None) -> None:
        """Learns the rule's parameters from scratch (calibration and threshold come after)."""
        raise NotImplementedError

    def _learn_one(self, votes_row: np.ndarray, mask_row: np.ndarray, truth: int,
                   context_row: np.ndarray | None) -> None:
        """One online update from one rewarded case (in place)."""
        raise NotImplementedError

    def fit(self, votes: np.ndarray, labels: np.ndarray, present: np.ndarray | None = None,
            context: np.ndarray | None = None) -> "Controller":
        """Learns from labelled votes, then fits calibration and the threshold on them.

        Args:
            votes: (N, A) calibrated p_fake, columns in ``agents`` order (NaN = missing).
            labels: (N,) 0 = real / 1 = fake, or the names; both classes are required.
            present: optional (N, A) mask of votes that exist.
            context: optional (N, K) case context, for rules that use it.

        Returns:
            self, refitted from scratch.

        Raises:
            ValueError: shapes disagree, or the labels hold fewer than two classes.
        """
        votes_arr, mask = self._check(votes, present)
        y = labels_to_int(labels)
        if y.shape != (votes_arr.shape[0],):
            raise ValueError(f"labels must have shape ({votes_arr.shape[0]},), received {y.shape}.")
        if len(np.unique(y)) < 2:
            raise ValueError(f"Cannot fit the controller on {len(y)} case(s) of one class; it needs reals and fakes.")
        self.history = []
        self.fit_rule(votes_arr, mask, y, context)
        s = self.raw_score(votes_arr, mask, context)
        self.calibrator = Calibrator(kind=self.config.calibration).fit(s, y, prior=self.config.prior)
        self.threshold = choose_threshold(self.calibrator.apply(s), y, self.config.threshold_rule)
        self.fitted_on = {"cases": int(len(y)), "fake": int(y.sum()), "real": int(len(y) - y.sum())}
        self.counter += 1
        return self

    def online_update(self, votes_row: np.ndarray, present: np.ndarray | None, label: str | int,
                      context_row: np.ndarray | None = None) -> "Controller":
        """Learns from one piece of feedback and returns an UPDATED COPY (self is untouched).

        Calibration and threshold are kept (one case is too little to refit them).
        """
        votes, mask = self._row(votes_row, present)
        truth = label_to_index(label) if isinstance(label, str) else int(label)
        if truth not in (0, 1):
            raise ValueError(f"label must be 'real'/'fake' or 0/1, received {label!r}.")
        if not mask.any():
            raise ValueError("online_update needs at least one present vote.")
        new = copy.deepcopy(self)
        new._learn_one(votes[0], mask[0], truth, None if context_row is None else np.asarray(context_row).ravel())
        new.counter += 1
        new.feedback_count += 1
        return new

    # ----------------------------------------------------------- persistence
    def _state(self) -> dict[str, Any]:
        """The rule's own learned parameters, as JSON-ready values."""
        raise NotImplementedError

    def _restore(self, obj: dict[str, Any]) -> None:
        """Sets the rule's own learned parameters from a table."""
        raise NotImplementedError

    def _config_json(self) -> dict[str, Any]:
        # A table fitted before ``prior`` existed has none (None): leaving the key out keeps its
        # content, and so its version hash, as it was written.
        config = asdict(self.config)
        if config.get("prior", 0.5) is None:
            del config["prior"]
        return config

    def _content(self) -> dict[str, Any]:
        return {
            "schema": SCHEMA,
            "schema_version": self.schema_version,
            "kind": self.kind,
            "name": self.name,
            "agents": list(self.agents),
            "classes": list(CLASSES),
            "config": self._config_json(),
            "calibration": self.calibrator.to_json(),
            "threshold": float(self.threshold),
            "counter": int(self.counter),
            "feedback_count": int(self.feedback_count),
            "history": list(self.history),
            "fitted_on": dict(self.fitted_on),
            **self._state(),
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
    def _from_obj(cls, obj: dict[str, Any]) -> "Controller":
        stored = dict(obj["config"])
        stored.setdefault("prior", None)  # fitted before the prior existed: its probabilities keep the data's
        config = cls.config_class(**check_config_keys(cls.config_class, stored))
        ctrl = cls(obj["agents"], config)
        ctrl.calibrator = Calibrator(**obj["calibration"])
        ctrl.threshold = float(obj["threshold"])
        ctrl.counter = int(obj["counter"])
        ctrl.feedback_count = int(obj.get("feedback_count", 0))
        ctrl.history = list(obj.get("history", []))
        ctrl.fitted_on = dict(obj.get("fitted_on", {}))
        ctrl._restore(obj)
        return ctrl

    @classmethod
    def from_json(cls, data: bytes | str) -> "Controller":
        """Restores a stored table of this class or, through :func:`controller_from_json`, any kind."""
        ctrl = controller_from_json(data)
        if not isinstance(ctrl, cls):
            raise ValueError(f"The table is a {type(ctrl).__name__} ({ctrl.kind!r}), not a {cls.__name__}.")
        return ctrl

    def with_threshold(self, rule: str, p_fake: np.ndarray, labels: np.ndarray) -> "Controller":
        """A copy whose threshold is re-chosen with another rule on calibrated val scores."""
        new = copy.deepcopy(self)
        new.config = replace(new.config, threshold_rule=rule)
        new.threshold = choose_threshold(np.asarray(p_fake), labels_to_int(labels), rule)
        new.counter += 1
        return new

    def summary(self) -> dict[str, Any]:
        """Trust table, weights, threshold and version, for reports and `model_info`."""
        return {
            "version": self.version,
            "kind": self.kind,
            "agents": list(self.agents),
            "trust": self.trust(),
            "weights": self.weights(),
            "threshold": float(self.threshold),
            "threshold_rule": self.config.threshold_rule,
            "calibration": self.calibrator.kind,
            "fitted_on": dict(self.fitted_on),
            "feedback_count": int(self.feedback_count),
        }


# kind -> learning rule, filled by `register_controller` as each rule's module is imported
# (`blackboard.controllers` imports every rule; this module never imports its variants).
_KINDS: dict[str, type[Controller]] = {}


def register_controller(cls: type[Controller]) -> type[Controller]:
    """Class decorator: makes a learning rule loadable by its ``kind`` from stored tables."""
    if not cls.kind:
        raise ValueError(f"{cls.__name__} must set a non-empty `kind` to be registered.")
    if _KINDS.get(cls.kind, cls) is not cls:
        raise ValueError(f"controller kind {cls.kind!r} is registered twice "
                         f"({_KINDS[cls.kind].__name__} and {cls.__name__}).")
    _KINDS[cls.kind] = cls
    return cls


def controller_kinds() -> dict[str, type[Controller]]:
    """kind -> class of every learning rule a table may hold."""
    return dict(_KINDS)


def controller_from_json(data: bytes | str) -> Controller:
    """Restores any stored controller table; refuses other schemas and hand-edited tables.

    Schema v1 tables (written before the log-odds rule) are Q-trust tables and load as they are.

    Raises:
        ValueError: not JSON, another schema or kind, other classes, or content that no longer
            matches its version string.
    """
    obj = parse_json(data, what="Controller table")
    if not isinstance(obj, dict):
        raise ValueError(f"Controller table must be a JSON object, received {type(obj).__name__}.")
    kinds = controller_kinds()
    schema_version = obj.get("schema_version")
    kind = "qtrust" if schema_version == 1 else obj.get("kind")
    if obj.get("schema") != SCHEMA or schema_version not in (1, 2) or kind not in kinds:
        raise ValueError(
            f"Not a fakeface controller table (schema={obj.get('schema')!r}, version={schema_version!r}, "
            f"kind={obj.get('kind')!r}); expected {SCHEMA} v1 (qtrust) or v2 with kind in {sorted(kinds)}."
        )
    cls = kinds[kind]
    if cls.schema_version != schema_version:
        raise ValueError(f"A {kind!r} table must have schema_version {cls.schema_version}, received {schema_version}.")
    if list(obj.get("classes", [])) != list(CLASSES):
        raise ValueError(f"Controller classes {obj.get('classes')} differ from {list(CLASSES)}.")
    try:
        ctrl = cls._from_obj(obj)
    except (KeyError, TypeError) as err:
        raise ValueError(f"Controller table lacks or mistypes a field: {err!r}.") from err
    if "version" in obj and obj["version"] != ctrl.version:
        raise ValueError(
            f"Controller table content does not match its version {obj['version']!r} "
            f"(recomputed {ctrl.version!r}); it was edited by hand. Refit with `fakeface fit-controller`."
        )
    return ctrl


def f_half(labels: np.ndarray, predicted: np.ndarray) -> float:
    """F0.5 for the fake class (sklearn), the default operating-point metric."""
    # Here, not at the top: `serve`'s process decides without scikit-learn (~1.5 s with SciPy).
    from sklearn.metrics import fbeta_score

    return float(fbeta_score(labels, predicted, beta=0.5, pos_label=1, zero_division=0))


# Storage lives in `blackboard.controllers.store`, the Q-trust rule in `blackboard.controllers.qtrust`
# and the log-odds rule in `blackboard.controllers.logodds`.
__all__ = [
    "Controller",
    "controller_from_json",
    "controller_kinds",
    "register_controller",
    "f_half",
]
