"""The ``--degrade`` results: every system scored on each transform's copies, tables and a plot.

Each transform's copies are scored like the clean set (point metrics at each system's own
threshold, `training.metrics.point_metrics`); intervals and the change from the clean AUC come
from a bootstrap over *source images* (`training.grouped_bootstrap`), the same resamples for
every transform and system, so a face and its copies are never split and the differences are
paired. "all degraded" pools every copy of every transform.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from training.grouped_bootstrap import interval, source_counts, weighted_aucs, weighted_means
from training.metrics import BootstrapConfig, System, point_metrics
from training.selective import accuracy_at_coverage, ABSTAIN_RATE

POOLED = "all degraded"
POINT_KEYS = ("auc", "accuracy", "precision", "recall", "f1", "f0_5")


@dataclass(frozen=True)
class TransformSet:
    """One transform's scored copies (or the clean images)."""

    name: str  # "clean" or the transform name
    composition: bool  # the copies are whole screenshots (face detected again)
    sources: np.ndarray  # (n,) index of each scored copy's source image among the evaluated images
    y: np.ndarray  # (n,) labels
    systems: Sequence[System]  # scored on these copies, same names and thresholds in every set
    n_images: int  # copies made (scored or not)
    n_no_face: int  # copies in which no face was found
    n_unreadable: int  # copies whose source could not be read
    abstained: np.ndarray | None = None  # (n,) faces the service answers "uncertain" (gate or borderline band)


def _system_entry(t: TransformSet, s: System, weights: np.ndarray,
                  clean_aucs: np.ndarray | None, config: BootstrapConfig) -> dict[str, Any]:
    both = len(np.unique(t.y)) == 2
    point = point_metrics(t.y, s.p_fake, threshold=s.threshold)
    entry: dict[str, Any] = {k: point[k] for k in POINT_KEYS}
    correct = ((s.p_fake >= s.threshold).astype(int) == t.y).astype(np.float64)
    entry["accuracy_ci"] = interval(weighted_means(correct, weights), config)
    entry["accuracy_at_10pct_abstention"] = accuracy_at_coverage(t.y, s.p_fake, s.threshold, 1.0 - ABSTAIN_RATE)
    aucs = weighted_aucs(t.y, s.p_fake, weights) if both else np.full(len(weights), np.nan)
    entry["auc_ci"] = interval(aucs, config)
    entry["resampled_auc"] = aucs  # dropped before writing; the clean set's feeds the deltas
    if clean_aucs is not None:
        entry["delta_auc_ci"] = interval(aucs - clean_aucs, config)
    return entry


def score_transforms(sets: Sequence[TransformSet], n_sources: int, config: BootstrapConfig) -> dict[str, Any]:
    """metrics.json's "degrade" section.

    Args:
        sets: the clean set first (named "clean"), then one per transform.
        n_sources: number of evaluated images (the bootstrap's units).
        config: resamples, confidence and seed (as the clean intervals).

    Returns:
        {"per_transform": {name: {"composition", "n_images", "n_scored", "n_no_face", "n_unreadable",
        "systems": {system: metrics}}}, "bootstrap": how intervals were made}. Each system's
        entry has POINT_KEYS, accuracy at 10 % abstention, auc_ci, accuracy_ci and (not for
        the clean set) delta_auc and delta_auc_ci against the clean AUC.
    """
    counts = source_counts(n_sources, config)
    per: dict[str, Any] = {}
    clean_aucs: dict[str, np.ndarray] = {}
    pooled = _pooled(sets[1:])
    for t in list(sets) + ([pooled] if pooled is not None else []):
        entry = {"composition": t.composition, "n_images": t.n_images, "n_scored": int(len(t.y)),
                 "n_no_face": t.n_no_face, "n_unreadable": t.n_unreadable, "systems": {}}
        if len(t.y) and t.abstained is not None:
            entry["uncertain_share"] = float(np.mean(t.abstained))
        if len(t.y):
            weights = counts[:, t.sources]
            for s in t.systems:
                m = _system_entry(t, s, weights, clean_aucs.get(s.name) if per else None, config)
                aucs = m.pop("resampled_auc")
                if not per:
                    clean_aucs[s.name] = aucs
                else:
                    clean_auc = per[sets[0].name]["systems"].get(s.name, {}).get("auc")
                    m["delta_auc"] = None if m["auc"] is None or clean_auc is None else m["auc"] - clean_auc
                if s.kind == "ensemble" and t.abstained is not None and not t.abstained.all():
                    # Its accuracy on the faces the service would answer (the gate's "uncertain" withheld).
                    keep = ~t.abstained
                    m["accuracy_answered"] = float(np.mean((s.p_fake[keep] >= s.threshold).astype(int) == t.y[keep]))
                entry["systems"][s.name] = m
        per[t.name] = entry
    return {"per_transform": per,
            "confidence": config.confidence,
            "bootstrap": f"{config.n_resamples} resamples of the source images (each resample keeps or drops "
                         "every copy of a face together; the same resamples for every transform and system, so "
                         f"delta AUC vs clean is paired), seed {config.seed}, percentile {config.confidence:.0%}"}


