"""`fakeface fit-controller`: learn the RL controller on a manifest's val split and store it.

Collects every agent's calibrated p_fake on the split (through the stages `fakeface batch` runs,
in this process or on Ray Data with ``--ray-address``; cached, see ``training.votes``) and the
case context the controller reads, holds a group-aware share of the split out as the replay set,
fits the controller (default: the log-odds rule with blur context; ``--kind qtrust`` for the
original trust table) and the baselines (majority, mean, stacking) on the rest, and saves all
three in the bundle as one new controller version (older ones kept for rollback). It prints the
learned table and metrics on the held-out replay rows. The test split is refused: it is for
`fakeface evaluate` only.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.metrics import accuracy_score, roc_auc_score
from sklearn.model_selection import GroupShuffleSplit

from agents.bundle import BundleError, load_bundle, update_bundle
from agents.errors import raised_as, read_bytes
from agents.labels import CLASSES
from blackboard.calibration import check_prior
from blackboard.combine import CONTEXT_STACKING, baselines_to_json, fit_baselines
from blackboard.combine_context import ContextStackingCombiner
from blackboard.borderline import KEY as BORDERLINE_KEY, fit_borderline
from blackboard.controllers.base import Controller, check_config_keys, controller_kinds
from blackboard.controllers.store import ReplaySet, save_controller
from blackboard.decision import decide_matrix
from training.calibrate import refit_agent_calibration
from training.cli_args import add_vote_cache_args, fit_parser, run_command
from training.votes import collect_context, collect_votes, read_manifest_split
from vision.context import ALIASES, CONTEXT_NAMES, check_names

# kind -> (rule, its config class), every registered learning rule.
KINDS = {kind: (cls, cls.config_class) for kind, cls in controller_kinds().items()}
DEFAULT_KIND = "logodds"  # best of the variants in the group-aware CV on val (docs/usage/fit-controller.md)
DEFAULT_CONTEXT = "blur"  # context that measured better in the same CV
# Command-line flags that override config fields (flag dest == field name); each kind takes its own.
OVERRIDES = ("alpha", "epsilon", "epochs", "seed", "weight_map", "gamma", "beta", "calibration", "threshold_rule",
             "lr", "online_lr", "reward", "l2", "bins")


def _prior(text: str) -> float | str:
    """--prior: a share in (0, 1), or "none" (kept as text until the config is built)."""
    if text.strip().lower() == "none":
        return "none"
    try:
        value = float(text)
        check_prior(value)  # the calibrator's own check
    except ValueError as err:
        raise argparse.ArgumentTypeError(f'expected a fake share in (0, 1) or "none", received {text!r}') from err
    return value


def build_parser(prog: str = "fakeface fit-controller") -> argparse.ArgumentParser:
    """The command's arguments."""
    parser = fit_parser(prog, __doc__)
    parser.add_argument("--split", default="val", help="split to fit on (default val; test is refused)")
    parser.add_argument("--kind", choices=sorted(KINDS), default=DEFAULT_KIND,
                        help=f"learning rule (default {DEFAULT_KIND}; qtrust = the original trust table)")
    parser.add_argument("--context", default=DEFAULT_CONTEXT,
                        help=f'comma-separated case context for logodds and logodds-bins, from {list(CONTEXT_NAMES)} '
                             f'(default "{DEFAULT_CONTEXT}"; "none" = no context)')
    parser.add_argument("--bins", type=int, help="logodds-bins: quantile bins per context feature")
    parser.add_argument("--degraded-copies", dest="degraded_copies", type=int, default=1,
                        help="screenshot-like copies of each image (vision.degrade.random_chain) added to the "
                             "fitting votes (default 1; 0 = clean images only)")
    parser.add_argument("--detected-copies", dest="detected_copies", type=int, default=0,
                        help="more copies whose chain may place the face in a player or phone screenshot, each "
                             "face then found as serving finds it, at its own size (default 0)")
    parser.add_argument("--no-fragile", dest="fragile", action="store_false",
                        help="skip fitting the degraded-copy check's margin on the replay rows (blackboard.fragile)")
    parser.add_argument("--fragile-abstain", type=float, default=0.10,
                        help="share of replay faces the degraded-copy check may answer uncertain (default 0.10)")
    parser.add_argument("--replay-fraction", type=float, default=0.2,
                        help="share of the split's groups held out as the feedback replay set (default 0.2)")
    parser.add_argument("--config", help="YAML/JSON file of config fields of the chosen kind")
    parser.add_argument("--alpha", type=float, help="qtrust: trust learning rate")
    parser.add_argument("--epsilon", type=float, help="qtrust: exploration rate while learning")
    parser.add_argument("--weight-map", dest="weight_map", choices=("power", "exp"), help="qtrust: trust -> weight map")
    parser.add_argument("--gamma", type=float, help="qtrust: exponent of the power weight map")
    parser.add_argument("--beta", type=float, help="qtrust: slope of the exp weight map")
    parser.add_argument("--lr", type=float, help="logodds: policy-gradient step size")
    parser.add_argument("--online-lr", dest="online_lr", type=float, help="logodds: step size of one feedback update")
    parser.add_argument("--reward", choices=("log", "reinforce"), help="logodds: reward of a decision")
    parser.add_argument("--l2", type=float, help="logodds: pull toward the starting weights")
    parser.add_argument("--epochs", type=int, help="passes over the split")
    parser.add_argument("--seed", type=int, help="seed for shuffling, exploration and the replay hold-out")
    parser.add_argument("--calibration", choices=("platt", "isotonic", "none"), help="score calibration")
    parser.add_argument("--threshold-rule", dest="threshold_rule",
                        help='threshold on p_fake: "f0.5" (default), "f1", "youden" or "fixed:0.5"')
    parser.add_argument("--prior", type=_prior,
                        help='fake share the probabilities assume (default 0.5; "none" = the split\'s own share)')
    parser.add_argument("--agent-calibration", dest="agent_calibration", choices=("refit", "keep"), default="refit",
                        help="refit: each agent's temperature and bias are refitted on the fitting votes for the same "
                             "fake share as --prior, so an agent's own probability states the same odds as the "
                             "ensemble's (its decisions unchanged); keep: as training fitted them (default refit)")
    parser.add_argument("--batch-size", type=int, default=64, help="images per forward pass")
    parser.add_argument("--ray-address", default=None,
                        help="collect the votes on this Ray cluster with Ray Data ('local': a new loopback-only local "
                             "Ray; default: in this process, unless $RAY_ADDRESS names a cluster)")
    add_vote_cache_args(parser)
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    return parser


