"""Which failed Serve calls the ensemble retries (only those whose replica died or vanished), and how:
back-off doubling to its cap, never past the case's deadline. The clock is a fake one, so the
waits are exact and the tests take no time."""

from __future__ import annotations

import grpc
import pytest
import ray.exceptions
from grpc.aio import AioRpcError, Metadata

from blackboard.ensemble import RETRY_BACKOFF_MAX_S, RETRY_BACKOFF_S, call_until_deadline, replica_lost


def _rpc_error(code: grpc.StatusCode) -> AioRpcError:
    return AioRpcError(code, Metadata(), Metadata(), details="from a replica")


@pytest.mark.parametrize("err, lost", [
    (ray.exceptions.ActorDiedError(), True),
    (ray.exceptions.ActorUnavailableError("unavailable", b"0" * 16), True),
    (_rpc_error(grpc.StatusCode.UNAVAILABLE), True),
    # Deterministic: would fail on every replica until the deadline (a 6 MB screenshot over
    # Serve's 4 MiB cap, a crowd bigger than a micro-batch). Raised at once instead.
    (_rpc_error(grpc.StatusCode.RESOURCE_EXHAUSTED), False),
    (RuntimeError("Size of item is greater than max_batch_size."), False),
    (ValueError("a bug in a deployment"), False),
], ids=["died", "unavailable", "grpc-unavailable", "grpc-too-large", "batch-too-big", "bug"])
def test_only_a_lost_replica_is_retried(err, lost):
    assert replica_lost(err) is lost


class Clock:
    """A monotonic clock that moves only when slept on or when a call takes time."""

    def __init__(self) -> None:
        self.now = 100.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


class Response:
    """A Serve response that fails with ``outcome`` (an exception) or answers it after ``took`` s."""

    def __init__(self, clock: Clock, outcome: object, took: float = 0.0) -> None:
        self.clock, self.outcome, self.took, self.cancelled = clock, outcome, took, False

    def result(self, timeout_s: float) -> object:
        if isinstance(self.outcome, BaseException):
            raise self.outcome
        if self.took > timeout_s:
            self.clock.now += timeout_s
            raise TimeoutError
        self.clock.now += self.took
        return self.outcome

    def cancel(self) -> None:
        self.cancelled = True


def _calls(clock: Clock, outcomes: list[object], took: float = 0.0) -> tuple[list[Response], object]:
    """A ``call`` that answers with the next outcome each time, and the responses it made."""
    made: list[Response] = []

    def call() -> Response:
        made.append(Response(clock, outcomes[min(len(made), len(outcomes) - 1)], took))
        return made[-1]

    return made, call


def test_a_lost_replica_is_asked_again_after_a_doubling_back_off():
    clock = Clock()
    first, second = ray.exceptions.ActorDiedError(), _rpc_error(grpc.StatusCode.UNAVAILABLE)
    made, call = _calls(clock, [first, second, "votes"])
    seen: list[BaseException] = []
    answer = call_until_deadline(call, clock() + 5.0, on_lost=seen.append, clock=clock, sleep=clock.sleep)
    assert answer == (True, "votes", second)
    assert len(made) == 3 and seen == [first, second]
    assert clock.slept == pytest.approx([RETRY_BACKOFF_S, 2 * RETRY_BACKOFF_S])


def test_the_back_off_stops_doubling_at_its_cap_and_never_sleeps_past_the_deadline():
    clock = Clock()
    made, call = _calls(clock, [ray.exceptions.ActorDiedError()])
    answered, answer, last = call_until_deadline(call, 110.0, clock=clock, sleep=clock.sleep)
    assert (answered, answer) == (False, None) and isinstance(last, ray.exceptions.ActorDiedError)
    # 0.1 doubling to the 2 s cap, then what is left of the 10 s: the call after it is never made.
    assert clock.slept == pytest.approx([0.1, 0.2, 0.4, 0.8, 1.6, 2.0, 2.0, 2.0, 0.9])
    assert max(clock.slept) == RETRY_BACKOFF_MAX_S and len(made) == len(clock.slept) and clock.now == 110.0


def test_any_other_failure_is_raised_at_once():
    clock = Clock()
    made, call = _calls(clock, [ValueError("a bug in a deployment"), "votes"])
    seen: list[BaseException] = []
    with pytest.raises(ValueError, match="a bug in a deployment"):
        call_until_deadline(call, clock() + 5.0, on_lost=seen.append, clock=clock, sleep=clock.sleep)
    assert len(made) == 1 and clock.slept == [] and seen == []


def test_a_call_still_running_at_the_deadline_is_cancelled_not_retried():
    clock = Clock()
    made, call = _calls(clock, ["votes"], took=9.0)
    assert call_until_deadline(call, clock() + 2.5, clock=clock, sleep=clock.sleep) == (False, None, None)
    assert len(made) == 1 and made[0].cancelled and clock.now == 102.5


def test_no_call_is_made_once_the_deadline_has_passed():
    clock = Clock()
    made, call = _calls(clock, ["votes"])
    assert call_until_deadline(call, clock() - 0.1, clock=clock, sleep=clock.sleep) == (False, None, None)
    assert made == []
