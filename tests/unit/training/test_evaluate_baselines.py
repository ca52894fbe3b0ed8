"""Evaluate reports every baseline and the ablation from the bundle alone (no --fit-manifest)."""

from __future__ import annotations

import shutil

import numpy as np

from agents.bundle import load_bundle
from blackboard.combine import baselines_to_json, fit_baselines
from blackboard.controllers.logodds import LogOddsController
from blackboard.controllers.store import ReplaySet, save_controller
from training.systems import ablation, build_systems


def test_stored_baselines_and_ensemble_are_scored_without_fitting_data(tiny_bundle, tmp_path):
    bundle_dir = shutil.copytree(tiny_bundle, tmp_path / "bundle")
    agents = load_bundle(bundle_dir).agent_names
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 400)
    votes = np.clip(y[:, None] * 0.3 + rng.uniform(0.1, 0.7, (400, len(agents))), 0.01, 0.99)
    controller = LogOddsController(agents).fit(votes[:300], y[:300])
    save_controller(bundle_dir, controller, baselines=baselines_to_json(fit_baselines(agents, votes[:300], y[:300]),
                                                                        fitted_on={}),
                    replay=ReplaySet(tuple(agents), votes[300:], y[300:]))
    systems, unavailable, used = build_systems(bundle=load_bundle(bundle_dir), votes=votes[300:], fit_votes=None,
                                               fit_labels=None, fit_description="none: folder input")
    names = [s.name for s in systems]
    assert names == [*agents, "majority", "mean", "stacking", "ensemble"] and unavailable == {}
    assert "stored in the bundle" in systems[len(agents) + 2].note
    assert used.version == controller.version
    rows = ablation(y[300:], votes[300:], agents, used)
    assert set(rows) == set(agents) and all(np.isfinite(r["delta_auc"]) for r in rows.values())


def test_a_bundle_without_stored_baselines_says_how_to_get_them(tiny_bundle):
    agents = load_bundle(tiny_bundle).agent_names
    systems, unavailable, _ = build_systems(bundle=load_bundle(tiny_bundle), votes=np.full((4, len(agents)), 0.5),
                                            fit_votes=None, fit_labels=None, fit_description="none")
    assert [s.name for s in systems][-2:] == ["majority", "mean"]  # need no fitting
    assert {"stacking", "ensemble"} == set(unavailable)
    assert "fakeface fit-controller" in unavailable["stacking"]
