"""Feedback is evidence: promotion only by an operator, distinct clients, one count per request id,
and the promoted version persisted atomically beside the feedback log."""

from __future__ import annotations

import json
import threading

import numpy as np
import pytest

from blackboard.controller_admin import ControllerAdmin
from blackboard.controller_state import ControllerState, StateError, state_folder_for
from blackboard.feedback_learning import PromotionConfig
from blackboard.feedback_log import FeedbackLog
from blackboard.feedback_promotion import PromotionRule, promote_from_log, read_evidence
from vote_streams import AGENTS, expert_stream, live_and_replay

LOOSE = PromotionConfig(max_auc_drop=1.0, max_logloss_rise=100.0)  # the guard out of the way


@pytest.fixture(scope="module")
def setup():
    return (*live_and_replay(2000, 11, fit=1500), expert_stream(400, seed=12))


def write_log(path, rows, *, clients, labels=None, repeat=1):
    """A feedback log as the service writes it: one record per post."""
    log = FeedbackLog(path)
    votes, y, _ = rows
    for _ in range(repeat):
        for i, (row, label) in enumerate(zip(votes, y if labels is None else labels)):
            log.append({"request_id": f"r{i}", "label": "fake" if label else "real", "client": f"c{i % clients}",
                        "evidence": {"agents": list(AGENTS), "votes": [list(map(float, row))], "context": None}})
    return log


class FakeBoard:
    """The part of a board the admin drives (a real one needs models)."""

    def __init__(self, controller, replay, bundle_version="b1"):
        self.controller, self.replay, self.bundle_version = controller, replay, bundle_version
        self.lock = threading.Lock()

    @property
    def controller_version(self):
        return self.controller.version

    def set_controller(self, controller):
        self.controller = controller
        return controller.version


def test_one_request_id_counts_once_with_its_last_label(setup, tmp_path):
    live, replay, (votes, y, _) = setup
    log = write_log(tmp_path / "fb.jsonl", (votes[:3], y[:3], None), clients=3, repeat=4)
    log.append({"request_id": "r0", "label": "real" if y[0] else "fake", "client": "c9",
                "evidence": {"agents": list(AGENTS), "votes": [list(map(float, votes[0]))], "context": None}})
    evidence = read_evidence(log.path)
    assert [e.request_id for e in evidence] == ["r1", "r2", "r0"]
    assert evidence[-1].label == ("real" if y[0] else "fake")
    records = [json.loads(line) for line in log.path.read_text().splitlines()]
    assert [r["repeat"] for r in records[:3]] == [False] * 3 and all(r["repeat"] for r in records[3:])
    assert log.cases == 3 and FeedbackLog(log.path).cases == 3  # reloaded: the ids are still known
    # 13 posts on 3 answers are 3 cases: below the minimum, nothing is promoted.
    result = promote_from_log(live, replay, log.path, PromotionRule(min_clients=1, min_cases=4, guard=LOOSE))
    assert not result.promoted and result.cases == 3 and "3 usable feedback case(s)" in result.detail


def test_a_label_teaches_the_face_it_names_and_a_group_fake_teaches_nothing(tmp_path):
    log = FeedbackLog(tmp_path / "fb.jsonl")
    group = [[0.9, 0.8], [0.1, 0.2], [0.5, None]]
    context = [[1.0], [2.0], [3.0]]

    def post(request_id, label, face_index=None, votes=group):
        log.append({"request_id": request_id, "label": label, "client": "c", "face_index": face_index,
                    "evidence": {"agents": list(AGENTS), "votes": votes, "context": context[:len(votes)]}})

    post("one-face", "fake", 1)  # "this face is fake" on a group picture: face 1's votes only
    post("all-real", "real")  # a real picture: every face in it is real
    post("group-fake", "fake")  # some face is fake, which one is not said: nothing to learn
    post("alone-fake", "fake", votes=group[:1])  # one face: the picture's label is the face's
    post("no-such-face", "real", 5)  # an index outside the stored answer is not used
    evidence = {e.request_id: e for e in read_evidence(log.path)}
    assert sorted(evidence) == ["all-real", "alone-fake", "one-face"]
    np.testing.assert_allclose(evidence["one-face"].votes, [[0.1, 0.2]])
    np.testing.assert_allclose(evidence["one-face"].context, [[2.0]])
    assert evidence["all-real"].votes.shape == (3, len(AGENTS)) and np.isnan(evidence["all-real"].votes[2, 1])
    np.testing.assert_allclose(evidence["alone-fake"].votes, [group[0]])


