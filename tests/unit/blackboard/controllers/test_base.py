"""The RL controller: per-class trust learning, calibration, persistence, online updates, rollback.

Synthetic vote streams stand in for agents with known strengths. "Expert on real" means the
agent's *real verdicts* are nearly always right (the trust Q[agent][c] estimates how often an
agent is right when it says c): agent A never calls a fake real but misreads a tenth of the reals
as fake; agent B never calls a real fake but misses half the fakes; C is a coin with a slight
bias toward the truth. Their confidences carry no information, so only learned trust can tell
a reliable verdict from an unreliable one.
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from sklearn.metrics import log_loss

from agents.bundle import BundleError, load_bundle
from blackboard.combine import MajorityCombiner, MeanCombiner
from blackboard.calibration import choose_threshold, logit
from blackboard.controllers.base import f_half
from blackboard.controllers.qtrust import ControllerConfig, QController
from blackboard.controllers.store import (
    ReplaySet, list_controller_versions, load_baselines, load_controller, load_replay, rollback_controller,
    save_controller,
)

AGENTS = ["A", "B", "C"]
# (accuracy when the truth is real, accuracy when the truth is fake) per agent.
STRENGTHS = [(0.90, 0.99), (0.995, 0.50), (0.55, 0.55)]


def vote_stream(n: int, seed: int, strengths=STRENGTHS) -> tuple[np.ndarray, np.ndarray]:
    """(votes (n, A) p_fake, labels (n,)) with each agent right at its class-wise accuracy."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, n)
    votes = np.empty((n, len(strengths)))
    for j, (acc_real, acc_fake) in enumerate(strengths):
        correct = rng.random(n) < np.where(labels == 0, acc_real, acc_fake)
        verdict = np.where(correct, labels, 1 - labels)
        confidence = rng.uniform(0.55, 0.95, n)
        votes[:, j] = np.where(verdict == 1, confidence, 1.0 - confidence)
    return votes, labels


@pytest.fixture(scope="module")
def streams():
    return vote_stream(2000, seed=1), vote_stream(3000, seed=2)


@pytest.fixture(scope="module")
def fitted(streams):
    (votes, labels), _ = streams
    return QController(AGENTS).fit(votes, labels)


def accuracy(p: np.ndarray, labels: np.ndarray, threshold: float) -> float:
    return float(((p >= threshold).astype(int) == labels).mean())


def test_trust_beats_majority_and_mean_on_held_out_stream(fitted, streams):
    _, (votes, labels) = streams
    ours = accuracy(fitted.predict_proba(votes), labels, fitted.threshold)
    majority = accuracy(MajorityCombiner(AGENTS).predict_proba(votes), labels, 0.5)
    mean = accuracy(MeanCombiner(AGENTS).predict_proba(votes), labels, 0.5)
    assert ours >= majority + 0.05, (ours, majority)
    assert ours >= mean + 0.05, (ours, mean)


def test_learned_trust_ranks_the_class_experts_first(fitted):
    trust = fitted.trust()
    by_real = sorted(AGENTS, key=lambda a: trust[a]["real"], reverse=True)
    by_fake = sorted(AGENTS, key=lambda a: trust[a]["fake"], reverse=True)
    assert by_real[0] == "A" and by_fake[0] == "B", trust
    # Weights follow trust and are never negative.
    weights = fitted.weights()
    assert all(w >= 0 for row in weights.values() for w in row.values())
    assert weights["A"]["real"] > weights["C"]["real"]


def test_exploration_is_logged_per_epoch(fitted):
    history = fitted.history
    assert [h["epoch"] for h in history] == [1, 2, 3]
    assert history[0]["explored"] > 0
    assert history[1]["epsilon"] < history[0]["epsilon"]
    # Greedy announcements are rewarded more than random ones once trust is learned.
    assert history[-1]["mean_reward_greedy"] > history[-1]["mean_reward_explore"]


def test_calibration_improves_log_loss_over_raw_score(fitted, streams):
    _, (votes, labels) = streams
    raw = np.clip(fitted.raw_score(votes), 1e-6, 1 - 1e-6)
    calibrated = np.clip(fitted.predict_proba(votes), 1e-6, 1 - 1e-6)
    assert log_loss(labels, calibrated) < log_loss(labels, raw) - 0.01