def _pooled(sets: Sequence[TransformSet]) -> TransformSet | None:
    """Every degraded copy of every transform as one set (systems share names and thresholds)."""
    sets = [t for t in sets if len(t.y)]
    if not sets:
        return None
    names = [s.name for s in sets[0].systems]
    systems = [System(name, sets[0].systems[i].kind,
                      np.concatenate([t.systems[i].p_fake for t in sets]), sets[0].systems[i].threshold, "pooled")
               for i, name in enumerate(names)]
    abstained = None if any(t.abstained is None for t in sets) else np.concatenate([t.abstained for t in sets])
    return TransformSet(POOLED, False, np.concatenate([t.sources for t in sets]), np.concatenate([t.y for t in sets]),
                        systems, sum(t.n_images for t in sets), sum(t.n_no_face for t in sets),
                        sum(t.n_unreadable for t in sets), abstained)


def _fmt(value: float | None, digits: int = 3) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def auc_markdown(section: dict[str, Any]) -> str:
    """Transforms x systems: AUC, and its change from clean in brackets."""
    per = section["per_transform"]
    names = list(next(iter(per.values()))["systems"])
    lines = ["| transform | scored | no face | " + " | ".join(names) + " |", "|" + "---|" * (len(names) + 3)]
    for t, entry in per.items():
        cells = []
        for name in names:
            m = entry["systems"].get(name)
            if m is None:
                cells.append("n/a")
                continue
            delta = m.get("delta_auc")
            cells.append(_fmt(m["auc"]) + ("" if delta is None else f" ({delta:+.3f})"))
        kind = " (screenshot)" if entry["composition"] else ""
        lines.append(f"| {t}{kind} | {entry['n_scored']} | {entry['n_no_face']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def system_markdown(section: dict[str, Any], system: str) -> str:
    """One system across the transforms: its metrics at its threshold and the intervals."""
    level = f"{round(100 * section.get('confidence', 0.95))}%"
    lines = [f"| transform | AUC [{level} CI] | delta AUC [{level} CI] | accuracy | precision | recall | F1 | F0.5 "
             "| accuracy, 10 % abstaining | 'uncertain' (service) | accuracy answered |", "|" + "---|" * 11]
    for t, entry in section["per_transform"].items():
        m = entry["systems"].get(system)
        if m is None:
            continue
        ci = "" if not m.get("auc_ci") else f" [{m['auc_ci'][0]:.3f}, {m['auc_ci'][1]:.3f}]"
        dci = "" if not m.get("delta_auc_ci") else f" [{m['delta_auc_ci'][0]:+.3f}, {m['delta_auc_ci'][1]:+.3f}]"
        delta = "" if m.get("delta_auc") is None else f"{m['delta_auc']:+.3f}"
        lines.append(f"| {t} | {_fmt(m['auc'])}{ci} | {delta}{dci} | {_fmt(m['accuracy'])} | {_fmt(m['precision'])} "
                     f"| {_fmt(m['recall'])} | {_fmt(m['f1'])} | {_fmt(m['f0_5'])} "
                     f"| {_fmt(m['accuracy_at_10pct_abstention'])} | {_fmt(entry.get('uncertain_share'))} "
                     f"| {_fmt(m.get('accuracy_answered'))} |")
    return "\n".join(lines)


def plot_degrade(section: dict[str, Any], path: Path) -> str:
    """AUC per transform (x) per system (one line each), clean first and the pooled copies last."""
    from matplotlib.figure import Figure

    from training.report import save_figure

    per = section["per_transform"]
    transforms = list(per)
    names = list(next(iter(per.values()))["systems"])
    fig = Figure(figsize=(max(7.0, 0.6 * len(transforms) + 2), 5))
    ax = fig.add_subplot()
    x = np.arange(len(transforms))
    for name in names:
        aucs = [per[t]["systems"].get(name, {}).get("auc") for t in transforms]
        values = np.array([np.nan if a is None else a for a in aucs], dtype=float)
        style = {"linewidth": 2.2} if name == "ensemble" else {"linewidth": 1.0, "alpha": 0.85}
        ax.plot(x, values, marker="o", markersize=4, label=name, **style)
    ax.axhline(0.5, linestyle=":", color="grey", linewidth=1)
    ax.set_xticks(x, labels=[t + (" *" if per[t]["composition"] else "") for t in transforms], rotation=45,
                  ha="right")
    ax.set_ylabel("ROC AUC")
    ax.set_title("AUC per transform (* = whole screenshot, face detected again)")
    ax.legend(loc="lower left", fontsize="small", ncol=2)
    fig.tight_layout()
    return save_figure(fig, path)
