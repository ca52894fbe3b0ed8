"""The "does this map show a location" criterion (`vision.heatmap_quality`) on maps whose answer is known."""

from __future__ import annotations

import numpy as np
import pytest

from vision.heatmap_quality import (MIN_CONCENTRATION, AgentMap, concentration, localises, mask_lift, pointing_hit,
                                    withheld_reason)


def _square(size: int = 16, lo: int = 4, hi: int = 8) -> np.ndarray:
    m = np.zeros((size, size), np.float32)
    m[lo:hi, lo:hi] = 1.0
    return m


def test_concentration_is_zero_for_a_uniform_or_empty_map_and_one_for_a_point():
    assert concentration(np.full((8, 8), 0.7)) == pytest.approx(0.0, abs=1e-9)
    assert concentration(np.zeros((8, 8))) == 0.0
    point = np.zeros((8, 8))
    point[3, 5] = 1.0
    assert concentration(point) == pytest.approx(1.0)
    # A ramp over a high floor (the old VGG-16 look) is nearly uniform; a blob is not.
    ramp = np.linspace(0.8, 1.0, 64).reshape(8, 8)
    assert concentration(ramp) < MIN_CONCENTRATION < concentration(_square(8, 2, 5))
    with pytest.raises(ValueError, match="2-D"):
        concentration(np.zeros(5))
    with pytest.raises(ValueError, match="finite"):
        concentration(np.array([[0.0, np.nan]]))


def test_mask_lift_is_one_for_a_uniform_map_and_the_inverse_area_when_all_mass_is_inside():
    mask = _square(64, 16, 32)  # a quarter of each side: 1/16 of the area, at another resolution
    assert mask_lift(np.ones((16, 16)), mask) == pytest.approx(1.0)
    assert mask_lift(_square(), mask) == pytest.approx(16.0)
    outside = 1.0 - _square()
    assert mask_lift(outside, mask) == pytest.approx(0.0)
    assert np.isnan(mask_lift(np.zeros((16, 16)), mask)) and np.isnan(mask_lift(np.ones((16, 16)), np.ones((8, 8))))
    assert pointing_hit(_square(), mask) and not pointing_hit(outside * np.arange(256).reshape(16, 16), mask)
    assert mask_lift(_square(), mask[..., None]) == pytest.approx(16.0)  # synth's (H, W, 1) masks too


def test_an_agent_localises_only_when_it_beats_uniform_and_other_faces_masks():
    assert localises(1.5, 1.1)
    assert not localises(1.43, 1.44)  # a centre bias: as good on a stranger's mask
    assert not localises(0.76, 0.79)  # mostly outside the blend
    assert not localises(1.15, 0.9)  # follows the face, but too weakly
    assert not localises(float("nan"), 1.0)


def test_a_withheld_reason_names_the_agent_and_an_agent_map_holds_one_thing():
    assert withheld_reason("vgg16", np.ones((8, 8))).startswith("vgg16's map is spread evenly")
    assert withheld_reason("vgg16", _square()) == ""
    assert AgentMap(png=b"\x89PNG").withheld == "" and AgentMap(withheld="why").png == b""
    with pytest.raises(ValueError, match="exactly one"):
        AgentMap()
    with pytest.raises(ValueError, match="exactly one"):
        AgentMap(png=b"x", withheld="y")
