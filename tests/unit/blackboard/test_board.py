"""The case engine (`blackboard.board`) in process: a case's feedback evidence keeps its own columns."""

from __future__ import annotations

import pytest

from blackboard.controllers.logodds import LogOddsController


@pytest.fixture(scope="module")
def board(session_bundle):
    from blackboard.inprocess import InProcessBoard

    with InProcessBoard(session_bundle) as board:
        yield board


def test_evidence_is_labelled_by_the_controller_that_decided_even_after_a_promotion(board, face_crop):
    deciding = board.controller
    case = board.classify(face_crop, detect="off", request_id="evidence-1")
    votes = {name: vote.p_fake for name, vote in case.faces[0].votes.items()}
    reordered = LogOddsController(tuple(reversed(deciding.agents)))
    try:
        board.set_controller(reordered)  # same agents, other column order: only names tell them apart
        evidence = board.case_evidence("evidence-1")
    finally:
        board.set_controller(deciding)
    assert evidence["agents"] == list(deciding.agents) != list(reordered.agents)
    assert evidence["votes"][0] == [pytest.approx(votes[name], abs=1e-6) for name in deciding.agents]
    assert evidence["context_names"] == list(deciding.context_names)
    assert board.case_evidence("never-seen") is None


def test_a_board_serving_fewer_agents_than_its_controller_weighs_is_refused(session_bundle):
    from blackboard.config import EnsembleConfig
    from blackboard.inprocess import InProcessBoard

    with pytest.raises(ValueError, match=r"the controller weighs agents .* but only \['custom'\] are served"):
        InProcessBoard(session_bundle, EnsembleConfig(agents=("custom",)))