def test_missing_votes_drop_out_and_explain_names_the_weights(fitted):
    row = np.array([0.2, 0.9, 0.6])
    only_a = np.array([True, False, False])
    # With only A present the decision is A's (calibrated) opinion: real.
    assert fitted.predict_proba(row[None], only_a[None])[0] < 0.5
    shares = fitted.explain(row, only_a)
    assert shares == {"A": 1.0, "B": 0.0, "C": 0.0}
    full = fitted.explain(row)
    assert abs(sum(full.values()) - 1.0) < 1e-9 and all(v >= 0 for v in full.values())
    # No vote at all: no opinion.
    assert fitted.predict_proba(row[None], np.zeros((1, 3), bool))[0] == 0.5


def test_threshold_rules(streams):
    (votes, labels), _ = streams
    fixed = QController(AGENTS, ControllerConfig(threshold_rule="fixed:0.5")).fit(votes, labels)
    assert fixed.threshold == 0.5
    p = fixed.predict_proba(votes)
    # Each rule's threshold is at least as good for its own criterion as any threshold on a grid.
    f05 = choose_threshold(p, labels, "f0.5")
    youden = choose_threshold(p, labels, "youden")
    grid = np.linspace(0.05, 0.95, 19)

    def j_stat(t):
        pred = p >= t
        return pred[labels == 1].mean() - pred[labels == 0].mean()

    assert f_half(labels, p >= f05) >= max(f_half(labels, p >= t) for t in grid) - 1e-9
    assert j_stat(youden) >= max(j_stat(t) for t in grid) - 1e-9
    with pytest.raises(ValueError, match="threshold_rule"):
        ControllerConfig(threshold_rule="fixed:2")
    with pytest.raises(ValueError, match=r"votes must have shape \(N, 3\)"):
        fixed.predict_proba(np.zeros((4, 2)))


def test_json_round_trip_and_edited_table_refused(fitted, streams):
    _, (votes, _) = streams
    restored = QController.from_json(fitted.to_json())
    assert restored.version == fitted.version
    np.testing.assert_allclose(restored.predict_proba(votes), fitted.predict_proba(votes))
    obj = json.loads(fitted.to_json())
    obj["q"][2][1] = 0.99  # make C look like a fake expert
    with pytest.raises(ValueError, match="edited by hand"):
        QController.from_json(json.dumps(obj).encode())


def test_online_update_returns_a_copy_and_moves_trust(fitted):
    before_q = fitted.q.copy()
    before_version = fitted.version
    row, present = np.array([0.9, 0.8, 0.3]), np.array([True, True, True])
    updated = fitted.online_update(row, present, "real")  # A and B said fake: both wrong
    assert fitted.version == before_version and np.array_equal(fitted.q, before_q)
    assert updated.version != before_version and updated.counter == fitted.counter + 1
    assert updated.trust()["A"]["fake"] < fitted.trust()["A"]["fake"]
    assert updated.trust()["C"]["real"] > fitted.trust()["C"]["real"]


@pytest.fixture()
def bundle_copy(tiny_bundle, tmp_path):
    return shutil.copytree(tiny_bundle, tmp_path / "bundle")


def tiny_controller(agents, seed: int) -> QController:
    votes, labels = vote_stream(300, seed=seed)
    return QController(agents, ControllerConfig(seed=seed)).fit(votes, labels)


def test_save_load_round_trip_gives_equal_predictions(bundle_copy, streams):
    agents = load_bundle(bundle_copy).agent_names
    controller = tiny_controller(agents, seed=3)
    bundle = save_controller(bundle_copy, controller)
    assert bundle.extra("controller")["file"] == "controller/v1.json"
    loaded = load_controller(bundle)
    _, (votes, _) = streams
    np.testing.assert_allclose(loaded.predict_proba(votes), controller.predict_proba(votes))
    assert loaded.version == controller.version


def test_tampered_controller_file_is_refused(bundle_copy):
    agents = load_bundle(bundle_copy).agent_names
    save_controller(bundle_copy, tiny_controller(agents, seed=3))
    path = bundle_copy / "controller" / "v1.json"
    obj = json.loads(path.read_text())
    obj["threshold"] = 0.01
    path.write_text(json.dumps(obj))
    with pytest.raises(BundleError, match="Checksum mismatch"):
        load_bundle(bundle_copy)


