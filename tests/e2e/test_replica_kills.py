"""No silent hangs: the agent-set replica killed at random points of calls, again and again.

Four clients call the ensemble without pause, each call with a short deadline; meanwhile the
agent-set replica is killed (as by the OOM killer: `ray.kill`) at a random moment, Serve replaces
it, and the next kill follows once the replacement is up. Every call must end, answered or
failed, within its deadline + 1 s (issue 26: once in six kills, all four in-flight calls hung).
"""

from __future__ import annotations

import collections
import os
import random
import threading
import time

import pytest

from blackboard.board import DeadlineExceeded

pytestmark = pytest.mark.slow
# The goal is >= 30 kills: `FAKEFACE_KILLS=30 pytest -s tests/e2e/test_replica_kills.py` (BENCHMARKS.md).
# The suite kills twice (each replacement takes ~10 s on 2 cores): enough to kill again once a
# replacement is serving calls; FAKEFACE_KILLS raises it.
KILLS = int(os.environ.get("FAKEFACE_KILLS", "2"))
DEADLINE_S = 4.0
CLIENTS = 4


def test_calls_end_within_their_deadline_while_the_replica_is_killed_at_random(set_ensemble, face_crop):
    import ray

    set_ensemble.classify_faces([face_crop], deadline_s=60)  # warm
    rng = random.Random(26)
    stop = threading.Event()
    lock = threading.Lock()
    outcomes: collections.Counter[str] = collections.Counter()
    late: list[tuple[float, str]] = []

    def client() -> None:
        while not stop.is_set():
            began = time.monotonic()
            try:
                case = set_ensemble.classify_faces([face_crop], deadline_s=DEADLINE_S)
                what = "degraded" if case.degraded else "ok"
            except DeadlineExceeded:
                what = "deadline"
            except Exception as err:  # noqa: BLE001 - counted: any other failure is a finding too
                what = f"error:{type(err).__name__}"
            took = time.monotonic() - began
            with lock:
                outcomes[what] += 1
                if took > DEADLINE_S + 1.0:
                    late.append((round(took, 2), what))

    threads = [threading.Thread(target=client, daemon=True) for _ in range(CLIENTS)]
    for thread in threads:
        thread.start()
    try:
        for _ in range(KILLS):
            time.sleep(rng.uniform(0.0, 1.5))  # a random point of the calls in flight
            victim = rng.choice(set_ensemble.actors("agents"))
            ray.kill(victim, no_restart=True)
            # The next kill waits for Serve's replacement: a new live replica, RUNNING.
            until = time.monotonic() + 180
            while not [a for a in set_ensemble.actors("agents") if a._actor_id != victim._actor_id]:
                assert time.monotonic() < until, "Serve did not replace the killed replica"
                time.sleep(0.2)
            assert set_ensemble.ready(timeout_s=180), "the replacement did not become RUNNING"
    finally:
        stop.set()
        for thread in threads:
            thread.join(DEADLINE_S + 30)
    print(f"{KILLS} kills, {sum(outcomes.values())} calls: {dict(outcomes)}; past deadline + 1 s: {late}")
    assert not any(t.is_alive() for t in threads), "a call never returned"
    assert late == [], late
    assert not [k for k in outcomes if k.startswith("error:")], outcomes
    assert outcomes["ok"] > 0
