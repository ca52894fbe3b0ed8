"""`fakeface fit-controller`: learn the RL controller's trust table on a manifest's val split.

Collects every agent's calibrated p_fake on the split (cached, see ``training.votes``), fits a
``QController``, stores it in the bundle as a new controller version (older ones kept for
rollback) and prints the trust table with val metrics of the ensemble and of each agent.
The test split is refused: it is for `fakeface evaluate` only.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.metrics import accuracy_score, roc_auc_score

from agents.bundle import BundleError, load_bundle
from agents.labels import CLASSES
from blackboard.combine import MajorityCombiner, MeanCombiner
from blackboard.controller import ControllerConfig, QController, save_controller
from training.votes import collect_votes, read_manifest_split

# Command-line flags that override fields of ControllerConfig (flag dest -> field).
OVERRIDES = ("alpha", "epsilon", "epochs", "seed", "weight_map", "gamma", "beta", "calibration", "threshold_rule")


def build_parser(prog: str = "fakeface fit-controller") -> argparse.ArgumentParser:
    """The command's arguments."""
    parser = argparse.ArgumentParser(prog=prog, description=__doc__.splitlines()[0])
    parser.add_argument("--bundle", required=True, help="model bundle directory (updated in place, atomically)")
    parser.add_argument("--manifest", required=True, help="dataset manifest CSV (path,label,group,split,...)")
    parser.add_argument("--split", default="val", help="split to fit on (default val; test is refused)")
    parser.add_argument("--config", help="YAML/JSON file of ControllerConfig fields")
    parser.add_argument("--alpha", type=float, help="trust learning rate")
    parser.add_argument("--epsilon", type=float, help="exploration rate while learning")
    parser.add_argument("--epochs", type=int, help="passes over the split")
    parser.add_argument("--seed", type=int, help="seed for shuffling and exploration")
    parser.add_argument("--weight-map", dest="weight_map", choices=("power", "exp"), help="trust -> weight map")
    parser.add_argument("--gamma", type=float, help="exponent of the power weight map")
    parser.add_argument("--beta", type=float, help="slope of the exp weight map")
    parser.add_argument("--calibration", choices=("platt", "isotonic", "none"), help="score calibration")
    parser.add_argument("--threshold-rule", dest="threshold_rule",
                        help='threshold on p_fake: "f0.5" (default), "f1", "youden" or "fixed:0.5"')
    parser.add_argument("--batch-size", type=int, default=64, help="images per forward pass")
    parser.add_argument("--cache-dir", help="vote cache folder (default ~/.cache/fakeface/votes)")
    parser.add_argument("--no-cache", action="store_true", help="recompute votes, do not cache them")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    return parser


def load_config(path: str | None, args: argparse.Namespace) -> ControllerConfig:
    """ControllerConfig from an optional YAML/JSON file, then command-line overrides."""
    data: dict[str, Any] = {}
    if path:
        file = Path(path)
        if not file.is_file():
            raise ValueError(f"Config file {file} not found.")
        import yaml  # YAML is a superset of JSON, so one parser reads both

        try:
            loaded = yaml.safe_load(file.read_text())
        except yaml.YAMLError as err:
            raise ValueError(f"Config file {file} is not valid YAML/JSON: {err}") from err
        if loaded is not None and not isinstance(loaded, dict):
            raise ValueError(f"Config file {file} must hold a mapping of ControllerConfig fields.")
        data.update(loaded or {})
    for key in OVERRIDES:
        value = getattr(args, key, None)
        if value is not None:
            data[key] = value
    return ControllerConfig.from_dict(data)