def test_rollback_restores_an_earlier_version(bundle_copy):
    agents = load_bundle(bundle_copy).agent_names
    first, second = tiny_controller(agents, seed=3), tiny_controller(agents, seed=4)
    save_controller(bundle_copy, first)
    save_controller(bundle_copy, second)
    versions = list_controller_versions(bundle_copy)
    assert [v["n"] for v in versions] == [1, 2] and versions[1]["active"]
    assert load_controller(load_bundle(bundle_copy)).version == second.version
    bundle = rollback_controller(bundle_copy)  # to the one before the active
    assert load_controller(bundle).version == first.version
    bundle = rollback_controller(bundle_copy, "v2")
    assert load_controller(bundle).version == second.version
    with pytest.raises(BundleError, match="no controller version"):
        rollback_controller(bundle_copy, "v9")
    # A stored old version that was modified is refused, not restored (the whole bundle is: its
    # manifest lists every file).
    (bundle_copy / "controller" / "v1.json").write_bytes(b"{}")
    with pytest.raises(BundleError, match="modified"):
        rollback_controller(bundle_copy, first.version)


@pytest.fixture()
def tiny_manifest(tmp_path, face_crop):
    """A manifest of 24 small images (val and test splits), varied so the agents disagree."""
    import cv2
    import pandas as pd

    rng = np.random.default_rng(0)
    rows = []
    (tmp_path / "img").mkdir()
    for i in range(24):
        label = "fake" if i % 2 else "real"
        image = np.clip(face_crop.astype(int) + rng.integers(-60, 60, (1, 1, 3)) * (1 + i % 2), 0, 255)
        name = f"img/{i:02d}.png"
        cv2.imwrite(str(tmp_path / name), cv2.cvtColor(image.astype(np.uint8), cv2.COLOR_RGB2BGR))
        rows.append({"path": name, "label": label, "group": f"g{i // 2}", "split": "test" if i >= 20 else "val"})
    path = tmp_path / "manifest.csv"
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


def test_fit_controller_cli_fits_saves_and_refuses_test_split(bundle_copy, tiny_manifest, tmp_path, capsys):
    from training.fit_controller import main

    cache = tmp_path / "cache"
    args = ["--bundle", str(bundle_copy), "--manifest", str(tiny_manifest), "--cache-dir", str(cache),
            "--no-progress", "--threshold-rule", "fixed:0.5"]
    before = load_bundle(bundle_copy)
    calibration = {n: (before.agent(n).temperature, before.agent(n).bias) for n in before.agent_names}
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "Q_real" in out and "ensemble" in out and "roc_auc" in out
    bundle = load_bundle(bundle_copy)
    controller = load_controller(bundle)
    # 20 val rows and one screenshot-like copy of each: whole groups (a copy in its source's
    # group, here 2 of 10) are held out as the replay set, the rest fit.
    assert controller.kind == "logodds" and controller.threshold == 0.5
    replay = load_replay(bundle)
    assert controller.fitted_on["cases"] + len(replay.labels) == 40 and set(replay.labels) == {0, 1}
    assert set(replay.context) >= {"sharpness", "blockiness", "blur"}
    # The degraded-copy check's margin was fitted on the clean replay faces (half the replay rows).
    fragile = controller.fitted_on["fragile"]
    assert fragile["faces"] * 2 == len(replay.labels) and 0 < fragile["margin"] < 1
    assert "degraded-copy check" in out
    assert set(load_baselines(bundle)) == {"majority", "mean", "stacking", "stacking+context"}  # context: blur
    assert "stacking" in out and "held-out replay" in out
    assert len(list(cache.glob("eval-*.npz"))) == 1  # votes cached for reuse (training.vote_cache)
    # The first fit refitted the calibration of any agent whose votes did not state even odds
    # (here the tiny LeNet's, all above 0.5): its votes changed, so the second fit scores once more.
    refitted = {n for n, tb in calibration.items() if (bundle.agent(n).temperature, bundle.agent(n).bias) != tb}
    assert main(args) == 0  # second fit is stored as v2, v1 kept
    assert len(list(cache.glob("eval-*.npz"))) == 1 + bool(refitted)
    assert [v["n"] for v in list_controller_versions(bundle_copy)] == [1, 2]
    # A refit on the same rows is applied once: the second fit changed no calibration, so a third
    # (saving a controller changes the manifest, not the models or calibration) would reuse the cache.
    again = load_bundle(bundle_copy)
    assert all((again.agent(n).temperature, again.agent(n).bias) == (bundle.agent(n).temperature, bundle.agent(n).bias)
               for n in again.agent_names)
    # Faces found in screens add rows (those the detector finds again) with their own face size.
    assert main([*args, "--detected-copies", "1", "--no-fragile"]) == 0
    controller, replay = load_controller(load_bundle(bundle_copy)), load_replay(load_bundle(bundle_copy))
    assert controller.fitted_on["detected_copies"] == 1
    assert 40 < controller.fitted_on["cases"] + len(replay.labels) <= 60
    # The original rule stays selectable.
    assert main([*args, "--kind", "qtrust"]) == 0
    assert load_controller(load_bundle(bundle_copy)).kind == "qtrust"
    # A registered rule is selectable by its kind, with the context it reads.
    assert main([*args, "--kind", "logodds-bins", "--context", "sharpness,blockiness", "--bins", "2"]) == 0
    binned = load_controller(load_bundle(bundle_copy))
    assert binned.kind == "logodds-bins" and binned.context_names == ("sharpness", "blockiness")
    capsys.readouterr()
    assert main([*args, "--context", "jpeg"]) == 2
    assert "Unknown context feature" in capsys.readouterr().err
    assert main([*args, "--kind", "qtrust", "--lr", "0.1"]) == 2
    assert "does not apply to --kind qtrust" in capsys.readouterr().err
    assert main([*args, "--split", "test"]) == 2
    assert "test split is for `fakeface evaluate`" in capsys.readouterr().err
    assert main(["--bundle", str(tmp_path / "nope"), "--manifest", str(tiny_manifest)]) == 2
    assert "No model bundle" in capsys.readouterr().err


