"""A local Ray takes no fixed port: its two metrics servers get free ports chosen at each start."""

from __future__ import annotations

import os

from blackboard.ray_runtime import FIXED_PORT_ENVS, local_ray_env
from ports import bindable

RAY_DEFAULTS = {44217, 44227}  # AUTOSCALER_METRIC_PORT, DASHBOARD_METRIC_PORT in Ray 2.60


def test_metrics_ports_are_chosen_free_and_differ_between_starts(monkeypatch):
    chosen = []
    for _ in range(2):
        for name in FIXED_PORT_ENVS:
            monkeypatch.delenv(name, raising=False)
        local_ray_env()
        chosen.append({name: int(os.environ[name]) for name in FIXED_PORT_ENVS})
    for ports in chosen:
        assert len(set(ports.values())) == 2 and not RAY_DEFAULTS & set(ports.values())
        assert all(bindable(port) for port in ports.values())
    assert chosen[0] != chosen[1]


def test_ports_an_operator_exported_are_kept(monkeypatch):
    monkeypatch.setenv("AUTOSCALER_METRIC_PORT", "45001")
    monkeypatch.delenv("DASHBOARD_METRIC_PORT", raising=False)
    local_ray_env()
    assert os.environ["AUTOSCALER_METRIC_PORT"] == "45001"
    assert int(os.environ["DASHBOARD_METRIC_PORT"]) not in RAY_DEFAULTS | {45001}