def val_report(controller: QController, votes: np.ndarray, labels: np.ndarray, thresholds: dict[str, float]) -> dict:
    """ROC AUC and accuracy of the ensemble, each agent and two baselines (sklearn)."""
    rows: dict[str, dict[str, float]] = {}

    def add(name: str, p: np.ndarray, threshold: float) -> None:
        rows[name] = {
            "roc_auc": float(roc_auc_score(labels, p)),
            "accuracy": float(accuracy_score(labels, (p >= threshold).astype(int))),
            "threshold": float(threshold),
        }

    add("ensemble", controller.predict_proba(votes), controller.threshold)
    for i, agent in enumerate(controller.agents):
        add(agent, votes[:, i], thresholds.get(agent, 0.5))
    add("majority", MajorityCombiner(controller.agents).predict_proba(votes), 0.5)
    add("mean", MeanCombiner(controller.agents).predict_proba(votes), 0.5)
    return rows


def format_report(controller: QController, metrics: dict, split: str, bundle_path: Path) -> str:
    """Human-readable trust table and metrics."""
    trust = controller.trust()
    weights = controller.weights()
    lines = [f"controller {controller.version} saved in {bundle_path}", "",
             f"{'agent':<12}" + "".join(f"{'Q_' + c:>10}{'w_' + c:>10}" for c in CLASSES)]
    for agent in controller.agents:
        lines.append(f"{agent:<12}" + "".join(f"{trust[agent][c]:>10.3f}{weights[agent][c]:>10.3f}" for c in CLASSES))
    lines += ["", f"threshold {controller.threshold:.3f} ({controller.config.threshold_rule}), "
                  f"calibration {controller.calibrator.kind}", "",
              f"{split} metrics (the ensemble is fitted on this split, so its numbers are optimistic; "
              "use `fakeface evaluate` on test):",
              f"{'system':<12}{'roc_auc':>10}{'accuracy':>10}{'threshold':>11}"]
    for name, row in metrics.items():
        lines.append(f"{name:<12}{row['roc_auc']:>10.4f}{row['accuracy']:>10.4f}{row['threshold']:>11.3f}")
    for entry in controller.history:
        lines.append(
            f"epoch {entry['epoch']}: epsilon {entry['epsilon']:.3f}, explored {entry['explored']}, "
            f"mean reward greedy {entry['mean_reward_greedy']:+.3f}, exploring {entry['mean_reward_explore']:+.3f}"
        )
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    """Fits and saves the controller; returns the exit code."""
    if args.split == "test":
        raise ValueError("Refusing --split test: the test split is for `fakeface evaluate` only; fit on --split val.")
    if args.batch_size < 1:
        raise ValueError(f"--batch-size must be >= 1, received {args.batch_size}.")
    config = load_config(args.config, args)
    bundle = load_bundle(args.bundle)
    paths, labels = read_manifest_split(args.manifest, args.split)
    votes = collect_votes(bundle, paths, batch_size=args.batch_size, progress=not args.no_progress,
                          cache_dir=args.cache_dir, use_cache=not args.no_cache)
    ok = np.isfinite(votes).all(axis=1)
    votes, labels = votes[ok], labels[ok]
    if len(np.unique(labels)) < 2:
        raise ValueError(f"Split {args.split!r} of {args.manifest} needs both real and fake images "
                         f"with readable files; it has {len(labels)} usable rows of one class.")
    controller = QController(bundle.agent_names, config).fit(votes, labels)
    thresholds = {a: bundle.agent(a).threshold for a in bundle.agent_names}
    metrics = val_report(controller, votes, labels, thresholds)
    controller.fitted_on.update({"manifest": str(Path(args.manifest).resolve()), "split": args.split,
                                 "bundle_version": bundle.version, "metrics": metrics["ensemble"]})
    saved = save_controller(bundle.path, controller)
    if args.json:
        print(json.dumps({"version": controller.version, "bundle": str(saved.path), "config": asdict(config),
                          "summary": controller.summary(), "metrics": metrics}, indent=2))
    else:
        print(format_report(controller, metrics, args.split, saved.path))
    return 0


def main(argv: list[str]) -> int:
    """Entry point of `fakeface fit-controller`; errors are one line and exit code 2."""
    args = build_parser().parse_args(argv)
    try:
        return run(args)
    except (BundleError, ValueError, OSError) as err:
        print(f"fakeface fit-controller: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