def test_schema_v1_tables_load_unchanged_with_their_version(fitted):
    """Tables written before kinds existed (schema v1, no "kind") are Q-trust tables, read as-is."""
    obj = json.loads(fitted.to_json())
    assert obj["schema_version"] == 1 and "kind" not in obj
    restored = QController.from_json(json.dumps(obj).encode())
    assert restored.version == obj["version"] and restored.kind == "qtrust"


def test_rollback_restores_the_companions_saved_with_a_version(bundle_copy, streams):
    from blackboard.combine import baselines_to_json, fit_baselines

    agents = load_bundle(bundle_copy).agent_names
    (votes, labels), _ = streams
    votes = np.resize(votes, (len(votes), len(agents)))
    first = tiny_controller(agents, seed=3)
    replay = ReplaySet(tuple(agents), votes[:50], labels[:50])
    save_controller(bundle_copy, first, baselines=baselines_to_json(fit_baselines(agents, votes, labels),
                                                                   fitted_on={}), replay=replay)
    save_controller(bundle_copy, tiny_controller(agents, seed=4))  # no companions
    bundle = load_bundle(bundle_copy)
    assert load_baselines(bundle) is None and load_replay(bundle) is None  # stale ones are not used
    bundle = rollback_controller(bundle_copy, "v1")
    assert load_controller(bundle).version == first.version
    np.testing.assert_allclose(load_replay(bundle).votes, replay.votes, atol=1e-6)
    assert load_baselines(bundle)["stacking"].predict_proba(votes[:5]).shape == (5,)