def load_config(path: str | None, args: argparse.Namespace) -> Any:
    """The chosen kind's config from an optional YAML/JSON file, then command-line overrides."""
    data: dict[str, Any] = {}
    if path:
        file = Path(path)
        text = read_bytes(file, error=ValueError, what="config file")
        import yaml  # YAML is a superset of JSON, so one parser reads both

        with raised_as(ValueError, f"Config file {file} is not valid YAML/JSON", catch=(yaml.YAMLError,)):
            loaded = yaml.safe_load(text)
        if loaded is not None and not isinstance(loaded, dict):
            raise ValueError(f"Config file {file} must hold a mapping of config fields.")
        data.update(loaded or {})
    kind = getattr(args, "kind", DEFAULT_KIND)
    config_class = KINDS[kind][1]
    for key in OVERRIDES:
        value = getattr(args, key, None)
        if value is not None:
            if key not in config_class.__dataclass_fields__:
                raise ValueError(f"--{key.replace('_', '-')} does not apply to --kind {kind}.")
            data[key] = value
    prior = getattr(args, "prior", None)
    if prior is not None:
        data["prior"] = None if prior == "none" else prior
    context = getattr(args, "context", None)
    if "context" in config_class.__dataclass_fields__ and context is not None and "context" not in data:
        data["context"] = [] if context in ("", "none") else [c.strip() for c in context.split(",") if c.strip()]
    return config_class(**check_config_keys(config_class, data, kind=kind))


