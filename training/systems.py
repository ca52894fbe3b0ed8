"""The systems an evaluation scores: each agent, the baseline combiners, the RL ensemble, and an ablation.

Every system decides through `blackboard.decision` (the same code as serving and batch), on a
vote matrix (N, A) in the bundle's agent order.
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from agents.bundle import Bundle
from blackboard.combine import BASELINE_NAMES, CONTEXT_STACKING, MajorityCombiner, MeanCombiner, fit_baselines
from blackboard.decision import decide_matrix
from training.metrics import System


class ContextError(ValueError):
    """The controller reads a context column the evaluation does not compute."""


def build_systems(
    *,
    bundle: Bundle,
    votes: np.ndarray,
    fit_votes: np.ndarray | None,
    fit_labels: np.ndarray | None,
    fit_description: str,
    context: Mapping[str, np.ndarray] | np.ndarray | None = None,
) -> tuple[list[System], dict[str, str], Any]:
    """Every agent, the baselines and the ensemble, scored on ``votes`` (N, A).

    Majority, mean and stacking come from the bundle (stored with its controller at fit time);
    a bundle made before they were stored gets them fitted on the fitting data when there is
    some. The ensemble is ``blackboard.decision.decide`` with the bundle's controller (one is
    fitted on the fitting data when the bundle has none).

    Returns:
        (systems, unavailable name -> reason, the controller or None).
    """
    from blackboard.controllers.logodds import LogOddsController
    from blackboard.controllers.store import load_baselines, load_controller

    agents = bundle.agent_names
    systems = []
    for i, agent in enumerate(agents):
        info = bundle.agent(agent)
        systems.append(System(agent, "agent", votes[:, i], info.threshold,
                              f"bundle threshold {info.threshold:.3f} ({info.threshold_rule})"))
    unavailable: dict[str, str] = {}
    can_fit = fit_votes is not None and len(fit_votes) > 0 and len(np.unique(fit_labels)) == 2
    if fit_votes is not None and not can_fit:
        fit_description += f", which has {len(fit_votes)} scored images, not both classes"
    baselines, source = load_baselines(bundle), "stored in the bundle with its controller"
    if baselines is None and can_fit:
        baselines, source = fit_baselines(agents, fit_votes, fit_labels), f"fitted here on {fit_description}"
    notes = {"majority": "majority of agent verdicts at p_fake >= 0.5", "mean": "mean of agent p_fake",
             "stacking": "logistic regression on agent logits"}
    if baselines is None:  # majority and mean have no parameters; stacking needs fitting
        baselines, source = {"majority": MajorityCombiner(agents), "mean": MeanCombiner(agents)}, "no parameters"
    for name in BASELINE_NAMES:
        if name not in baselines:
            unavailable[name] = (f"the bundle stores no fitted baselines (its controller predates them) and there "
                                 f"is no fitting data ({fit_description}); refit with `fakeface fit-controller`")
            continue
        combiner = baselines[name]
        columns = [agents.index(a) for a in combiner.agents]
        systems.append(System(name, "baseline", combiner.predict_proba(votes[:, columns]), 0.5,
                              f"{notes[name]} ({source}); threshold 0.5"))
    if CONTEXT_STACKING in baselines:
        combiner = baselines[CONTEXT_STACKING]
        try:
            p = combiner.predict_proba(votes[:, [agents.index(a) for a in combiner.agents]], None,
                                       _context_of(combiner, context))
            systems.append(System(CONTEXT_STACKING, "baseline", p, 0.5, f"stacking on agent logits, the context "
                                  f"{combiner.context_names} and their products ({source}); threshold 0.5"))
        except ContextError as err:
            unavailable[CONTEXT_STACKING] = str(err)
    controller = load_controller(bundle)
    if controller is not None:
        note = f"controller {controller.version} ({controller.kind}) from the bundle"
    elif can_fit:
        controller = LogOddsController(agents).fit(fit_votes, fit_labels)
        note = f"the bundle has no controller: fitted here on {fit_description} with default settings"
    else:
        unavailable["ensemble"] = (f"the bundle has no controller, and one cannot be fitted without val votes "
                                   f"(fitting data: {fit_description})")
    if controller is not None:
        decided = decide_matrix(votes, agents, controller, context=_context_of(controller, context))
        systems.append(System("ensemble", "ensemble", decided.p_fake, decided.threshold,
                              f"{note}; threshold {decided.threshold:.3f}"))
    return systems, unavailable, controller


def _context_of(controller: Any, context: Mapping[str, np.ndarray] | np.ndarray | None) -> np.ndarray | None:
    """The (N, K) context columns a controller reads, from the pipeline's columns (feature name ->
    (N,) values; a bare array is the "blur" column alone, as evaluations before vision.context had)."""
    names = controller.context_names
    if context is None or not names:
        return None
    columns = context if isinstance(context, Mapping) else {"blur": np.asarray(context, dtype=np.float64)}
    missing = [n for n in names if n not in columns]
    if missing:
        raise ContextError(f"The controller reads context {names}; evaluate computes only {tuple(columns)}.")
    return np.stack([np.asarray(columns[n], dtype=np.float64) for n in names], axis=1)


def ablation(y: np.ndarray, votes: np.ndarray, agents: list[str], controller: Any,
             context: Mapping[str, np.ndarray] | np.ndarray | None = None) -> dict[str, dict[str, float | None]]:
    """ROC AUC of the ensemble with each agent's votes withheld (the controller's missing-vote path).

    Returns:
        agent -> {"auc": AUC without it, "delta_auc": that minus the full ensemble's AUC}.
    """
    from sklearn.metrics import roc_auc_score

    if controller is None or len(np.unique(y)) < 2:
        return {}
    ctx = _context_of(controller, context)
    full = roc_auc_score(y, decide_matrix(votes, agents, controller, context=ctx).p_fake)
    out: dict[str, dict[str, float | None]] = {}
    for j, agent in enumerate(agents):
        without = votes.copy()
        without[:, j] = np.nan
        auc = float(roc_auc_score(y, decide_matrix(without, agents, controller, context=ctx).p_fake))
        out[agent] = {"auc": auc, "delta_auc": auc - float(full)}
    return out
