"""Heat maps rendered where the models already are (`blackboard.heatmaps`).

`ReplicaHeatmaps` must draw exactly what a `GradCamRenderer` loading the bundle itself draws, from
the models it is handed (no second load). `RemoteHeatmaps` must merge every application's maps
per face, and an application that fails leaves only its own agents' maps out.
"""

from __future__ import annotations

import asyncio

import cv2
import numpy as np
import pytest

from agents.bundle import load_bundle
from blackboard.heatmaps import RemoteHeatmaps, ReplicaHeatmaps
from vision.gradcam import GradCamRenderer


def _pixels(png: bytes) -> np.ndarray:
    return cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_COLOR).astype(np.int16)


def test_replica_heat_maps_use_the_models_handed_in_and_match_a_fresh_renderer(tiny_bundle, face_crop):
    bundle = load_bundle(tiny_bundle)
    models = {name: bundle.load_model(name, runtime="keras") for name in ("custom", "lenet")}
    replica = ReplicaHeatmaps(bundle, models, withheld={})  # every map drawn, none declared uninformative
    crops = [face_crop, np.ascontiguousarray(face_crop[:, ::-1])]
    maps = asyncio.run(replica.render_async(crops))
    assert [set(m) for m in maps] == [{"custom", "lenet"}] * 2  # only the replica's own agents
    assert all(replica.renderer()._models[name] is model for name, model in models.items())  # no reload
    fresh = GradCamRenderer(tiny_bundle, withheld={}).render_png(crops, agents=["custom", "lenet"])
    for ours, theirs in zip(maps, fresh):
        for name in ("custom", "lenet"):
            assert ours[name].withheld == theirs[name].withheld  # a map spread evenly is withheld by both
            if ours[name].png:
                assert _pixels(ours[name].png).shape == (224, 224, 3)
                assert np.abs(_pixels(ours[name].png) - _pixels(theirs[name].png)).max() <= 2
    # A replica voting on ONNX Runtime hands in models without layers: Grad-CAM reads the Keras file.
    from_onnx = ReplicaHeatmaps(bundle, {name: bundle.load_model(name) for name in models}, withheld={})
    for ours, theirs in zip(asyncio.run(from_onnx.render_async(crops)), maps):
        assert {n: (m.withheld, m.png) for n, m in ours.items()} == {n: (m.withheld, m.png) for n, m in theirs.items()}
    # By default the registry's measured verdict holds: these agents' maps show no location.
    declared = ReplicaHeatmaps(bundle, models).render_png(crops[:1])[0]
    assert all(not tile.png and "shows no location" in tile.withheld for tile in declared.values())
    with pytest.raises(ValueError, match="at least one agent"):
        ReplicaHeatmaps(bundle, {})
    with pytest.raises(ValueError, match="received \\['nobody'\\]"):
        GradCamRenderer(bundle, models={"nobody": models["lenet"]})


class _Response:
    def __init__(self, maps=None, error=None):
        self.maps, self.error, self.cancelled = maps, error, False

    def result(self, timeout_s=None):
        if self.error is not None:
            raise self.error
        return self.maps

    def cancel(self):
        self.cancelled = True


class _Handle:
    """A Serve handle's shape (``handle.heatmaps.remote(crops)``), answering per crop."""

    def __init__(self, agents, error=None):
        self.agents, self.error, self.calls = agents, error, []
        self.heatmaps = self

    def remote(self, crops):
        self.calls.append(len(crops))
        maps = [{agent: f"{agent}:{i}".encode() for agent in self.agents} for i in range(len(crops))]
        self.last = _Response(maps, self.error)
        return self.last


def test_remote_heat_maps_merge_applications_per_face_and_skip_a_failed_one(face_crop):
    good, also, broken = _Handle(["custom"]), _Handle(["lenet"]), _Handle(["forensic"], RuntimeError("replica died"))
    remote = RemoteHeatmaps({"custom": good, "lenet": also, "forensic": broken}, timeout_s=5)
    maps = remote.render_png([face_crop, face_crop])
    assert maps == [{"custom": b"custom:0", "lenet": b"lenet:0"}, {"custom": b"custom:1", "lenet": b"lenet:1"}]
    assert broken.last.cancelled and not good.last.cancelled
    assert remote.render_png([]) == [] and good.calls == [2]  # no faces: no call at all
    with pytest.raises(ValueError, match="at least one agent application"):
        RemoteHeatmaps({})
    with pytest.raises(ValueError, match="received 0"):
        RemoteHeatmaps({"custom": good}, timeout_s=0)
