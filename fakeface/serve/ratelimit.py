"""Per-client rate limiting: a token bucket per key (peer address or bearer token).

Each key gets ``burst`` tokens that refill at ``rate_per_s``; a call takes one token and is
refused when none is left (the front doors answer RESOURCE_EXHAUSTED / HTTP 429). The buckets
are a least-recently-used cache of ``max_keys``: the key idle longest is dropped first, so memory
stays bounded under many clients.
"""

from __future__ import annotations

import hashlib
import threading
import time
from typing import Callable

from cachetools import LRUCache
from pydantic import ConfigDict, PositiveFloat, PositiveInt
from pydantic.dataclasses import dataclass


@dataclass(frozen=True, config=ConfigDict(extra="forbid"))
class RateLimitConfig:
    """How fast one client may call a rate-limited method."""

    rate_per_s: PositiveFloat = 1.0  # tokens added per second per client (sustained rate)
    burst: PositiveInt = 10  # bucket size: calls a client may make at once after being idle
    max_keys: PositiveInt = 10_000  # clients tracked at once; the least recently seen are forgotten beyond it


class RateLimiter:
    """Token buckets keyed by client; thread-safe.

    Args:
        config: rate, burst and key bound.
        clock: monotonic seconds (injectable for tests).
    """

    def __init__(self, config: RateLimitConfig = RateLimitConfig(), clock: Callable[[], float] = time.monotonic) -> None:
        self.config = config
        self._clock = clock
        self._lock = threading.Lock()
        # key -> (tokens, last time); a forgotten key starts again with a full bucket.
        self._buckets: LRUCache[str, tuple[float, float]] = LRUCache(maxsize=config.max_keys)

    def allow(self, key: str) -> bool:
        """Takes one token from ``key``'s bucket; False when it is empty."""
        now = self._clock()
        with self._lock:
            tokens, last = self._buckets.get(key, (float(self.config.burst), now))
            tokens = min(float(self.config.burst), tokens + (now - last) * self.config.rate_per_s)
            allowed = tokens >= 1.0
            self._buckets[key] = (tokens - 1.0 if allowed else tokens, now)
            return allowed

    def retry_after_s(self, key: str) -> float:
        """Seconds until ``key`` has a token again (0 when it has one now)."""
        with self._lock:
            tokens, last = self._buckets.get(key, (float(self.config.burst), self._clock()))
        tokens = min(float(self.config.burst), tokens + (self._clock() - last) * self.config.rate_per_s)
        return max(0.0, (1.0 - tokens) / self.config.rate_per_s)


def client_key(peer: str, metadata: tuple[tuple[str, str], ...] | list | None) -> str:
    """The rate-limit key of a call: its bearer token when it sends one, else its peer host.

    The peer's port is dropped (a client reconnecting gets a new port but the same bucket).
    """
    for key, value in metadata or ():
        if key.lower() == "authorization" and value:
            token = value.partition(" ")[2].strip()
            return "token:" + hashlib.sha256(token.encode()).hexdigest()[:16]  # never keep tokens themselves
    host = peer.rsplit(":", 1)[0] if peer.count(":") >= 1 and not peer.endswith("]") else peer
    return "peer:" + host


def hashed_client(key: str) -> str:
    """A client key as stored in logs: counted as distinct, but no address kept in the clear."""
    return hashlib.sha256(key.encode()).hexdigest()[:16]
