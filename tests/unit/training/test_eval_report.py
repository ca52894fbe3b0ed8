"""The evaluation report (`training.report`): its figures as real PNGs, the metrics table, and a
report.md that says what was scored, written whole even when a training log is damaged."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import cv2
import numpy as np
import pandas as pd
import pytest

from training import report

RNG = np.random.default_rng(3)
Y = np.array([0] * 20 + [1] * 20)
SCORES = {"forensic": np.clip(Y * 0.4 + RNG.uniform(0, 0.6, 40), 0, 1), "ensemble": np.clip(Y * 0.6 + RNG.uniform(0, 0.4, 40), 0, 1)}


def _metrics(auc: float | None, ci=None) -> dict:
    return {"auc": auc, "auc_ci": ci, "accuracy": 0.75, "accuracy_ci": [0.6, 0.9], "balanced_accuracy": 0.75,
            "precision": 0.7, "recall": 0.8, "f1": 0.75, "f0_5": 0.72, "ap": 0.8, "eer": 0.25, "log_loss": 0.5,
            "ece": 0.04, "threshold": 0.5, "confusion": [[15, 5], [5, 15]]}


def _result(*, ensemble: bool = True) -> dict:
    systems = {"forensic": _metrics(0.81, [0.7, 0.9]), "custom": _metrics(None)}
    if ensemble:
        systems["ensemble"] = _metrics(0.88, [0.8, 0.95])
    return {
        "data": {"path": "faces/", "split": "test", "n": 40, "n_real": 20, "n_fake": 20, "n_no_face": 1, "detect": "off"},
        "bundle": {"path": "bundle/", "version": "7", "agents": ["forensic", "custom"]},
        "fit": {"source": "the bundle's replay set", "n": 100},
        "bootstrap": {"n_resamples": 200, "seed": 0},
        "systems": systems, "best_single": "forensic",
        "ensemble_vs_best_single": ({"delta_auc": 0.07, "delta_auc_ci": [0.01, 0.12], "p_value": 0.012,
                                     "n_resamples": 200, "mcnemar": {"a_right_b_wrong": 6, "a_wrong_b_right": 2,
                                                                     "p_value": 0.29}}
                                    if ensemble else {"p_value": None}),
        "ablation": {"forensic": {"auc": 0.7, "delta_auc": -0.18}} if ensemble else {},
        "unavailable": {"vgg16": "not in the bundle"},
    }


def _is_png(path: Path) -> bool:
    image = cv2.imread(str(path))
    return image is not None and min(image.shape[:2]) > 50


@pytest.mark.parametrize("plot", [report.plot_roc, report.plot_pr, report.plot_reliability])
def test_each_curve_figure_is_a_png_with_no_temporary_file_left(plot, tmp_path):
    name = plot(Y, SCORES, tmp_path / "figs" / "curve.png")
    assert name == "curve.png" and _is_png(tmp_path / "figs" / "curve.png")
    assert [p.name for p in (tmp_path / "figs").iterdir()] == ["curve.png"]


def test_confusions_and_trust_figures_are_pngs(tmp_path):
    report.plot_confusions(Y, {k: (v >= 0.5).astype(int) for k, v in SCORES.items()}, tmp_path / "c.png")
    report.plot_trust({"forensic": {"real": 0.9, "fake": 0.7}, "custom": {"real": 0.2, "fake": 0.4}},
                      tmp_path / "t.png", title="controller 3")
    assert _is_png(tmp_path / "c.png") and _is_png(tmp_path / "t.png")


def test_the_metrics_table_marks_the_best_single_agent_and_says_n_a_for_what_is_missing():
    lines = report.metrics_table(_result()).splitlines()
    assert len(lines) == 2 + 3 + len(report.REFERENCE_ROWS)
    forensic = next(line for line in lines if line.startswith("| forensic"))
    assert "(best single)" in forensic and "0.8100 [0.700, 0.900]" in forensic
    custom = next(line for line in lines if line.startswith("| custom"))
    assert "| n/a |" in custom and "(best single)" not in custom
    assert all(line.count("|") == lines[0].count("|") for line in lines[2:])


class _System(SimpleNamespace):
    pass


def test_a_report_lists_systems_metrics_comparison_and_figures_and_survives_a_damaged_log(tmp_path):
    bundle_dir = tmp_path / "bundle"
    bundle_dir.mkdir()
    (bundle_dir / "custom_log.csv").write_text("no,columns,of,a,keras,log\n1,2\n")
    bundle = SimpleNamespace(agent_names=["custom"], path=bundle_dir,
                             manifest={"agents": {"custom": {"files": {"custom_log.csv": "sha"}}}})
    systems = [_System(name=n, kind="agent" if n != "ensemble" else "controller", p_fake=p, threshold=0.5, note=f"{n} note")
               for n, p in SCORES.items()]
    predictions = pd.DataFrame({"path": [f"{i}.png" for i in range(40)], "label": Y, **SCORES})
    out = tmp_path / "report"
    pngs = report.write_report(out_dir=out, result=_result(), predictions=predictions, systems=systems, bundle=bundle,
                               controller=None, sections=[("Per transform", "a table")])
    text = (out / "report.md").read_text()
    assert {"roc.png", "pr.png", "reliability.png", "confusion.png"} <= set(pngs)
    assert all(_is_png(out / name) for name in pngs)
    for words in ("split `test`", "`--detect off`", "`forensic` (agent): forensic note", "`vgg16`: **unavailable**",
                  "delta AUC = +0.0700 [0.010, 0.120], p = 0.012", "ensemble right/agent wrong 6",
                  "| forensic | 0.7000 | -0.1800 |", "## Per transform", "![ROC curves](roc.png)"):
        assert words in text, words
    assert "Training log" in text and "could not be plotted" in text


def test_one_class_only_gives_no_curves_and_no_comparison_without_an_ensemble(tmp_path):
    systems = [_System(name="forensic", kind="agent", p_fake=SCORES["forensic"][:20], threshold=0.5, note="")]
    predictions = pd.DataFrame({"path": ["x"] * 20, "label": Y[:20]})
    bundle = SimpleNamespace(agent_names=[], path=tmp_path, manifest={"agents": {}})
    pngs = report.write_report(out_dir=tmp_path / "r", result=_result(ensemble=False), predictions=predictions,
                               systems=systems, bundle=bundle, controller=None)
    text = (tmp_path / "r" / "report.md").read_text()
    assert pngs == ["confusion.png"]
    assert "No ensemble was scored, so there is no paired test" in text and "there is no ablation" in text
    assert "no training CSV logs" in text
