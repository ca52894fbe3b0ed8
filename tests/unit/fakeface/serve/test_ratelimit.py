"""Per-client token buckets: bounded memory forgets the client seen longest ago, not the oldest one."""

from __future__ import annotations

import pytest

from fakeface.serve.ratelimit import RateLimitConfig, RateLimiter


def test_the_least_recently_seen_client_is_forgotten_first():
    now = [0.0]
    limiter = RateLimiter(RateLimitConfig(rate_per_s=0.001, burst=1, max_keys=2), clock=lambda: now[0])
    assert limiter.allow("a") and limiter.allow("b")
    assert not limiter.allow("a")  # "a" is seen again: now the most recent of the two
    assert limiter.allow("c")  # a third client: "b", seen longest ago, is dropped
    assert not limiter.allow("a")  # "a" kept its empty bucket
    assert limiter.allow("b")  # "b" was forgotten: it starts again with a full bucket


def test_retry_after_counts_down_with_the_refill():
    now = [0.0]
    limiter = RateLimiter(RateLimitConfig(rate_per_s=0.5, burst=1), clock=lambda: now[0])
    assert limiter.allow("a") and not limiter.allow("a")
    assert limiter.retry_after_s("a") == pytest.approx(2.0)
    now[0] = 1.5
    assert limiter.retry_after_s("a") == pytest.approx(0.5)
    assert limiter.retry_after_s("never-seen") == 0.0
