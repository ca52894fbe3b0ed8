"""The evaluation's analyses beyond each system's metrics: diversity, selective risk, degraded copies.

Called by `training.evaluate` once the votes are in; returns the metrics.json sections, the
report sections (markdown) and the figures it drew.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd

from agents.bundle import Bundle
from blackboard.borderline import borderline_for
from blackboard.controllers.store import load_replay
from blackboard.stage_rows import NO_FACE, OK, REJECTED, context_column
from training.degrade_eval import CLEAN, CLEAN_LABEL
from training.degrade_report import (POOLED, TransformSet, auc_markdown, plot_degrade, score_transforms,
                                     system_markdown)
from training.evaluate_gate import uncertain
from training.evaluate_pipeline import CONTEXTS, EVAL
from training.diversity import diversity, pairs_markdown, summary_markdown
from training.metrics import BootstrapConfig, System
from training.report import atomic_write_text
from training.selective import ABSTAIN_RATE, plot_selective, selective_curve, selective_markdown
from training.systems import build_systems


def _agent_thresholds(bundle: Bundle) -> list[float]:
    return [bundle.agent(a).threshold for a in bundle.agent_names]


def _best_single_accuracy(y: np.ndarray, systems: Sequence[System]) -> float:
    return max(float(np.mean((s.p_fake >= s.threshold).astype(int) == y)) for s in systems if s.kind == "agent")


def own_abstention(gate: np.ndarray, systems: Sequence[System], band: Any) -> np.ndarray:
    """(N,) faces the service answers "uncertain": the gate's (training.evaluate_gate), and the
    ensemble's p_fake inside the borderline band (blackboard.borderline) when it has one."""
    ensemble = next((s for s in systems if s.kind == "ensemble"), None)
    if band is None or ensemble is None:
        return np.asarray(gate, dtype=bool)
    return np.asarray(gate, dtype=bool) | band.inside(ensemble.p_fake, ensemble.threshold)


def _transform_sets(scored: pd.DataFrame, transforms: Sequence[str], *, bundle: Bundle, clean: TransformSet,
                    fit: dict[str, Any], registry: Any, root: Path, band: Any) -> tuple[list[TransformSet], pd.DataFrame]:
    """The clean set, then each transform's scored copies with every system built on them.

    Returns:
        (the sets; every scored copy's path relative to ``root``, transform, label and p_fake per system).
    """
    vote_cols = [f"{a}_p_fake" for a in bundle.agent_names]
    sets = [clean]
    tables = []
    for name in transforms:
        rows = scored[(scored["role"] == EVAL) & (scored["transform"] == name)]
        ok = rows[rows["status"] == OK]
        systems: list[System] = []
        if len(ok):
            systems, _, _ = build_systems(bundle=bundle, votes=ok[vote_cols].to_numpy(np.float64),
                                          context={n: ok[context_column(n)].to_numpy(np.float64) for n in CONTEXTS},
                                          **fit)
        sets.append(TransformSet(name, bool(registry.is_composition(name)), ok["source_index"].to_numpy(int),
                                 ok["label"].to_numpy(int), systems, len(rows),
                                 int((rows["status"] == NO_FACE).sum()), int((rows["status"] == REJECTED).sum()),
                                 own_abstention(uncertain(ok["status"], ok["reason"]), systems, band)))
        tables.append(pd.DataFrame({"path": [os.path.relpath(p, root) for p in ok["path"]], "transform": name,
                                    "label": ok["label"].to_numpy(int), **{s.name: s.p_fake for s in systems}}))
    return sets, pd.concat(tables, ignore_index=True)


def _trust_section(bundle: Bundle, out_dir: Path) -> tuple[dict[str, Any], str, str] | None:
    """The controller's trust per agent per context bin: (table, markdown, PNG name), None without context."""
    from blackboard.controllers.store import load_controller
    from training.trust_plot import leading_agents, plot_trust_by_context, trust_by_context

    controller = load_controller(bundle)
    table = {} if controller is None else trust_by_context(controller)
    if not table:
        return None
    path = plot_trust_by_context(controller, out_dir / "trust_context.png")
    leaders = leading_agents(table)
    lines = ["The controller's log-odds weight for each agent (mean of the two classes it can speak for) in "
             "each bin of each context feature it reads (`trust_context.png`); most trusted agent per bin:", "",
             "| feature | " + " | ".join(f"bin {i}" for i in range(max(len(r) for r in table.values()))) + " |",
             "|---|" + "---|" * max(len(r) for r in table.values())]
    for name, rows in table.items():
        lines.append(f"| {name} | " + " | ".join(f"{r['label']}: **{leader}**" for r, leader in zip(rows, leaders[name]))
                     + " |")
    return {"bins": table, "leaders": leaders}, "\n".join(lines), path.name