def replay_holdout(groups: np.ndarray, labels: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(fit rows, replay rows): whole groups held out (sklearn GroupShuffleSplit), both classes in each."""
    if not 0.0 < fraction < 0.5:
        raise ValueError(f"--replay-fraction must be in (0, 0.5), received {fraction}.")
    for attempt in range(20):
        fit, replay = next(GroupShuffleSplit(n_splits=1, test_size=fraction, random_state=seed + attempt)
                           .split(labels, labels, groups))
        if len(np.unique(labels[fit])) == 2 and len(np.unique(labels[replay])) == 2:
            return fit, replay
    raise ValueError("Could not hold out a replay set with both classes; the split needs more groups of each class.")


def fit_fragile(bundle: Any, controller: Controller, paths: list[Path], votes: np.ndarray, labels: np.ndarray,
                context: np.ndarray | None, *, abstain: float, batch_size: int) -> dict[str, Any]:
    """The degraded-copy check's margin (``blackboard.fragile.fit_margin``) on held-out replay faces."""
    from blackboard.fragile import DEFAULT_COPIES, fit_margin
    from training.degraded_votes import collect_copy_votes

    copy_votes = collect_copy_votes(bundle, paths, DEFAULT_COPIES, batch_size=batch_size)
    p = decide_matrix(votes, controller.agents, controller, context=context).p_fake
    p_copies = np.stack([decide_matrix(v, controller.agents, controller, context=context).p_fake for v in copy_votes])
    return {**fit_margin(p, p_copies, labels, controller.threshold, abstain=abstain),
            "copies": list(DEFAULT_COPIES), "faces": int(len(labels))}


def val_report(controller: Controller, votes: np.ndarray, labels: np.ndarray, thresholds: dict[str, float],
               baselines: dict[str, Any], context: np.ndarray | None = None) -> dict:
    """ROC AUC and accuracy of the ensemble (the shared decision rule), each agent and the baselines."""
    rows: dict[str, dict[str, float]] = {}

    def add(name: str, p: np.ndarray, threshold: float) -> None:
        both = len(np.unique(labels)) == 2
        rows[name] = {"roc_auc": float(roc_auc_score(labels, p)) if both else float("nan"),
                      "accuracy": float(accuracy_score(labels, (p >= threshold).astype(int))),
                      "threshold": float(threshold)}

    decided = decide_matrix(votes, controller.agents, controller, context=context)
    add("ensemble", decided.p_fake, decided.threshold)
    for i, agent in enumerate(controller.agents):
        add(agent, votes[:, i], thresholds.get(agent, 0.5))
    for name, combiner in baselines.items():
        reads = getattr(combiner, "context_names", ())
        add(name, combiner.predict_proba(votes, None, context) if reads else combiner.predict_proba(votes), 0.5)
    return rows


def format_report(controller: Controller, metrics: dict, where: str, bundle_path: Path) -> str:
    """Human-readable learned table and metrics."""
    trust, weights = controller.trust(), controller.weights()
    lines = [f"controller {controller.version} ({controller.kind}) saved in {bundle_path}", "",
             f"{'agent':<12}" + "".join(f"{'Q_' + c:>10}{'w_' + c:>10}" for c in CLASSES)]
    for agent in controller.agents:
        lines.append(f"{agent:<12}" + "".join(f"{trust[agent][c]:>10.3f}{weights[agent][c]:>10.3f}" for c in CLASSES))
    lines += ["", f"threshold {controller.threshold:.3f} ({controller.config.threshold_rule}), "
                  f"calibration {controller.calibrator.kind}, probabilities for a fake share of "
                  f"{'the split' if controller.config.prior is None else controller.config.prior}", "",
              f"metrics on {where}:", f"{'system':<12}{'roc_auc':>10}{'accuracy':>10}{'threshold':>11}"]
    for name, row in metrics.items():
        lines.append(f"{name:<12}{row['roc_auc']:>10.4f}{row['accuracy']:>10.4f}{row['threshold']:>11.3f}")
    fragile = controller.fitted_on.get("fragile")
    if fragile:
        lines.append(f"degraded-copy check ({', '.join(fragile['copies'])}): margin {fragile['margin']:.3f} answers "
                     f"{fragile['abstain']:.1%} of {fragile['faces']} clean replay faces uncertain; accuracy of the "
                     f"answered {fragile['accuracy_answered']:.4f} vs all {fragile['accuracy_all']:.4f}")
    for entry in controller.history:
        lines.append("epoch " + ", ".join(f"{k} {v:.4g}" for k, v in entry.items() if k != "epoch"))
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    """Fits and saves the controller, its baselines and its replay set; returns the exit code."""
    if args.split == "test":
        raise ValueError("Refusing --split test: the test split is for `fakeface evaluate` only; fit on --split val.")
    if args.batch_size < 1:
        raise ValueError(f"--batch-size must be >= 1, received {args.batch_size}.")
    config = load_config(args.config, args)
    names = tuple(getattr(config, "context", ()))
    check_names(names)  # a misspelt feature is refused before any model loads or votes
    bundle = load_bundle(args.bundle)
    paths, labels, groups = read_manifest_split(args.manifest, args.split, with_groups=True)
    votes = collect_votes(bundle, paths, batch_size=args.batch_size, progress=not args.no_progress,
                          cache_dir=args.cache_dir, use_cache=not args.no_cache,
                          ray_address=getattr(args, "ray_address", None))
    # Every feature is kept (the replay set carries them all); the rule reads its own columns.
    all_context = collect_context(paths, CONTEXT_NAMES)
    n_clean = len(paths)
    for copies, detected in ((args.degraded_copies, False), (getattr(args, "detected_copies", 0), True)):
        if copies < 1:
            continue
        from training.degraded_votes import collect_degraded  # imports the degradations only when used

        more_votes, more_context, source = collect_degraded(
            bundle, paths, copies=copies, seed=getattr(config, "seed", 0), batch_size=args.batch_size,
            progress=not args.no_progress, cache_dir=args.cache_dir, use_cache=not args.no_cache, detected=detected)
        votes, all_context = np.concatenate([votes, more_votes]), np.concatenate([all_context, more_context])
        labels, groups = np.concatenate([labels, labels[source]]), np.concatenate([groups, groups[source]])
    ok = np.isfinite(votes).all(axis=1)
    row_path = np.arange(len(ok))  # which image a row is (copies: beyond n_clean)
    votes, labels, groups, all_context, row_path = votes[ok], labels[ok], groups[ok], all_context[ok], row_path[ok]
    columns = [CONTEXT_NAMES.index(ALIASES.get(n, n)) for n in names]
    context = all_context[:, columns] if names else None
    if len(np.unique(labels)) < 2:
        raise ValueError(f"Split {args.split!r} of {args.manifest} needs both real and fake images "
                         f"with readable files; it has {len(labels)} usable rows of one class.")
    fit, replay = replay_holdout(groups, labels, args.replay_fraction, getattr(config, "seed", 0))
    if getattr(args, "agent_calibration", "keep") == "refit":
        votes, updates = refit_agent_calibration(bundle, votes, labels, getattr(config, "prior", 0.5), rows=fit)
        if updates:  # the degraded-copy check below scores new copies: it must see the new calibration
            bundle = update_bundle(bundle.path, agent_updates=updates)
    cls = KINDS[args.kind][0]
    agents = bundle.agent_names
    controller = cls(agents, config).fit(votes[fit], labels[fit], context=None if context is None else context[fit])
    baselines = fit_baselines(agents, votes[fit], labels[fit])
    if context is not None:  # stacking sees the same context as the controller
        baselines[CONTEXT_STACKING] = ContextStackingCombiner(agents, names).fit(votes[fit], labels[fit], context[fit])
    thresholds = {a: bundle.agent(a).threshold for a in agents}
    metrics = val_report(controller, votes[replay], labels[replay], thresholds, baselines,
                         None if context is None else context[replay])
    if args.fragile:
        clean = replay[row_path[replay] < n_clean]
        controller.fitted_on["fragile"] = fit_fragile(bundle, controller, [paths[i] for i in row_path[clean]],
                                                      votes[clean], labels[clean],
                                                      None if context is None else context[clean],
                                                      abstain=args.fragile_abstain, batch_size=args.batch_size)
    controller.fitted_on.update({"manifest": str(args.manifest), "split": args.split,
                                 "degraded_copies": int(args.degraded_copies),
                                 "detected_copies": int(getattr(args, "detected_copies", 0)),
                                 "bundle_version": bundle.version, "replay_cases": int(len(replay)),
                                 "metrics_replay": metrics["ensemble"]})
    # The "can't tell — borderline" band, fitted on the same held-out rows (blackboard.borderline).
    replay_context = None if context is None else context[replay]
    controller.fitted_on[BORDERLINE_KEY] = fit_borderline(
        controller.predict_proba(np.where(np.isfinite(votes[replay]), votes[replay], 0.5), np.isfinite(votes[replay]),
                                 replay_context), labels[replay], float(controller.threshold)).to_dict()
    fitted_on = {"manifest": str(args.manifest), "split": args.split, "cases": int(len(fit))}
    saved = save_controller(bundle.path, controller, baselines=baselines_to_json(baselines, fitted_on=fitted_on),
                            replay=ReplaySet(tuple(agents), votes[replay], labels[replay],
                                             context={**{n: all_context[replay, j] for j, n in enumerate(CONTEXT_NAMES)},
                                                      **{n: all_context[replay, CONTEXT_NAMES.index(k)]
                                                         for n, k in ALIASES.items()}}))
    where = f"the {len(replay)} held-out replay rows of split {args.split!r} (not used for fitting)"
    if args.json:
        print(json.dumps({"version": controller.version, "kind": controller.kind, "bundle": str(saved.path),
                          "config": asdict(config), "summary": controller.summary(), "metrics": metrics}, indent=2))
    else:
        print(format_report(controller, metrics, where, saved.path))
    return 0


def main(argv: list[str]) -> int:
    """Entry point of `fakeface fit-controller`; errors are one line and exit code 2."""
    return run_command("fakeface fit-controller", run, build_parser().parse_args(argv),
                       (BundleError, ValueError, OSError))
