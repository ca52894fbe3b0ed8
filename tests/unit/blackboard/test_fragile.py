"""A fragile verdict becomes "can't tell": the degraded-copy check on the board."""

from __future__ import annotations

import numpy as np
import pytest

from blackboard.board import Board
from blackboard.config import EnsembleConfig
from blackboard.case import UNCERTAIN
from blackboard.fragile import FRAGILE_PREFIX, FragileConfig, fit_margin, fragile_reasons, make_copies


class ScriptedBoard(Board):
    """Every agent answers from a script: p_fake per face for the faces, then for each copy."""

    def __init__(self, bundle, config, script):
        super().__init__(bundle, config)
        self.script = script  # list over [faces, copy 1, copy 2] of per-face p_fake
        self.seen: list[np.ndarray] = []

    def _vote(self, crops, deadline):
        self.seen = list(crops)
        p = np.concatenate(self.script)[:len(crops)]
        return {name: (p.copy(), 1.0) for name in self.agent_names}


def test_a_verdict_a_copy_flips_becomes_uncertain_with_its_reason(tiny_bundle, face_crop):
    # Face 0 is called fake, but its JPEG copy says real; face 1 holds under both copies.
    script = [np.array([0.80, 0.90]), np.array([0.30, 0.88]), np.array([0.79, 0.86])]
    board = ScriptedBoard(tiny_bundle, EnsembleConfig(fragile_check=True, fragile_margin=0.2), script)
    other = np.ascontiguousarray(face_crop[:, ::-1])
    case = board.classify_faces([face_crop, other])
    assert len(board.seen) == 6  # two faces and two copies of each, in one agent call
    assert not np.array_equal(board.seen[2], face_crop) and board.seen[2].shape == face_crop.shape
    first, second = (f.decision for f in case.faces)
    assert first.label == UNCERTAIN and first.reason.startswith(FRAGILE_PREFIX)
    assert "JPEG" in first.reason and "flips" in first.reason and first.p_fake == pytest.approx(0.8)
    assert second.label == "fake" and second.reason == ""
    # Off (the default), the same votes give the plain verdict and no copies are scored.
    plain = ScriptedBoard(tiny_bundle, EnsembleConfig(), script)
    assert [f.decision.label for f in plain.classify_faces([face_crop, other]).faces] == ["fake", "fake"]
    assert len(plain.seen) == 2


def test_a_large_move_without_a_flip_is_fragile_too():
    reasons = fragile_reasons(np.array([0.95, 0.95]), np.array([[0.6, 0.9]]), 0.5, 0.2, ["rescale0.5"])
    assert reasons[0].startswith(FRAGILE_PREFIX) and "more than 0.20" in reasons[0] and reasons[1] == ""


def test_copies_are_deterministic_and_names_checked(face_crop):
    a, b = make_copies([face_crop], ("jpeg70", "rescale0.5")), make_copies([face_crop], ("jpeg70", "rescale0.5"))
    assert all(np.array_equal(x, y) and x.shape == face_crop.shape for x, y in zip(a, b))
    with pytest.raises(ValueError, match="copies"):
        FragileConfig(copies=("h264",))


def test_fitted_margin_spends_the_abstention_budget_on_the_shakiest_faces():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 1000)
    p = np.clip(np.where(y == 1, 0.7, 0.3) + rng.normal(0, 0.15, 1000), 0.01, 0.99)
    # Wrong answers shake more under the copies than right ones.
    wrong = (p >= 0.5) != (y == 1)
    copies = p[None] + rng.normal(0, 1, (2, 1000)) * np.where(wrong, 0.15, 0.03)
    fit = fit_margin(p, copies, y, 0.5, abstain=0.10)
    assert 0.05 <= fit["abstain"] <= 0.12
    assert fit["accuracy_answered"] > fit["accuracy_all"] + 0.04


def test_the_response_shows_the_condition_and_how_it_moved_each_weight(face_crop):
    from blackboard.case import Case, Decision, FaceRecord, Vote
    from fakeface.rpc.fakeface.v1 import detector_pb2 as pb
    from fakeface.rpc_convert import case_to_proto
    from vision.context import face_context

    ctx = face_context(face_crop)
    face = FaceRecord(index=0, box=(0.0, 0.0, 224.0, 224.0), landmarks=[], confidence=1.0, context=ctx,
                      votes={"a": Vote("a", 0.9, 1.0, "sha", weight=0.7, context_shift=0.4)},
                      decision=Decision(label=UNCERTAIN, p_fake=0.8, threshold=0.5, combiner="ensemble",
                                        reason="fragile: test"))
    resp = pb.ClassifyResponse.FromString(case_to_proto(Case(faces=[face])).SerializeToString())
    got = resp.faces[0]
    assert dict(got.context) == pytest.approx(ctx, rel=1e-6) and got.votes[0].context_shift == pytest.approx(0.4)
    assert got.uncertain_reason == "fragile: test" and got.label == pb.LABEL_UNCERTAIN
