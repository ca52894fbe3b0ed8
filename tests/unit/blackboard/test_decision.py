"""One decision rule for every caller: controller by agent name, else the mean at 0.5."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from blackboard.controllers.logodds import LogOddsConfig, LogOddsController
from blackboard.decision import case_context, context_for, decide, decide_matrix
from vote_streams import AGENTS, expert_stream


@pytest.fixture(scope="module")
def controller():
    votes, y, _ = expert_stream(1000, seed=21)
    return LogOddsController(AGENTS).fit(votes, y)


def test_without_controller_the_mean_of_present_votes_decides():
    d = decide({"x": np.array([0.9, 0.2]), "y": np.array([0.5, np.nan])}, None)
    np.testing.assert_allclose(d.p_fake, [0.7, 0.2])
    assert list(d.labels) == ["fake", "real"] and d.threshold == 0.5 and d.version == "mean"
    assert d.weights[1] == {"x": 1.0, "y": 0.0} and list(d.degraded) == [False, True]


def test_controller_matches_agents_by_name_and_ignores_unknown_ones(controller):
    votes, _, _ = expert_stream(20, seed=22)
    ordered = decide({"A": votes[:, 0], "B": votes[:, 1]}, controller)
    shuffled = decide({"forensic": np.full(20, 0.99), "B": votes[:, 1], "A": votes[:, 0]}, controller)
    np.testing.assert_allclose(ordered.p_fake, shuffled.p_fake)
    np.testing.assert_allclose(ordered.p_fake, controller.predict_proba(votes))
    assert ordered.version == controller.version and ordered.combiner == "ensemble"
    missing_b = decide({"A": votes[:, 0]}, controller)
    assert missing_b.degraded.all() and all(w["B"] == 0.0 for w in missing_b.weights)
    np.testing.assert_allclose(decide_matrix(votes, AGENTS, controller).p_fake, ordered.p_fake)


def test_context_is_computed_only_for_controllers_that_read_it(controller, face_crop):
    assert context_for(controller, [face_crop]) is None
    blur_ctrl = LogOddsController(AGENTS, LogOddsConfig(context=("blur",)))
    sharp = context_for(blur_ctrl, [face_crop])
    blurred = case_context([cv2.GaussianBlur(face_crop, (9, 9), 3)], ("blur",))
    assert sharp.shape == (1, 1) and blurred[0, 0] < sharp[0, 0]
    assert context_for(blur_ctrl, [None]) is None
    with pytest.raises(ValueError, match="Unknown context"):
        case_context([face_crop], ("jpeg",))
