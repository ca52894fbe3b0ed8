"""The in-process/cluster client's start-up: a replica that fails leaves nothing deployed."""

from __future__ import annotations

import pytest

import blackboard.ensemble
from fakeface.client import ClientError, LocalDetector


class _FailingEnsemble:
    """Stands in for the Serve ensemble on a cluster: its replicas fail to start."""

    shut_down = 0

    def __init__(self, *args, **kwargs) -> None:
        pass

    def ready(self, timeout_s: float) -> bool:
        raise RuntimeError("agents failed to start: custom.keras does not load")

    def shutdown(self) -> None:
        type(self).shut_down += 1


def test_a_replica_that_fails_to_start_is_a_client_error_and_the_apps_are_removed(tiny_bundle, monkeypatch):
    monkeypatch.setattr(blackboard.ensemble, "Ensemble", _FailingEnsemble)
    with pytest.raises(ClientError, match="the models did not load: agents failed to start: custom.keras") as err:
        LocalDetector(tiny_bundle, ray_address="127.0.0.1:6379")
    assert err.value.exit_code == 1 and _FailingEnsemble.shut_down == 1
