"""Feedback becomes a new controller only when an operator asks, and only behind three checks.

A visitor's "this answer is wrong" is evidence: the servicer stores it (with the case's votes)
in the feedback log and changes nothing anyone is told. An operator turns the log into a
candidate controller (`fakeface serve`'s authenticated admin endpoint, or ``promote_from_log``
from a script), and the candidate replaces the live controller only when

1. each request id counts once (the last label sent for it), so one answer clicked 20 times
   weighs as one case;
2. the cases come from at least ``min_clients`` distinct clients (hashed peer address or token),
   so one visitor cannot outvote the validation set alone; and
3. the replay guard of `blackboard.feedback_learning` passes: the candidate's AUC and log-loss
   on held-out val votes are not worse than the live controller's by more than its margins.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pydantic
from pydantic import ConfigDict, Field

from blackboard.controllers.base import Controller
from blackboard.controllers.store import ReplaySet
from blackboard.feedback_learning import FeedbackLearner, PromotionConfig


@pydantic.dataclasses.dataclass(frozen=True, config=ConfigDict(extra="forbid"))
class PromotionRule:
    """What a batch of feedback must satisfy before it may become the live controller."""

    min_clients: int = Field(5, ge=1)  # distinct clients among the cases used
    min_cases: int = Field(10, ge=1)  # distinct request ids with usable votes
    guard: PromotionConfig = PromotionConfig()  # the replay check's margins


@dataclass(frozen=True)
class Evidence:
    """One request id's feedback: the votes of its faces (live controller columns) and the label."""

    request_id: str
    label: str  # "real" / "fake"
    client: str  # hashed client key ("" when the record predates client keys)
    agents: tuple[str, ...]  # columns of ``votes``
    votes: np.ndarray  # (F, A) calibrated p_fake, NaN = agent did not vote
    context: np.ndarray | None  # (F, K) case context, or None


@dataclass(frozen=True)
class PromotionResult:
    """What a promotion attempt did, in words an operator can act on."""

    promoted: bool
    controller: Controller  # the new live controller when promoted, else the unchanged one
    detail: str
    cases: int  # distinct request ids used
    clients: int  # distinct clients among them
    replay_auc_live: float | None = None
    replay_auc_candidate: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"promoted": self.promoted, "controller_version": self.controller.version, "detail": self.detail,
                "cases": self.cases, "clients": self.clients, "replay_auc_live": self.replay_auc_live,
                "replay_auc_candidate": self.replay_auc_candidate}


def _evidence(record: dict[str, Any]) -> Evidence | None:
    """The usable part of one log record, or None (no votes kept, bad label, no face it names).

    The evidence holds one row per face of the answer, row i for face i. A label given for one
    face (``face_index``) teaches that face's row only. A label for the whole picture teaches every
    face when it is "real"; "fake" says only that at least one face is, so on an answer of several
    faces it teaches nothing (the record stays in the log as a note).
    """
    label = record.get("label")
    ev = record.get("evidence")
    if label not in ("real", "fake") or not isinstance(ev, dict) or not ev.get("votes"):
        return None
    votes = np.array([[np.nan if v is None else float(v) for v in row] for row in ev["votes"]], dtype=np.float64)
    context = ev.get("context")
    ctx = None if context is None else np.array(
        [[np.nan if v is None else float(v) for v in row] for row in context], dtype=np.float64)
    agents = tuple(str(a) for a in ev.get("agents", ()))
    if votes.ndim != 2 or votes.shape[1] != len(agents) or (ctx is not None and len(ctx) != len(votes)):
        return None
    face = record.get("face_index")
    if face is not None:
        if isinstance(face, bool) or not isinstance(face, int) or not 0 <= face < len(votes):
            return None
        votes, ctx = votes[face:face + 1], None if ctx is None else ctx[face:face + 1]
    elif label == "fake" and len(votes) > 1:
        return None
    return Evidence(str(record["request_id"]), label, str(record.get("client", "")), agents, votes, ctx)


def read_evidence(path: str | os.PathLike[str]) -> list[Evidence]:
    """Every request id of a feedback log once (its last usable label), oldest first.

    Torn lines (a crash mid-write) are skipped, as `blackboard.feedback_log.FeedbackLog` does.
    """
    by_id: dict[str, Evidence] = {}
    for line in Path(path).read_bytes().splitlines():
        try:
            record = json.loads(line)
        except (json.JSONDecodeError, UnicodeDecodeError):
            continue
        if not isinstance(record, dict) or not record.get("request_id"):
            continue
        item = _evidence(record)
        if item is not None:
            by_id.pop(item.request_id, None)  # re-inserted: the order follows the last word
            by_id[item.request_id] = item
    return list(by_id.values())


def promote_from_feedback(live: Controller, replay: ReplaySet | None, evidence: Sequence[Evidence],
                          rule: PromotionRule = PromotionRule()) -> PromotionResult:
    """A candidate learned from ``evidence`` on top of ``live``, promoted only if the rule allows.

    Evidence whose columns are not the live controller's agents is left out (the case was
    decided by another controller).
    """
    usable = [e for e in evidence if e.agents == tuple(live.agents)]
    clients = len({e.client for e in usable})
    base = dict(controller=live, cases=len(usable), clients=clients)
    if len(usable) < rule.min_cases:
        return PromotionResult(False, detail=f"not promoted: {len(usable)} usable feedback case(s), at least "
                                             f"{rule.min_cases} needed", **base)
    if clients < rule.min_clients:
        return PromotionResult(False, detail=f"not promoted: the feedback comes from {clients} distinct "
                                             f"client(s), at least {rule.min_clients} needed", **base)
    if replay is None:
        return PromotionResult(False, detail="not promoted: the bundle has no replay set to check a candidate "
                                             "against; refit with `fakeface fit-controller`", **base)
    # One replay check after the whole batch: the guard judges the candidate, not each step.
    learner = FeedbackLearner(live, replay, PromotionConfig(
        max_auc_drop=rule.guard.max_auc_drop, max_logloss_rise=rule.guard.max_logloss_rise,
        check_every=len(usable), keep_rejected=rule.guard.keep_rejected))
    outcome = None
    for item in usable:
        present = np.isfinite(item.votes)
        outcome = learner.feedback(np.where(present, item.votes, 0.5), present, item.label, item.context)
    assert outcome is not None
    return PromotionResult(outcome.promoted, learner.live, outcome.detail, len(usable), clients,
                           outcome.replay_auc_live, outcome.replay_auc_candidate)


def promote_from_log(live: Controller, replay: ReplaySet | None, log_path: str | os.PathLike[str],
                     rule: PromotionRule = PromotionRule()) -> PromotionResult:
    """`promote_from_feedback` on every request id of a feedback log."""
    return promote_from_feedback(live, replay, read_evidence(log_path), rule)
