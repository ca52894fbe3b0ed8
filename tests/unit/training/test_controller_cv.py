"""Deciders side by side by grouped cross-validation (`training.controller_cv`): no group on both
sides of a fold, pooled and per-fold AUCs that rank an informative agent above noise, paired
differences against the reference, context read only by the variants that ask for it."""

from __future__ import annotations

import numpy as np
import pytest

from training.controller_cv import Variant, context_variants, cross_validate, default_variants, format_table

AGENTS = ["good", "noise"]


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    n = 400
    groups = np.repeat(np.arange(40), n // 40)
    labels = (rng.random(40) < 0.5).astype(int)[groups]  # a group is all real or all fake, like a video
    good = np.clip(0.5 + (labels - 0.5) * 0.5 + rng.normal(0, 0.2, n), 0.01, 0.99)
    noise = rng.uniform(0.01, 0.99, n)
    light = rng.uniform(0, 1, n)
    return np.stack([good, noise], 1), labels, groups, {"light": light}


def test_the_informative_agent_ranks_above_noise_and_deltas_are_against_stacking(data):
    votes, labels, groups, context = data
    table = cross_validate(votes, labels, groups, default_variants(AGENTS), subsets={"bright": context["light"] > 0.5})
    assert table["good"]["auc"] > 0.85 > 0.65 > table["noise"]["auc"]
    assert table["stacking"]["auc"] > table["noise"]["auc"] + 0.2
    for row in table.values():
        assert len(row["auc_folds"]) == 5 and 0 <= row["folds_better"] <= 5
        assert row["auc_mean"] == pytest.approx(np.mean(row["auc_folds"])) and 0 < row["auc_bright"] <= 1
    assert table["stacking"]["delta_vs_stacking_mean"] == 0 and table["noise"]["delta_vs_stacking_mean"] < -0.2


def test_no_group_is_on_both_sides_of_a_fold(data):
    votes, labels, groups, _ = data
    tagged = np.column_stack([votes, groups])  # the group rides along as a third "vote" column
    seen = []

    def fit(v, y, ctx):
        train = set(v[:, 2].astype(int))

        def score(v_test, c):
            test = set(v_test[:, 2].astype(int))
            seen.append((train, test))
            return v_test[:, 0]
        return score

    cross_validate(tagged, labels, groups, [Variant("spy", "agent", fit)], reference="spy")
    assert len(seen) == 5 and all(not (train & test) for train, test in seen)
    assert set().union(*(test for _, test in seen)) == set(range(40))


def test_context_reaches_only_the_variants_that_read_it(data):
    votes, labels, groups, context = data
    got = {}

    def reader(name):
        def fit(v, y, ctx):
            got[name] = ctx
            return lambda v_test, c: v_test[:, 0]
        return fit

    rows = [Variant("plain", "agent", reader("plain")), Variant("lit", "agent", reader("lit"), context=("light",))]
    cross_validate(votes, labels, groups, rows, context=context, reference="plain")
    assert got["plain"] is None and got["lit"].shape[1] == 1
    names = [v.name for v in context_variants(AGENTS, {"light": ["light"]}, bins=(2, 3))]
    assert names == ["logodds+light", "bins2+light", "bins3+light", "stacking+light"]
    table = cross_validate(votes, labels, groups, context_variants(AGENTS, {"light": ["light"]}), context=context,
                           reference="stacking+light")
    assert all(0.5 < row["auc"] <= 1 for row in table.values())


def test_the_table_has_a_row_per_variant_and_n_a_without_the_reference(data):
    votes, labels, groups, _ = data
    rows = default_variants(AGENTS)[:3]  # good, noise, majority: no stacking to compare with
    table = cross_validate(votes, labels, groups, rows)
    text = format_table(table).splitlines()
    assert len(text) == 2 + 3 and all(line.endswith("| n/a |") for line in text[2:])
    assert "good | agent | " in text[2]
