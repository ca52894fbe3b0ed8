"""Which faces to withhold at 10 % "can't tell": the ensemble's margin, or a reliability model
that also reads how strongly each agent agrees with the answer (issue 22's abstention goal).

The ranking today is the margin |logit(p) - logit(threshold)|. The alternative: a logistic
regression, fitted on the bundle's held-out val replay rows, that predicts whether the answer is
right from that margin and each agent's log-odds signed towards the answer. It is judged by
5 x 5-fold cross-validation on the replay rows (stratified; the replay set keeps no groups, so a
face and its degraded copy may fall in different folds), then applied as fitted to each
`fakeface evaluate` predictions file given (clean predictions.csv or the screenshot benchmark's
degraded_predictions.csv); test files only measure, nothing is chosen on them.

    python benchmarks/bench_abstention.py --bundle agents/default_bundle \\
        --predictions runs/eval-dfdc-test/predictions.csv [more files]
"""

from __future__ import annotations

import sys
from pathlib import Path

from harness import bench_parser, stamp, use_checkout, write_json

use_checkout()

from agents.command_line import add_bundle_arg  # noqa: E402

ABSTAIN = 0.10  # the share withheld, as the goal


def _features(votes, p, threshold):
    """(N, 1 + A): the margin, and each agent's log-odds signed towards the answer (NaN -> 0)."""
    import numpy as np
    from scipy.special import logit

    clip = lambda x: logit(np.clip(x, 1e-6, 1 - 1e-6))  # noqa: E731
    side = np.sign(clip(p) - clip(threshold))
    return np.nan_to_num(np.column_stack([np.abs(clip(p) - clip(threshold)), side[:, None] * clip(votes)]))


def _gain(correct, confidence) -> float:
    """Accuracy points gained by withholding the ABSTAIN share with the lowest confidence."""
    import numpy as np

    kept = np.argsort(-confidence, kind="stable")[:int(round((1 - ABSTAIN) * len(correct)))]
    return float(100 * (correct[kept].mean() - correct.mean()))


def main() -> None:
    parser = bench_parser(__doc__, show_defaults=True, out="abstention.json")
    parser.add_argument("--predictions", nargs="*", default=[], type=Path)
    add_bundle_arg(parser)
    args = parser.parse_args()
    import numpy as np
    import pandas as pd
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from blackboard.controllers.store import load_controller, load_replay

    controller, replay = load_controller(args.bundle), load_replay(args.bundle)
    t = float(controller.threshold)
    present = np.isfinite(replay.votes)
    p = controller.predict_proba(np.where(present, replay.votes, 0.5), present,
                                 replay.context_for(controller.context_names) if controller.context_names else None)
    y = np.asarray(replay.labels, dtype=int)
    correct = (p >= t) == (y == 1)
    x = _features(replay.votes, p, t)

    def model():
        return make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))

    folds = []
    for seed in range(5):
        out = np.zeros(len(y))
        for train, test in StratifiedKFold(5, shuffle=True, random_state=seed).split(x, correct):
            out[test] = model().fit(x[train], correct[train]).predict_proba(x[test])[:, 1]
        folds.append(_gain(correct, out))
    result = {"bundle": str(args.bundle), "abstain": ABSTAIN, "replay_rows": int(len(y)),
              "replay": {"accuracy": float(correct.mean()), "margin_gain": _gain(correct, x[:, 0]),
                         "reliability_gain_cv": float(np.mean(folds)), "reliability_gain_cv_sd": float(np.std(folds))},
              "test": {}, **stamp(sys.argv[1:])}
    fitted = model().fit(x, correct)
    print(f"replay ({len(y)} rows, accuracy {correct.mean():.4f}): withholding {ABSTAIN:.0%} by the margin "
          f"{result['replay']['margin_gain']:+.2f} points, by the reliability model {np.mean(folds):+.2f} "
          f"(5 x 5-fold CV, sd {np.std(folds):.2f})")
    for path in args.predictions:
        rows = pd.read_csv(path)
        votes = rows[list(replay.agents)].to_numpy(float)
        pt, yt = rows["ensemble"].to_numpy(float), rows["label"].to_numpy(int)
        right = (pt >= t) == (yt == 1)
        xt = _features(votes, pt, t)
        entry = {"n": int(len(yt)), "accuracy": float(right.mean()), "margin_gain": _gain(right, xt[:, 0]),
                 "reliability_gain": _gain(right, fitted.predict_proba(xt)[:, 1])}
        result["test"][str(path)] = entry
        print(f"{path} ({entry['n']}, accuracy {entry['accuracy']:.4f}): margin {entry['margin_gain']:+.2f}, "
              f"reliability {entry['reliability_gain']:+.2f}")
    write_json(args.out, result)


if __name__ == "__main__":
    main()
