"""The log-odds controller: per-(agent, spoken class) weights learned from rewarded decisions.

The synthetic stream has two one-class experts. When A says "fake" it is always right (it calls
60 % of the fakes fake, confidently) and otherwise it murmurs "real" at the same weak confidence
on any case; B is the mirror image for "real". Each alone ranks only the cases it is sure of, so
only weights that depend on the class an agent speaks for can combine them well.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from blackboard.controllers.base import controller_from_json
from blackboard.controllers.qtrust import QController
from blackboard.controllers.logodds import LogOddsConfig, LogOddsController
from vote_streams import AGENTS, expert_stream

@pytest.fixture(scope="module")
def fitted() -> LogOddsController:
    votes, y, _ = expert_stream(3000, seed=1)
    return LogOddsController(AGENTS).fit(votes, y)


def test_weights_name_each_agents_class_and_the_ensemble_beats_both(fitted):
    w = fitted.weights()
    assert w["A"]["fake"] > w["B"]["fake"] + 0.5, w
    assert w["B"]["real"] > w["A"]["real"] + 0.5, w
    votes, y, _ = expert_stream(3000, seed=2)
    ours = roc_auc_score(y, fitted.predict_proba(votes))
    singles = [roc_auc_score(y, votes[:, j]) for j in range(2)]
    assert ours > max(singles) + 0.05, (ours, singles)
    # Fitting logs a rising log-likelihood reward per epoch.
    assert fitted.history[-1]["mean_loglik"] > fitted.history[0]["mean_loglik"]


def test_reinforce_reward_learns_the_same_direction():
    votes, y, _ = expert_stream(3000, seed=3)
    ctrl = LogOddsController(AGENTS, LogOddsConfig(reward="reinforce", epochs=10)).fit(votes, y)
    w = ctrl.weights()
    assert w["A"]["fake"] > w["B"]["fake"] and w["B"]["real"] > w["A"]["real"], w


def test_explain_credits_the_agent_that_carried_the_decision(fitted):
    shares = fitted.explain(np.array([0.9, 0.6]))  # A sure it is fake, B murmurs fake
    assert shares["A"] > 0.8 and abs(sum(shares.values()) - 1) < 1e-9
    only_b = fitted.explain(np.array([0.9, 0.1]), np.array([False, True]))
    assert only_b == {"A": 0.0, "B": 1.0}


def test_online_updates_move_weight_off_an_agent_gone_noisy(fitted):
    votes, y, _ = expert_stream(1500, seed=4, noisy="A")
    ctrl = fitted
    for row, label in zip(votes, y):
        ctrl = ctrl.online_update(row, None, int(label))
    assert ctrl.weights()["A"]["fake"] < fitted.weights()["A"]["fake"] - 0.3
    assert ctrl.feedback_count == 1500 and fitted.feedback_count == 0  # the original is untouched


def test_context_slopes_are_learned_and_round_trip():
    votes, y, ctx = expert_stream(2000, seed=5)
    # A is only an expert when the context is high: elsewhere its votes are noise.
    rng = np.random.default_rng(0)
    low = ctx[:, 0] < 0
    votes[low, 0] = rng.uniform(0.01, 0.99, int(low.sum()))
    ctrl = LogOddsController(AGENTS, LogOddsConfig(context=("blur",))).fit(votes, y, context=ctx)
    assert ctrl.context_names == ("blur",)
    assert ctrl.summary()["context_slopes"]["blur"]["A"]["fake"] > 0.2
    plain = LogOddsController(AGENTS).fit(votes, y)
    test_votes, test_y, test_ctx = expert_stream(2000, seed=6)
    low = test_ctx[:, 0] < 0
    test_votes[low, 0] = rng.uniform(0.01, 0.99, int(low.sum()))
    with_ctx = roc_auc_score(test_y, ctrl.predict_proba(test_votes, None, test_ctx))
    assert with_ctx > roc_auc_score(test_y, plain.predict_proba(test_votes)) + 0.01
    restored = controller_from_json(ctrl.to_json())
    assert isinstance(restored, LogOddsController) and restored.version == ctrl.version
    np.testing.assert_allclose(restored.predict_proba(test_votes, None, test_ctx),
                               ctrl.predict_proba(test_votes, None, test_ctx))
    # Unknown context (None) is the mean case, not an error.
    assert np.isfinite(ctrl.predict_proba(test_votes)).all()


def test_tables_of_other_kinds_and_edited_tables_are_refused(fitted):
    obj = json.loads(fitted.to_json())
    obj["w"][0][1] = 5.0
    with pytest.raises(ValueError, match="edited by hand"):
        controller_from_json(json.dumps(obj))
    obj = json.loads(fitted.to_json())
    obj["kind"] = "oracle"
    with pytest.raises(ValueError, match="kind"):
        controller_from_json(json.dumps(obj))
    with pytest.raises(ValueError, match="not a QController"):
        QController.from_json(fitted.to_json())


def test_one_class_fit_is_refused_clearly():
    votes, _, _ = expert_stream(50, seed=7)
    with pytest.raises(ValueError, match="one class"):
        LogOddsController(AGENTS).fit(votes, np.ones(50, int))


def test_a_context_list_from_json_reads_as_a_tuple():
    assert LogOddsConfig(context=["blur", "sharpness"]).context == ("blur", "sharpness")
