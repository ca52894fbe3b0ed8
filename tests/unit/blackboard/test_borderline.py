"""The borderline band: fitted on val where the answer is a coin flip, said as "can't tell"."""

from __future__ import annotations

import numpy as np
import pytest

from blackboard.borderline import DEFAULT_HALF_WIDTH, KEY, Borderline, borderline_for, fit_borderline
from blackboard.decision import decide
from vote_streams import live_and_replay


def noisy_val(n=4000, seed=0):
    """p_fake whose accuracy falls to chance near 0.5: the label is a coin flip with P = p."""
    rng = np.random.default_rng(seed)
    p = rng.uniform(0, 1, n)
    return p, (rng.uniform(0, 1, n) < p).astype(int)


def test_band_is_where_val_accuracy_is_near_chance_and_answered_accuracy_rises():
    p, y = noisy_val()
    band = fit_borderline(p, y, 0.5, max_accuracy=0.65, max_share=0.3)
    assert 0.05 <= band.half_width <= 0.15, band
    assert band.accuracy_inside <= 0.65 and band.share_inside <= 0.3
    overall = ((p >= 0.5) == y).mean()
    assert band.accuracy_outside > overall + 0.02  # answered cases are more often right
    # The share limit caps the width.
    assert fit_borderline(p, y, 0.5, max_share=0.05).half_width <= 0.03


def test_a_clean_val_set_gets_the_default_band():
    p = np.r_[np.full(50, 0.1), np.full(50, 0.9)]
    band = fit_borderline(p, np.r_[np.zeros(50), np.ones(50)].astype(int), 0.5)
    assert band.half_width == DEFAULT_HALF_WIDTH and band.rule == "default"
    with pytest.raises(ValueError, match=r"half_width\n.*less than 0\.5.*input_value=0\.7"):
        Borderline(half_width=0.7)


def test_decide_labels_the_band_uncertain_with_a_plain_reason():
    band = Borderline(0.05, accuracy_inside=0.58)
    d = decide({"x": np.array([0.52, 0.50, 0.44, 0.56, 0.9])}, None, band=band)
    assert list(d.labels) == ["uncertain", "uncertain", "real", "fake", "fake"]
    assert "borderline" in d.reasons[0] and "45 % and 55 %" in d.reasons[0] and "58 %" in d.reasons[0]
    assert d.reasons[2:] == ("", "", "")
    # Without a band (scoring, fitting) every face keeps real/fake.
    assert "uncertain" not in list(decide({"x": np.array([0.52])}, None).labels)


def test_band_comes_from_the_controller_else_its_replay_set_else_the_default():
    controller, replay = live_and_replay(3000, 5, fit=2000)
    fitted = borderline_for(controller, replay)
    assert fitted.rule != "default" or fitted.half_width == DEFAULT_HALF_WIDTH
    assert borderline_for(controller, None).half_width == DEFAULT_HALF_WIDTH
    controller.fitted_on[KEY] = Borderline(0.07, 0.6, 0.1, 0.8, "stored").to_dict()
    assert borderline_for(controller, replay) == Borderline(0.07, 0.6, 0.1, 0.8, "stored")
