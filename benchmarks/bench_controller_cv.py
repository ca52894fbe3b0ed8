"""Every decider side by side on val with group-aware 5-fold CV (``training.controller_cv``).

Rows: each agent, majority, mean, stacking, Q-trust, the log-odds controller (log-likelihood and
REINFORCE rewards) and the log-odds controller with each context feature: ``blur`` (computed from
the crop, available when serving) and ``face_size`` (the face's size in the source video, from the
DFDC ``metadata.csv``; only known offline, measured to see whether it would pay).

With ``--test-predictions`` (an evaluate run's predictions.csv with per-agent p_fake), the chosen
configuration is fitted once on all of val and compared with the evaluate run's systems on test.
Nothing is tuned on test. Output: benchmarks/results/controller_cv.json (+ a markdown table).

    python benchmarks/bench_controller_cv.py --cache-dir runs/controller/votes \\
        --metadata ../shared/data/dfdc/metadata.csv \\
        --test-predictions benchmarks/results/eval-dfdc-test/predictions.csv
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score

from harness import add_vote_args, bench_parser, use_checkout, val_votes, write_json

use_checkout()

from blackboard.controllers.logodds import LogOddsConfig, LogOddsController  # noqa: E402
from training.controller_cv import cross_validate, default_variants, format_table  # noqa: E402
from training.metrics import BootstrapConfig, paired_bootstrap_auc  # noqa: E402
from training.votes import collect_context  # noqa: E402


def face_sizes(paths: list[Path], metadata: Path) -> np.ndarray:
    """log sqrt(original_width * original_height) of each image (NaN when not in the metadata)."""
    meta = pd.read_csv(metadata)
    base = metadata.resolve().parent
    size = {os.path.realpath(base / p): np.sqrt(w * h) for p, w, h in
            zip(meta["path"], meta["original_width"], meta["original_height"])}
    return np.log(np.array([size.get(os.path.realpath(p), np.nan) for p in paths], dtype=np.float64))


def main(argv: list[str]) -> None:
    parser = bench_parser(__doc__, out="controller_cv.json")
    add_vote_args(parser, manifest="benchmarks/splits/dfdc.csv")
    parser.add_argument("--metadata", type=Path, default=None, help="DFDC metadata.csv (adds the face_size context)")
    parser.add_argument("--test-predictions", type=Path, default=None,
                        help="evaluate predictions.csv with per-agent p_fake: one final comparison on test")
    args = parser.parse_args(argv)

    bundle, paths, labels, groups, votes = val_votes(args)
    agents = bundle.agent_names
    context = {"blur": collect_context(paths, ("blur",))[:, 0]}
    if args.metadata is not None:
        context["face_size"] = face_sizes(paths, args.metadata)
    ok = np.isfinite(votes).all(axis=1)
    votes, labels, groups = votes[ok], labels[ok], groups[ok]
    context = {k: v[ok] for k, v in context.items()}
    table = cross_validate(votes, labels, groups, default_variants(agents, list(context)), context=context)
    result: dict = {"bundle_version": bundle.version, "manifest": args.manifest, "rows": int(len(labels)),
                    "folds": 5, "cv": table}
    text = format_table(table)
    print(text)
    if args.test_predictions is not None:
        test = pd.read_csv(args.test_predictions)
        test_votes = test[agents].to_numpy(dtype=np.float64)
        y = test["label"].to_numpy(dtype=int)
        chosen = LogOddsController(agents, LogOddsConfig(context=("blur",))).fit(votes, labels, context=context["blur"][:, None])
        plain = LogOddsController(agents).fit(votes, labels)
        blur = collect_context(list(test["path"]), ("blur",))
        scores = {name: test[name].to_numpy(dtype=np.float64) for name in [*agents, "majority", "mean", "stacking", "ensemble"]
                  if name in test}
        scores["ensemble (qtrust, shipped)"] = scores.pop("ensemble")
        scores["logodds"] = plain.predict_proba(test_votes)
        scores["logodds+blur (chosen)"] = chosen.predict_proba(test_votes, None, blur)
        aucs = {name: float(roc_auc_score(y, p)) for name, p in scores.items()}
        best = max(agents, key=lambda a: aucs[a])
        paired = paired_bootstrap_auc(y, scores["logodds+blur (chosen)"], scores[best], config=BootstrapConfig())
        result["test"] = {"predictions": str(args.test_predictions), "n": int(len(y)), "auc": aucs,
                          "chosen_vs_best_single": {"best_single": best, **paired}}
        text += "\n\ndfdc-test (one final comparison, fitted on all of val):\n" + "\n".join(
            f"| {k} | {v:.4f} |" for k, v in aucs.items())
        print("\n".join(f"{k:<28}{v:.4f}" for k, v in aucs.items()))
        print(f"chosen vs {best}: {paired}")
    write_json(args.out, result, markdown=text)


if __name__ == "__main__":
    main(sys.argv[1:])
