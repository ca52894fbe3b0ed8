"""Side-by-side comparison of every decider on val with group-aware cross-validation.

Each variant is fitted on the training folds and scored on the held-out fold (scikit-learn
``GroupKFold``, so a source-video group is never on both sides); the out-of-fold scores of all
folds are pooled for one AUC, and the per-fold AUCs give a spread and a paired difference
against stacking. Single agents, majority and mean need no fitting and are scored the same way.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Callable, Mapping, Sequence

import numpy as np
from sklearn.metrics import log_loss, roc_auc_score
from sklearn.model_selection import GroupKFold

from blackboard.combine import MajorityCombiner, MeanCombiner, StackingCombiner
from blackboard.combine_context import ContextStackingCombiner
from blackboard.controllers.ctxbins import BinnedConfig, BinnedLogOddsController
from blackboard.controllers.qtrust import ControllerConfig, QController
from blackboard.controllers.logodds import LogOddsConfig, LogOddsController

# fit(votes, labels, context) -> predict(votes, context) -> p_fake
FitPredict = Callable[[np.ndarray, np.ndarray, np.ndarray | None], Callable[[np.ndarray, np.ndarray | None], np.ndarray]]


@dataclass(frozen=True)
class Variant:
    """One decider in the comparison."""

    name: str  # row name in the table
    kind: str  # "agent", "baseline", "controller"
    fit: FitPredict  # trains on the training folds, returns a scorer for the held-out fold
    context: tuple[str, ...] = ()  # context features it reads (columns of the context mapping)


def _fixed(score: Callable[[np.ndarray], np.ndarray]) -> FitPredict:
    return lambda votes, labels, ctx: (lambda v, c: score(v))


def _fitted(make: Callable[[], Any]) -> FitPredict:
    def fit(votes: np.ndarray, labels: np.ndarray, ctx: np.ndarray | None):
        combiner = make().fit(votes, labels)
        return lambda v, c: combiner.predict_proba(v)
    return fit


def _controller(make: Callable[[], Any]) -> FitPredict:
    def fit(votes: np.ndarray, labels: np.ndarray, ctx: np.ndarray | None):
        ctrl = make().fit(votes, labels, context=ctx)
        return lambda v, c: ctrl.predict_proba(v, None, c)
    return fit


def default_variants(agents: Sequence[str], context_names: Sequence[str] = ()) -> list[Variant]:
    """Each agent, majority, mean, stacking, Q-trust, log-odds (both rewards), log-odds + each context."""
    agents = list(agents)
    rows = [Variant(a, "agent", _fixed(lambda v, j=j: v[:, j])) for j, a in enumerate(agents)]
    rows += [
        Variant("majority", "baseline", _fixed(MajorityCombiner(agents).predict_proba)),
        Variant("mean", "baseline", _fixed(MeanCombiner(agents).predict_proba)),
        Variant("stacking", "baseline", _fitted(lambda: StackingCombiner(agents))),
        Variant("qtrust", "controller", _controller(lambda: QController(agents, ControllerConfig()))),
        Variant("logodds", "controller", _controller(lambda: LogOddsController(agents, LogOddsConfig()))),
        Variant("logodds-reinforce", "controller",
                _controller(lambda: LogOddsController(agents, LogOddsConfig(reward="reinforce")))),
    ]
    for name in context_names:
        cfg = replace(LogOddsConfig(), context=(name,))
        rows.append(Variant(f"logodds+{name}", "controller",
                            _controller(lambda cfg=cfg: LogOddsController(agents, cfg)), context=(name,)))
    return rows


def _context_stacking(agents: Sequence[str], names: Sequence[str]) -> FitPredict:
    def fit(votes: np.ndarray, labels: np.ndarray, ctx: np.ndarray | None):
        combiner = ContextStackingCombiner(agents, names).fit(votes, labels, ctx)
        return lambda v, c: combiner.predict_proba(v, None, c)
    return fit


def context_variants(agents: Sequence[str], feature_sets: Mapping[str, Sequence[str]], *,
                     bins: Sequence[int] = (3,)) -> list[Variant]:
    """For each named feature set: the smooth (linear) log-odds controller, the binned one at each
    bin count, and stacking on the same features (the fair baseline)."""
    agents = list(agents)
    rows = []
    for label, names in feature_sets.items():
        names = tuple(names)
        cfg = replace(LogOddsConfig(), context=names)
        rows.append(Variant(f"logodds+{label}", "controller",
                            _controller(lambda cfg=cfg: LogOddsController(agents, cfg)), context=names))
        for b in bins:
            bcfg = BinnedConfig(context=names, bins=b)
            rows.append(Variant(f"bins{b}+{label}", "controller",
                                _controller(lambda bcfg=bcfg: BinnedLogOddsController(agents, bcfg)), context=names))
        rows.append(Variant(f"stacking+{label}", "baseline", _context_stacking(agents, names), context=names))
    return rows


def cross_validate(votes: np.ndarray, labels: np.ndarray, groups: Sequence[Any], variants: Sequence[Variant], *,
                   context: Mapping[str, np.ndarray] | None = None, n_splits: int = 5,
                   reference: str = "stacking",
                   subsets: Mapping[str, np.ndarray] | None = None) -> dict[str, dict[str, Any]]:
    """Out-of-fold scores of every variant.

    Args:
        votes: (N, A) calibrated p_fake of the val split.
        labels: (N,) 0 = real, 1 = fake.
        groups: (N,) source-video group of each row (a group never straddles folds).
        variants: the deciders to compare.
        context: feature name -> (N,) values, for variants that read context.
        n_splits: GroupKFold folds.
        reference: variant the per-fold paired differences are taken against.
        subsets: optional name -> (N,) boolean rows (e.g. "clean", "degraded"): each variant also
            gets ``auc_<name>``, the pooled out-of-fold AUC on those rows.

    Returns:
        name -> {kind, auc (pooled out-of-fold), auc_folds, auc_mean, auc_std, log_loss,
        delta_vs_<reference>_mean, delta_vs_<reference>_std, folds_better}.
    """
    votes = np.asarray(votes, dtype=np.float64)
    labels = np.asarray(labels, dtype=int)
    splits = list(GroupKFold(n_splits=n_splits).split(votes, labels, np.asarray(groups)))
    scores: dict[str, np.ndarray] = {}
    for variant in variants:
        ctx = None if not variant.context else np.stack([np.asarray(context[k], float) for k in variant.context], 1)
        p = np.zeros(len(labels))
        for train, test in splits:
            scorer = variant.fit(votes[train], labels[train], None if ctx is None else ctx[train])
            p[test] = scorer(votes[test], None if ctx is None else ctx[test])
        scores[variant.name] = p
    fold_auc = {name: np.array([roc_auc_score(labels[t], p[t]) for _, t in splits]) for name, p in scores.items()}
    ref = fold_auc.get(reference)
    table: dict[str, dict[str, Any]] = {}
    for variant in variants:
        p, folds = scores[variant.name], fold_auc[variant.name]
        row = {"kind": variant.kind, "auc": float(roc_auc_score(labels, p)), "auc_folds": [float(a) for a in folds],
               "auc_mean": float(folds.mean()), "auc_std": float(folds.std()),
               "log_loss": float(log_loss(labels, np.clip(p, 1e-7, 1 - 1e-7)))}
        for subset, rows in (subsets or {}).items():
            row[f"auc_{subset}"] = float(roc_auc_score(labels[rows], p[rows]))
        if ref is not None:
            delta = folds - ref
            row.update({f"delta_vs_{reference}_mean": float(delta.mean()), f"delta_vs_{reference}_std": float(delta.std()),
                        "folds_better": int((delta > 0).sum())})
        table[variant.name] = row
    return table


def format_table(table: Mapping[str, Mapping[str, Any]], reference: str = "stacking") -> str:
    """A markdown table of the comparison."""
    key = f"delta_vs_{reference}_mean"
    lines = [f"| system | kind | CV AUC (pooled) | fold AUC mean ± sd | log-loss | Δ vs {reference} (folds better) |",
             "|---|---|---|---|---|---|"]
    for name, row in table.items():
        delta = f"{row[key]:+.4f} ({row['folds_better']}/{len(row['auc_folds'])})" if key in row else "n/a"
        lines.append(f"| {name} | {row['kind']} | {row['auc']:.4f} | {row['auc_mean']:.4f} ± {row['auc_std']:.4f} "
                     f"| {row['log_loss']:.4f} | {delta} |")
    return "\n".join(lines)
