"""Which failed Serve calls the ensemble retries: only those whose replica died or vanished."""

from __future__ import annotations

import grpc
import pytest
import ray.exceptions
from grpc.aio import AioRpcError, Metadata

from blackboard.ensemble import replica_lost


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
