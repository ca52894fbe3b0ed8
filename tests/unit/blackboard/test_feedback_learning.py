"""Feedback learning behind a promotion guard, and the per-client rate limit on Feedback."""

from __future__ import annotations

import numpy as np
import pytest

from blackboard.feedback_learning import FeedbackLearner, PromotionConfig, replay_auc, replay_scores
from fakeface.serve.ratelimit import RateLimitConfig, RateLimiter, client_key
from vote_streams import expert_stream, live_and_replay


@pytest.fixture(scope="module")
def setup():
    return (*live_and_replay(2000, 11, fit=1500), expert_stream(600, seed=12))


def test_guard_refuses_a_candidate_that_lowers_replay_auc_and_logs_why(setup, caplog):
    live, replay, (votes, y, _) = setup
    # Only the AUC criterion here (the log-loss one would refuse these candidates earlier).
    learner = FeedbackLearner(live, replay, PromotionConfig(max_auc_drop=0.005, max_logloss_rise=10.0, check_every=50))
    outcomes = [learner.feedback(row, np.ones(2, bool), int(1 - label)) for row, label in zip(votes, y)]  # wrong labels
    refused = [o for o in outcomes if o.applied and not o.promoted and o.replay_auc_candidate is not None]
    assert refused, "poisoned candidates must be refused"
    assert all(o.replay_auc_live - o.replay_auc_candidate > 0.005 for o in refused)
    assert "refused" in caplog.text and learner.rejected
    # The live controller never moved more than the allowed drop on replay.
    assert replay_auc(learner.live, replay) >= replay_auc(live, replay) - 0.005


def test_default_guard_also_refuses_on_replay_log_loss(setup):
    live, replay, (votes, y, _) = setup
    learner = FeedbackLearner(live, replay, PromotionConfig(check_every=20))
    outcomes = [learner.feedback(row, np.ones(2, bool), int(1 - label)) for row, label in zip(votes[:200], y[:200])]
    assert any(not o.promoted for o in outcomes) and "log-loss" in learner.rejected[-1].reason
    assert replay_scores(learner.live, replay)[1] <= replay_scores(live, replay)[1] + 0.005


def test_guard_promotes_honest_feedback(setup):
    live, replay, (votes, y, _) = setup
    learner = FeedbackLearner(live, replay, PromotionConfig(check_every=10))
    outcomes = [learner.feedback(row, np.ones(2, bool), int(label)) for row, label in zip(votes[:100], y[:100])]
    assert any(o.promoted for o in outcomes)
    assert learner.live.feedback_count > 0 and learner.live.version != live.version


def test_without_a_replay_set_feedback_is_not_applied(setup):
    live, _, (votes, y, _) = setup
    outcome = FeedbackLearner(live, None).feedback(votes[0], np.ones(2, bool), "fake")
    assert not outcome.applied and "no replay set" in outcome.detail


def test_token_bucket_per_client():
    now = [0.0]
    limiter = RateLimiter(RateLimitConfig(rate_per_s=1.0, burst=3), clock=lambda: now[0])
    assert [limiter.allow("a") for _ in range(4)] == [True, True, True, False]
    assert limiter.allow("b")  # another client has its own bucket
    assert limiter.retry_after_s("a") == pytest.approx(1.0)
    now[0] += 1.0
    assert limiter.allow("a") and not limiter.allow("a")


def test_client_key_prefers_the_token_and_drops_the_port():
    assert client_key("ipv4:10.0.0.1:5555", []) == client_key("ipv4:10.0.0.1:6666", None)
    keyed = client_key("ipv4:10.0.0.1:5555", [("authorization", "Bearer s3cret")])
    assert keyed.startswith("token:") and "s3cret" not in keyed