def analyse(*, scored: pd.DataFrame, y: np.ndarray, sources: np.ndarray, eval_votes: np.ndarray,
            gate: np.ndarray, controller: Any, systems: Sequence[System], bundle: Bundle, fit: dict[str, Any], n_sources: int,
            transforms: Sequence[str], registry: Any, bootstrap: BootstrapConfig,
            out_dir: Path, root: Path) -> tuple[dict[str, Any], list[tuple[str, str]], dict[str, str]]:
    """Diversity and selective risk on the clean images, and every system per transform.

    Args:
        scored: every pipeline row (role, transform, source_index, label, status, votes, context).
        y, sources, eval_votes: labels, source index and votes (N, A) of the clean scored faces.
        gate: (N,) the faces the service's gate answers "uncertain" (training.evaluate_gate).
        controller: the ensemble's controller (its borderline band is the rest of its own abstention), or None.
        systems: the systems scored on them.
        fit: build_systems' fitting arguments (fit_votes, fit_labels, fit_description).
        n_sources: number of evaluated images.
        transforms: the ``--degrade`` transforms (empty: none).
        out_dir: where figures and ``degraded_predictions.csv`` go.
        root: the folder paths in ``degraded_predictions.csv`` are relative to.

    Returns:
        (metrics.json sections, report sections (title, markdown), figures title -> PNG name).
    """
    agents = list(bundle.agent_names)
    thresholds = _agent_thresholds(bundle)
    band = None if controller is None else borderline_for(controller, load_replay(bundle))
    abstained = own_abstention(gate, systems, band)
    result: dict[str, Any] = {}
    sections: list[tuple[str, str]] = []
    figures: dict[str, str] = {}
    div = {CLEAN_LABEL: diversity(y, eval_votes, thresholds, agents)}
    best = {CLEAN_LABEL: _best_single_accuracy(y, systems)}
    selective = {s.name: selective_curve(y, s.p_fake, s.threshold,
                                         abstained=abstained if s.kind == "ensemble" else None) for s in systems}
    result["selective"] = selective
    figures["Selective risk (clean images)"] = plot_selective(
        {s.name: (y, s.p_fake, s.threshold) for s in systems}, out_dir / "selective.png",
        own={n: c["own_abstention"] for n, c in selective.items() if "own_abstention" in c})
    trust = _trust_section(bundle, out_dir)
    if trust is not None:
        result["trust_by_context"], section, figures["Trust per agent per context bin"] = trust
        sections.append(("Trust by context", section))
    if transforms:
        rows = scored[(scored["role"] == EVAL) & (scored["transform"] == CLEAN)]
        clean = TransformSet(CLEAN_LABEL, False, sources, y, systems, len(rows), int((rows["status"] == NO_FACE).sum()),
                             int((rows["status"] == REJECTED).sum()), abstained)
        sets, copies = _transform_sets(scored, transforms, bundle=bundle, clean=clean, fit=fit, registry=registry,
                                       root=root, band=band)
        atomic_write_text(out_dir / "degraded_predictions.csv", copies.to_csv(index=False))
        degrade = score_transforms(sets, n_sources, bootstrap)
        degrade["transforms"] = list(transforms)
        degrade["seeds"] = ("per image and transform: the first 4 bytes (big-endian) of SHA-256 of "
                            "'<path relative to the data folder>\\0<transform>'")
        result["degrade"] = degrade
        for t in sets[1:]:
            if len(t.y):
                div[t.name] = diversity(t.y, np.stack([s.p_fake for s in t.systems if s.kind == "agent"], axis=1),
                                        thresholds, agents)
                best[t.name] = _best_single_accuracy(t.y, t.systems)
        figures["AUC per transform"] = plot_degrade(degrade, out_dir / "degrade_auc.png")
        focus = "ensemble" if any(s.name == "ensemble" for s in systems) else systems[0].name
        sections.append(("Degraded copies (--degrade)", "\n".join([
            "Every evaluated image again, through each transform of the screenshot benchmark "
            "(`vision.degrade`); copies of crops are scored whole, screenshots (marked) have their face "
            f"detected again. Copies without a face are left out of that row. {degrade['bootstrap']}.",
            f"`{POOLED}` pools every copy of every transform.", "",
            "AUC per system (change from clean in brackets):", "", auc_markdown(degrade), "",
            f"`{focus}` at its threshold per transform:", "", system_markdown(degrade, focus)])))
    result["diversity"] = div
    sections.append(("Agent diversity", "\n".join([
        "Errors of each agent at its own threshold. Error correlation: phi coefficient of two agents' "
        "error indicators; double fault: share of faces both get wrong; oracle accuracy: share of faces "
        "at least one agent gets right (the ceiling of any per-face choice of agent).", "",
        summary_markdown(div, best), "", "Agent pairs on the clean images:", "", pairs_markdown(div[CLEAN_LABEL])])))
    sections.append(("Selective risk", "\n".join([
        "Accuracy on the faces a system is most sure of, ranking by |p_fake - threshold| "
        f"(`selective.png`); metrics.json's `accuracy_at_10pct_abstention` withholds the least sure "
        f"{ABSTAIN_RATE:.0%}. The ensemble's own abstention is the service's 'uncertain' answer (too small, "
        "not face-shaped or out of distribution: `blackboard.ood`; or p_fake inside the borderline band: "
        "`blackboard.borderline`), shown as one point.", "",
        selective_markdown(selective)])))
    return result, sections, figures