@pytest.mark.parametrize("calibration", ["platt", "isotonic"])
def test_prior_moves_probabilities_not_decisions(calibration):
    """Fitted on 80 % fakes, probabilities for an even prior are lower by exactly the prior's
    log-odds and stay calibrated on a balanced stream; every decision is unchanged; the prior
    survives the JSON round trip."""
    from blackboard.calibration import logit
    from blackboard.controllers.logodds import LogOddsConfig, LogOddsController

    votes, labels = vote_stream(6000, seed=7)
    skewed = np.concatenate([np.flatnonzero(labels == 1), np.flatnonzero(labels == 0)[:750]])  # 80 % fake
    test_votes, test_labels = vote_stream(4000, seed=8)  # about even
    fits = {prior: LogOddsController(AGENTS, LogOddsConfig(calibration=calibration, prior=prior)).fit(
        votes[skewed], labels[skewed]) for prior in (None, 0.5)}
    data_p, even_p = (fits[k].predict_proba(test_votes) for k in (None, 0.5))
    share = labels[skewed].mean()
    inner = (np.minimum(data_p, even_p) > 1e-4) & (np.maximum(data_p, even_p) < 1 - 1e-4)  # logit clips at 1e-6
    moved = logit(even_p[inner]) - logit(data_p[inner])
    assert inner.mean() > 0.5 and np.allclose(moved, -np.log(share / (1 - share)), atol=1e-6)
    assert np.array_equal(data_p >= fits[None].threshold, even_p >= fits[0.5].threshold)
    # On an even stream the even-prior probabilities average the truth; the data's overstate fakes.
    assert abs(even_p.mean() - test_labels.mean()) < abs(data_p.mean() - test_labels.mean())
    assert log_loss(test_labels, np.clip(even_p, 1e-6, 1 - 1e-6)) < log_loss(test_labels, np.clip(data_p, 1e-6, 1 - 1e-6))
    restored = LogOddsController.from_json(fits[0.5].to_json())
    assert restored.config.prior == 0.5 and np.array_equal(restored.predict_proba(test_votes), even_p)
    with pytest.raises(ValueError, match="prior"):
        LogOddsConfig(prior=1.0)


def test_tables_fitted_before_the_prior_keep_their_version(streams):
    """Without a prior a table is written exactly as before the prior existed (no "prior", no
    "prior_shift"), so stored tables keep their version hash; one with it records both."""
    (votes, labels), _ = streams
    legacy = QController(AGENTS, ControllerConfig(prior=None)).fit(votes, labels)
    obj = json.loads(legacy.to_json())
    assert "prior" not in obj["config"] and "prior_shift" not in obj["calibration"]
    restored = QController.from_json(json.dumps(obj).encode())
    assert restored.version == obj["version"] and restored.config.prior is None
    skewed = np.concatenate([np.flatnonzero(labels == 1), np.flatnonzero(labels == 0)[:300]])
    even = json.loads(QController(AGENTS).fit(votes[skewed], labels[skewed]).to_json())
    assert even["config"]["prior"] == 0.5 and even["calibration"]["prior_shift"] < 0


def test_fit_controller_refits_agent_calibration_for_the_prior(bundle_copy, tiny_manifest, tmp_path):
    """An agent whose votes rank the labels gets a temperature and bias for even odds: what it says
    afterwards is its old log-odds through the logged slope and offset, with the same decisions."""
    import pandas as pd

    from training.fit_controller import main
    from training.votes import collect_votes

    frame = pd.read_csv(tiny_manifest)
    paths = [tiny_manifest.parent / p for p in frame["path"]]
    before = load_bundle(bundle_copy)
    votes = collect_votes(before, paths, batch_size=8, progress=False, use_cache=False)
    lenet = before.agent_names.index("lenet")
    # Labels that lenet's votes rank (two of the 24 swapped), fakes 70 %: its temperature alone
    # carries no share, so the refit must move it.
    order = np.argsort(votes[:, lenet])
    fake = np.zeros(len(frame), bool)
    fake[order[7:]] = True
    fake[order[[5, 9]]] = ~fake[order[[5, 9]]]
    frame["label"] = np.where(fake, "fake", "real")
    frame.to_csv(tiny_manifest, index=False)
    args = ["--bundle", str(bundle_copy), "--manifest", str(tiny_manifest), "--no-cache", "--no-progress",
            "--degraded-copies", "0", "--replay-fraction", "0.1"]
    assert main([*args, "--agent-calibration", "keep"]) == 0
    assert load_bundle(bundle_copy).manifest["agents"] == before.manifest["agents"]
    assert main(args) == 0
    after = load_bundle(bundle_copy)
    refit = after.manifest["agents"]["lenet"]["calibration_refit"]
    assert refit["prior"] == 0.5 and refit["slope"] > 0
    now = collect_votes(after, paths, batch_size=8, progress=False, use_cache=False)
    expected = logit(votes[:, lenet]) * refit["slope"] + refit["offset"]
    inside = np.abs(expected) < 10  # beyond, float32 probabilities saturate
    assert inside.sum() >= 18
    np.testing.assert_allclose(logit(now[inside, lenet]), expected[inside], atol=1e-3)
    np.testing.assert_array_equal(now[inside, lenet] >= after.agent("lenet").threshold,
                                  votes[inside, lenet] >= before.agent("lenet").threshold)
