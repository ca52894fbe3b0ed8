"""Learning from feedback, safely: a candidate controller, promoted only when replay says so.

Every feedback event updates a CANDIDATE copy of the live controller (``online_update``); the
live controller keeps deciding. After each update (or every ``check_every`` updates) the
candidate is scored on the bundle's replay set (labelled val votes held out of fitting) and
promoted to live only when its ROC AUC there is not lower than the reference by more than
``max_auc_drop``. The reference is the replay AUC of the controller the learner started from
(the fitted one, or the one restored by a rollback), not of the last promoted candidate: a chain
of small promotions cannot add up to a large loss. A refused candidate is kept aside with the reason logged, and the next
candidate starts again from the live controller, so a stream of wrong labels cannot walk the
live controller away from what val says is right.

Without a replay set (bundles fitted before replay sets existed) nothing can be checked, so
updates are refused with that reason rather than applied blindly.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field

import numpy as np
import pydantic
from pydantic import ConfigDict, Field

from blackboard.controllers.base import Controller
from blackboard.controllers.store import ReplaySet
from blackboard.combine import vote_matrix

log = logging.getLogger(__name__)


@pydantic.dataclasses.dataclass(frozen=True, config=ConfigDict(extra="forbid"))
class PromotionConfig:
    """When a candidate controller may replace the live one."""

    # Largest replay-AUC loss (reference minus candidate) a promotion may cost.
    max_auc_drop: float = Field(0.005, ge=0)
    # Largest replay log-loss rise a promotion may cost (wrong labels wreck calibration before
    # they move AUC much, so this catches poisoning earlier).
    max_logloss_rise: float = Field(0.005, ge=0)
    check_every: int = Field(1, ge=1)  # feedback events between replay checks (1 = after every event)
    keep_rejected: int = Field(16, ge=0)  # refused candidates kept aside (newest last) for inspection


@dataclass(frozen=True)
class Outcome:
    """What one feedback event did."""

    applied: bool  # the candidate learned from the event
    promoted: bool  # the candidate became the live controller
    live_version: str  # live controller version after the event
    candidate_version: str  # candidate version after the event ("" when refused or reset)
    detail: str  # human-readable reason (logged)
    replay_auc_live: float | None = None  # replay AUC of the live controller when checked
    replay_auc_candidate: float | None = None  # replay AUC of the candidate when checked


@dataclass
class _Rejected:
    version: str
    reason: str
    events: int = field(default=0)


def replay_scores(controller: Controller, replay: ReplaySet) -> tuple[float, float]:
    """(ROC AUC, log-loss) of a controller on the replay votes (matched to its agents by name)."""
    # Here, not at the top: `serve`'s process decides without scikit-learn (~1.5 s with SciPy).
    from sklearn.metrics import log_loss, roc_auc_score

    votes, present = vote_matrix({a: replay.votes[:, j] for j, a in enumerate(replay.agents)}, controller.agents)
    p = controller.predict_proba(votes, present, replay.context_for(controller.context_names))
    return float(roc_auc_score(replay.labels, p)), float(log_loss(replay.labels, np.clip(p, 1e-7, 1 - 1e-7),
                                                                  labels=[0, 1]))


def replay_auc(controller: Controller, replay: ReplaySet) -> float:
    """ROC AUC of a controller on the replay votes."""
    return replay_scores(controller, replay)[0]


class FeedbackLearner:
    """Holds the live and candidate controllers; thread-safe.

    Args:
        live: the controller serving decisions now.
        replay: held-out labelled votes, or None (then every update is refused with that reason).
        config: the promotion rule.
    """

    def __init__(self, live: Controller, replay: ReplaySet | None, config: PromotionConfig = PromotionConfig()) -> None:
        if replay is not None and len(np.unique(replay.labels)) < 2:
            raise ValueError("The replay set needs both classes to measure AUC.")
        self.config = config
        self.replay = replay
        self._lock = threading.Lock()
        self._live = live
        self._live_auc, self._reference_loss = (None, None) if replay is None else replay_scores(live, replay)
        self._reference_auc = self._live_auc  # fixed until reset(): promotions are judged against it
        self._candidate: Controller | None = None
        self._pending = 0  # events in the candidate since the last check
        self.rejected: list[_Rejected] = []

    @property
    def live(self) -> Controller:
        """The controller that decides now."""
        return self._live

    def reset(self, live: Controller) -> None:
        """Makes ``live`` the live controller (e.g. after a rollback) and drops the candidate."""
        with self._lock:
            self._live, self._candidate, self._pending = live, None, 0
            self._live_auc, self._reference_loss = (None, None) if self.replay is None else replay_scores(live, self.replay)
            self._reference_auc = self._live_auc

    def feedback(self, votes: np.ndarray, present: np.ndarray, label: str | int,
                 context: np.ndarray | None = None) -> Outcome:
        """Learns from one labelled case (one or more faces, columns in the live controller's order).

        Raises:
            ValueError: a bad label, or votes whose columns do not match the live controller.
        """
        votes = np.atleast_2d(np.asarray(votes, dtype=np.float64))
        present = np.atleast_2d(np.asarray(present, dtype=bool))
        with self._lock:
            live = self._live
            if votes.shape[1] != len(live.agents):
                raise ValueError(f"feedback votes have {votes.shape[1]} columns; the controller weighs "
                                 f"{len(live.agents)} agents {live.agents}.")
            if self.replay is None:
                detail = "no replay set in the bundle to check an update against; refit with `fakeface fit-controller`"
                log.warning("feedback not applied: %s", detail)
                return Outcome(False, False, live.version, "", detail)
            candidate = self._candidate or live
            for i, (row, mask) in enumerate(zip(votes, present)):
                candidate = candidate.online_update(row, mask, label, None if context is None else context[i])
            self._candidate = candidate
            self._pending += 1
            if self._pending < self.config.check_every:
                return Outcome(True, False, live.version, candidate.version, "candidate updated; check pending")
            self._pending = 0
            cand_auc, cand_loss = replay_scores(candidate, self.replay)
            drop, rise = self._reference_auc - cand_auc, cand_loss - self._reference_loss
            if drop > self.config.max_auc_drop or rise > self.config.max_logloss_rise:
                reason = (f"candidate {candidate.version} refused: replay AUC {cand_auc:.4f} is {drop:+.4f} below the "
                          f"reference {self._reference_auc:.4f} (allowed {self.config.max_auc_drop}), log-loss "
                          f"{cand_loss:.4f} is {rise:+.4f} above it (allowed {self.config.max_logloss_rise})")
                log.warning("%s", reason)
                self.rejected.append(_Rejected(candidate.version, reason, candidate.feedback_count))
                del self.rejected[:-self.config.keep_rejected or len(self.rejected)]
                self._candidate = None
                return Outcome(True, False, live.version, "", reason, self._live_auc, cand_auc)
            detail = f"candidate {candidate.version} promoted: replay AUC {cand_auc:.4f} (live was {self._live_auc:.4f})"
            log.info("%s", detail)
            previous = self._live_auc
            self._live, self._live_auc, self._candidate = candidate, cand_auc, None
            return Outcome(True, True, candidate.version, candidate.version, detail, previous, cand_auc)
