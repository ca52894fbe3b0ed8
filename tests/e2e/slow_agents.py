"""Making agents of a test ensemble late, in either layout: the delay knobs of the slow agent
classes in tests/conftest.py (`slow_agent_class`, `slow_set_class`)."""

from __future__ import annotations

import time
from contextlib import contextmanager
from typing import Any, Iterable, Iterator


def set_delay(ens: Any, agent: str, seconds: float) -> None:
    """From now on every call of ``agent`` answers ``seconds`` late (0: on time again)."""
    if ens.config.layout == "sets":
        answer = ens.handle("agents").set_delay.remote(agent, seconds).result(timeout_s=60)
    else:
        assert ens.config.replicas == 1  # a handle call reaches one replica
        answer = ens.handle(agent).set_delay.remote(seconds).result(timeout_s=60)
    assert answer == seconds


@contextmanager
def late(ens: Any, agents: Iterable[str], seconds: float) -> Iterator[None]:
    """``agents`` answer ``seconds`` late inside the block, on time again after it."""
    agents = list(agents)
    for agent in agents:
        set_delay(ens, agent, seconds)
    try:
        yield
    finally:
        for agent in agents:
            set_delay(ens, agent, 0.0)


def classify_with_a_late_agent(ens: Any, crop: Any, *, agent: str, delay_s: float, deadline_s: float) -> tuple[Any, float]:
    """(case, seconds it took) of one crop classified within ``deadline_s`` while ``agent`` answers
    ``delay_s`` late (warmed up first, so the time is the deadline's, not a first call's)."""
    ens.classify_faces([crop])
    with late(ens, [agent], delay_s):
        start = time.monotonic()
        case = ens.classify_faces([crop], deadline_s=deadline_s)
        return case, time.monotonic() - start
