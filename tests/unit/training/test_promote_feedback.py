"""`fakeface promote-feedback`: the operator's offline promotion, persisted where the server reads it."""

from __future__ import annotations

import json

import numpy as np

from blackboard.controller_state import ControllerState, state_folder_for
from blackboard.controllers.store import load_controller
from blackboard.feedback_log import FeedbackLog
from training import promote_feedback


def _log(path, n, clients, seed=1):
    rng = np.random.default_rng(seed)
    log = FeedbackLog(path)
    for i in range(n):
        label = i % 2
        votes = np.clip(label * 0.4 + rng.uniform(0, 0.6, 3), 0, 1)  # like the fixture's val votes
        log.append({"request_id": f"r{i}", "label": "fake" if label else "real", "client": f"c{i % clients}",
                    "evidence": {"agents": ["custom", "lenet", "vgg16"], "votes": [votes.tolist()], "context": None}})
    return path


def test_one_client_is_refused_and_nothing_is_written(controlled_bundle, tmp_path, capsys):
    bundle = controlled_bundle()
    log = _log(tmp_path / "fb.jsonl", 40, clients=1)
    code = promote_feedback.main(["--feedback-log", str(log), "--bundle", str(bundle)])
    out = json.loads(capsys.readouterr().out)
    assert code == 1 and not out["promoted"] and "1 distinct client(s)" in out["detail"]
    assert not state_folder_for(log).exists()


def test_promotion_is_persisted_listed_and_rolled_back(controlled_bundle, tmp_path, capsys):
    bundle = controlled_bundle()
    base = load_controller(bundle)
    log = _log(tmp_path / "fb.jsonl", 60, clients=12)
    code = promote_feedback.main(["--feedback-log", str(log), "--bundle", str(bundle)])
    out = json.loads(capsys.readouterr().out)
    assert code == 0 and out["promoted"], out
    assert (out["cases"], out["clients"]) == (60, 12)
    state = ControllerState(state_folder_for(log), "ignored", base.version)
    assert state.active == base.version  # a state is only read for its own bundle version
    from agents.bundle import load_bundle

    state = ControllerState(state_folder_for(log), load_bundle(bundle).version, base.version)
    assert state.active == out["controller_version"] and state.load().version == out["controller_version"]
    assert promote_feedback.main(["--feedback-log", str(log), "--bundle", str(bundle), "--list"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [v["active"] for v in listed] == [False, True]
    assert promote_feedback.main(["--feedback-log", str(log), "--bundle", str(bundle), "--rollback", base.version]) == 0
    assert promote_feedback.main(["--feedback-log", str(log), "--bundle", str(bundle), "--rollback", "nope"]) == 2
    assert "Unknown controller version" in capsys.readouterr().err
