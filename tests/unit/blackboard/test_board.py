"""`blackboard.board`: the deployment config is validated where it is declared."""

from __future__ import annotations

import pytest

from blackboard.board import EnsembleConfig


@pytest.mark.parametrize("kwargs, message", [
    ({"replicas": 0}, "replicas must be >= 1"),
    ({"replicas": 2, "max_replicas": 1}, "max_replicas must be >= replicas"),
    ({"max_batch_size": 0}, "max_batch_size must be >= 1"),
    ({"deadline_s": 0}, "deadline_s > 0"),
    ({"num_cpus_per_actor": -0.5}, "actor resources must be >= 0"),
    ({"agents": ()}, "name at least one agent"),
])
def test_bad_config_is_refused_saying_what_was_received(kwargs, message):
    with pytest.raises(ValueError, match=message):
        EnsembleConfig(**kwargs)