def test_one_client_cannot_promote_alone(setup, tmp_path):
    live, replay, (votes, y, _) = setup
    write_log(tmp_path / "fb.jsonl", (votes[:200], y[:200], None), clients=1)
    result = promote_from_log(live, replay, tmp_path / "fb.jsonl", PromotionRule(min_clients=5, guard=LOOSE))
    assert not result.promoted and result.clients == 1 and "1 distinct client(s)" in result.detail
    assert result.controller is live


def test_wrong_labels_from_many_clients_are_refused_by_the_replay_guard(setup, tmp_path):
    live, replay, (votes, y, _) = setup
    write_log(tmp_path / "fb.jsonl", (votes, y, None), clients=50, labels=1 - y)
    result = promote_from_log(live, replay, tmp_path / "fb.jsonl", PromotionRule())
    assert not result.promoted and "refused" in result.detail and result.clients == 50


def test_admin_promotes_persists_and_a_restart_restores_it(setup, tmp_path):
    live, replay, (votes, y, _) = setup
    log = write_log(tmp_path / "fb.jsonl", (votes[:100], y[:100], None), clients=10)
    board = FakeBoard(live, replay)
    admin = ControllerAdmin(board, log.path, PromotionRule(guard=LOOSE))
    result = admin.promote()
    assert result.promoted and board.controller.version == result.controller.version != live.version
    probe = votes[150:160]
    served = board.controller.predict_proba(probe)

    restarted = FakeBoard(live, replay)  # a new process: the bundle's controller until restored
    again = ControllerAdmin(restarted, log.path)
    assert again.restore() == result.controller.version
    np.testing.assert_allclose(restarted.controller.predict_proba(probe), served)
    assert [v["active"] for v in again.versions()] == [False, True]

    # Rollback by version name, persisted as well.
    assert again.rollback(live.version) == live.version and restarted.controller is live
    third = FakeBoard(live, replay)
    assert ControllerAdmin(third, log.path).restore() == live.version
    assert ControllerAdmin(third, log.path).rollback(result.controller.version) == result.controller.version
    with pytest.raises(StateError, match="Unknown controller version"):
        again.rollback("7-deadbeef")


def test_state_of_another_bundle_or_a_modified_table_is_not_served(setup, tmp_path):
    live, replay, (votes, y, _) = setup
    log = write_log(tmp_path / "fb.jsonl", (votes[:100], y[:100], None), clients=10)
    admin = ControllerAdmin(FakeBoard(live, replay), log.path, PromotionRule(guard=LOOSE))
    promoted = admin.promote().controller
    other = FakeBoard(live, replay, bundle_version="b2")
    assert ControllerAdmin(other, log.path).restore() == live.version  # another bundle: its own controller

    table = state_folder_for(log.path) / f"{promoted.version}.json"
    table.write_bytes(table.read_bytes().replace(b'"counter"', b'"counter" ', 1))
    board = FakeBoard(live, replay)
    assert ControllerAdmin(board, log.path).restore() == live.version  # modified: refused, bundle's served
    with pytest.raises(StateError, match="Checksum mismatch"):
        ControllerState(state_folder_for(log.path), "b1", live.version).load()
    # Only the two atomic files, no temporary left behind.
    assert sorted(p.name for p in state_folder_for(log.path).iterdir()) == sorted([table.name, "state.json"])
