"""The forensic agent's tile (`vision.forensic_chart`): labelled, with a legend, readable size."""

from __future__ import annotations

import numpy as np
import pytest

from vision.forensic_chart import FAKE_COLOUR, REAL_COLOUR, contribution_chart, contribution_figure

SAID = {"colour": 0.8, "noise": -0.6, "spectrum": 0.25, "jpeg": -0.1}


def test_the_chart_has_title_axis_labels_and_a_legend_for_both_directions():
    ax = contribution_figure(SAID).axes[0]
    assert "forensic" in ax.get_title()
    assert ax.get_xlabel() == "contribution to the log-odds of fake" and ax.get_ylabel() == "feature group"
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["pushes towards fake", "pushes towards real"]
    # One bar per group, largest effect on top, coloured by direction.
    labels = [t.get_text() for t in ax.get_yticklabels()]
    assert labels == ["jpeg", "spectrum", "noise", "colour"]
    import matplotlib.colors as mcolors

    colours = [mcolors.to_hex(bar.get_facecolor()) for bar in ax.patches[:4]]
    assert colours == [REAL_COLOUR, FAKE_COLOUR, REAL_COLOUR, FAKE_COLOUR]


def test_the_image_is_at_least_224_px_and_refuses_bad_input():
    img = contribution_chart(SAID)
    assert img.dtype == np.uint8 and img.shape[0] >= 224 and img.shape[1] >= 224 and img.shape[2] == 3
    fake_red = np.array([0xE6, 0x28, 0x28])
    assert (np.abs(img.astype(int) - fake_red).sum(axis=2) < 30).sum() > 200  # the bars are drawn
    assert contribution_chart({}).shape == img.shape  # nothing to say still draws a labelled chart
    with pytest.raises(ValueError, match="at least 224x224"):
        contribution_chart(SAID, width=160, height=160)
    with pytest.raises(ValueError, match=r"\['noise'\]"):
        contribution_chart({"noise": float("inf")})
