"""`blackboard.config`: the deployment config is validated where it is declared."""

from __future__ import annotations

import dataclasses

import pytest

from blackboard.config import EnsembleConfig


@pytest.mark.parametrize("kwargs, field, words", [
    ({"replicas": 0}, "replicas", "greater than or equal to 1"),
    ({"replicas": 2, "max_replicas": 1}, "", "max_replicas must be >= replicas (2), received 1"),
    ({"max_batch_size": 0}, "max_batch_size", "greater than or equal to 1"),
    ({"deadline_s": 0}, "deadline_s", "greater than 0"),
    ({"num_cpus_per_actor": -0.5}, "num_cpus_per_actor", "greater than or equal to 0"),
    ({"agents": ()}, "agents", "at least 1 item"),
    ({"layout": "pool"}, "layout", "'sets' or 'agents'"),
    ({"replica": 2}, "replica", "Unexpected keyword argument"),
])
def test_bad_config_is_refused_saying_what_was_received(kwargs, field, words):
    with pytest.raises(ValueError) as info:
        EnsembleConfig(**kwargs)
    text = str(info.value)
    assert field in text and words in text, text
    received = next(iter(kwargs.values())) if len(kwargs) == 1 else None
    if received is not None:
        assert f"input_value={received!r}" in text, text


def test_it_stays_a_dataclass_that_replace_revalidates():
    config = EnsembleConfig(replicas=2, agents=("forensic",))
    assert dataclasses.asdict(config)["agents"] == ("forensic",)
    assert dataclasses.replace(config, max_batch_size=4).max_batch_size == 4
    with pytest.raises(ValueError, match="max_batch_size"):
        dataclasses.replace(config, max_batch_size=0)
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.replicas = 3  # type: ignore[misc]
