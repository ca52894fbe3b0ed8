"""Trust that follows the picture's condition: the binned context controller and its plumbing.

The synthetic stream has two agents whose strengths swap with the face's sharpness: A is a good
judge of sharp faces and guesses on blurred ones, B the reverse. Any context-free weighting must
trust each agent by its average, so it also listens to the guesser; a controller that sees the
sharpness can follow whichever agent is right here.
"""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from blackboard.controllers.base import controller_from_json, controller_kinds
from blackboard.controllers.ctxbins import BinnedConfig, BinnedLogOddsController
from blackboard.controllers.logodds import LogOddsController
from blackboard.controllers.store import ReplaySet
from blackboard.decision import decide_matrix
from blackboard.feedback_learning import replay_scores

AGENTS = ["A", "B"]


def sharp_blur_stream(n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(votes (n, 2), labels (n,), sharpness (n, 1)): A right on sharp faces, B on blurred ones."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    sharpness = rng.uniform(0.0, 6.0, n)
    blurred = sharpness < 3.0
    judge = np.where(y == 1, 1.5, -1.5)[:, None] + rng.normal(0.0, 1.0, (n, 2))
    guess = rng.normal(0.0, 1.0, (n, 2))
    logits = np.where(np.stack([blurred, ~blurred], axis=1), guess, judge)
    return 1.0 / (1.0 + np.exp(-logits)), y, sharpness[:, None]


@pytest.fixture(scope="module")
def fitted() -> BinnedLogOddsController:
    votes, y, ctx = sharp_blur_stream(3000, seed=1)
    return BinnedLogOddsController(AGENTS, BinnedConfig(context=("sharpness",), bins=3)).fit(votes, y, context=ctx)


def test_the_context_controller_reaches_a_lift_a_context_free_one_cannot(fitted):
    votes, y, ctx = sharp_blur_stream(3000, seed=1)
    plain = LogOddsController(AGENTS).fit(votes, y)
    test_votes, test_y, test_ctx = sharp_blur_stream(2000, seed=2)
    ours = roc_auc_score(test_y, fitted.predict_proba(test_votes, None, test_ctx))
    # The best any context-free weighting can do: logistic regression on the log-odds, fitted on test itself.
    from sklearn.linear_model import LogisticRegression

    logits = np.log(test_votes / (1 - test_votes))
    oracle = roc_auc_score(test_y, LogisticRegression().fit(logits, test_y).decision_function(logits))
    assert roc_auc_score(test_y, plain.predict_proba(test_votes)) <= oracle + 1e-3
    assert ours > oracle + 0.02, (ours, oracle)


def test_each_bin_trusts_the_agent_that_is_right_there(fitted):
    rows = fitted.bin_trust()["sharpness"]
    assert len(rows) == 3 and rows[0]["high"] == rows[1]["low"]
    blurry, sharp = rows[0]["weights"], rows[2]["weights"]
    for c in ("real", "fake"):
        assert blurry["B"][c] > blurry["A"][c] + 1.0 and sharp["A"][c] > sharp["B"][c] + 1.0
    # The explanation says how the condition moved each weight: up for A on a sharp face.
    shift = fitted.context_shift(np.array([0.9, 0.4]), None, np.array([5.5]))
    assert shift["A"] > 0.5 > -0.5 > shift["B"]
    # Unknown context falls in no bin: the weights are the context-free W.
    assert fitted.context_shift(np.array([0.9, 0.4]), None, np.array([np.nan])) == {"A": 0.0, "B": 0.0}


def test_round_trip_registry_and_decide(fitted):
    assert controller_kinds()["logodds-bins"] is BinnedLogOddsController
    restored = controller_from_json(fitted.to_json())
    votes, _, ctx = sharp_blur_stream(200, seed=3)
    assert restored.version == fitted.version
    np.testing.assert_allclose(restored.predict_proba(votes, None, ctx), fitted.predict_proba(votes, None, ctx))
    decided = decide_matrix(votes, AGENTS, restored, context=ctx)
    np.testing.assert_allclose(decided.p_fake, fitted.predict_proba(votes, None, ctx))
    with pytest.raises(ValueError, match="bins"):
        BinnedConfig(bins=1)


def test_the_replay_guard_judges_in_the_stored_conditions(fitted):
    votes, y, ctx = sharp_blur_stream(600, seed=4)
    with_ctx = ReplaySet(tuple(AGENTS), votes, y, context={"sharpness": ctx[:, 0]})
    restored = ReplaySet.from_json(with_ctx.to_json())
    np.testing.assert_allclose(restored.context["sharpness"], ctx[:, 0], atol=1e-6)
    auc_ctx, _ = replay_scores(fitted, restored)
    auc_blind, _ = replay_scores(fitted, ReplaySet(tuple(AGENTS), votes, y))
    assert auc_ctx > auc_blind + 0.03  # without the stored context the bins could not be used
    assert b"context" not in ReplaySet(tuple(AGENTS), votes, y).to_json()  # old sets keep their bytes


def test_trust_table_and_plot_show_a_different_leader_per_bin(fitted, tmp_path):
    from training.trust_plot import leading_agents, plot_trust_by_context, trust_by_context

    table = trust_by_context(fitted)
    assert leading_agents(table) == {"sharpness": ["B", "B", "A"]} or leading_agents(table)["sharpness"][::2] == ["B", "A"]
    path = plot_trust_by_context(fitted, tmp_path / "trust.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert plot_trust_by_context(LogOddsController(AGENTS), tmp_path / "none.png") is None


def test_stored_stacking_sees_the_same_context_and_round_trips():
    from blackboard.combine import CONTEXT_STACKING, baselines_from_json, baselines_to_json, fit_baselines
    from blackboard.combine_context import ContextStackingCombiner

    votes, y, ctx = sharp_blur_stream(3000, seed=5)
    baselines = fit_baselines(AGENTS, votes, y)
    baselines[CONTEXT_STACKING] = ContextStackingCombiner(AGENTS, ("sharpness",)).fit(votes, y, ctx)
    restored = baselines_from_json(baselines_to_json(baselines, fitted_on={}))
    test_votes, test_y, test_ctx = sharp_blur_stream(1000, seed=6)
    p = restored[CONTEXT_STACKING].predict_proba(test_votes, None, test_ctx)
    np.testing.assert_allclose(p, baselines[CONTEXT_STACKING].predict_proba(test_votes, None, test_ctx))
    # With the products of log-odds and context it can follow the agent that is right here too.
    assert roc_auc_score(test_y, p) > roc_auc_score(test_y, restored["stacking"].predict_proba(test_votes)) + 0.02


def test_the_borderline_band_and_error_rates_read_each_replay_face_in_its_condition(fitted):
    from blackboard.borderline import borderline_for, fit_borderline, val_error_rates

    votes, y, ctx = sharp_blur_stream(1500, seed=3)
    replay = ReplaySet(tuple(AGENTS), votes, y, context={"sharpness": ctx[:, 0]})
    p = fitted.predict_proba(votes, None, ctx)  # as fit-controller scores the replay rows
    assert borderline_for(fitted, replay) == fit_borderline(p, y, float(fitted.threshold))
    band = borderline_for(fitted, replay)
    rates = val_error_rates(fitted, replay, band)
    answered, t = ~band.inside(p, fitted.threshold), float(fitted.threshold)
    assert rates["false_alarm"] == pytest.approx(float((p >= t)[(y == 0) & answered].mean()))
    assert rates["miss_all"] == pytest.approx(float((p < t)[y == 1].mean()))
