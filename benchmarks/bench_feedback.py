"""Feedback benchmarks on real val votes: drift recovery and poisoning resistance.

The val split's votes (``training.votes.collect_votes``, cached) are divided by source group into
a fitting part (60 %), the replay set (20 %, what the promotion guard checks) and an evaluation
part (20 %, never fed back). A log-odds controller is fitted on the fitting part, then:

(a) drift: one agent's votes turn to uniform noise. Feedback events (true labels) are drawn from
    the drifted fitting part; after every few events the controller's weights and its AUC on the
    drifted evaluation part are recorded. N = events until that AUC is within ``--tolerance`` of
    a controller refitted from scratch on drifted data (the best it could do).
(b) poisoning: 1 000 feedback events with wrong labels; the val AUC (evaluation part) must not
    drop by more than 0.01.

Both run with the promotion guard (``blackboard.feedback_learning``) and without it (every update
goes live), so the curves show what the guard costs and what it saves. Output: JSON + PNG under
``benchmarks/results/``.

    python benchmarks/bench_feedback.py --manifest benchmarks/splits/dfdc.csv --cache-dir runs/controller/votes
"""

from __future__ import annotations

import io
import sys
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import GroupShuffleSplit

from harness import add_vote_args, bench_parser, use_checkout, val_votes, write_json

use_checkout()

from blackboard.controllers.logodds import LogOddsConfig, LogOddsController  # noqa: E402
from blackboard.controllers.store import ReplaySet  # noqa: E402
from blackboard.feedback_learning import FeedbackLearner, PromotionConfig  # noqa: E402
from training.report import atomic_write_bytes  # noqa: E402


def split_parts(groups: np.ndarray, labels: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(fit, replay, eval) row indices, whole groups per part (60/20/20)."""
    rest, ev = next(GroupShuffleSplit(1, test_size=0.2, random_state=seed).split(labels, labels, groups))
    fit, replay = next(GroupShuffleSplit(1, test_size=0.25, random_state=seed).split(rest, labels[rest], groups[rest]))
    return rest[fit], rest[replay], ev


def run_stream(live: LogOddsController, replay: ReplaySet | None, votes: np.ndarray, labels: np.ndarray,
               eval_votes: np.ndarray, eval_labels: np.ndarray, *, events: int, every: int, seed: int,
               guarded: bool) -> dict[str, list[float]]:
    """Feeds ``events`` cases (drawn with replacement) and records AUC and weights every ``every`` events."""
    rng = np.random.default_rng(seed)
    learner = FeedbackLearner(live, replay, PromotionConfig(check_every=10)) if guarded else None
    ctrl = live
    curve: dict[str, list[float]] = {"events": [], "auc": [], "promotions": []}
    for agent in live.agents:
        curve[f"w_{agent}_fake"], curve[f"w_{agent}_real"] = [], []
    promotions = 0
    present = np.ones(votes.shape[1], bool)
    for k in range(events + 1):
        if k % every == 0:
            w = ctrl.weights()
            curve["events"].append(k)
            curve["auc"].append(float(roc_auc_score(eval_labels, ctrl.predict_proba(eval_votes))))
            curve["promotions"].append(promotions)
            for agent in ctrl.agents:
                curve[f"w_{agent}_fake"].append(w[agent]["fake"])
                curve[f"w_{agent}_real"].append(w[agent]["real"])
        if k == events:
            break
        i = int(rng.integers(len(labels)))
        if learner is None:
            ctrl = ctrl.online_update(votes[i], present, int(labels[i]))
        else:
            promotions += int(learner.feedback(votes[i], present, int(labels[i])).promoted)
            ctrl = learner.live
    return curve


def first_within(curve: dict[str, list[float]], target: float, tolerance: float) -> int | None:
    """Events until the AUC first reaches ``target - tolerance`` (None when it never does)."""
    for n, auc in zip(curve["events"], curve["auc"]):
        if auc >= target - tolerance:
            return int(n)
    return None


def plot(curves: dict[str, dict[str, list[float]]], title: str, lines: dict[str, float], agent: str) -> bytes:
    fig = Figure(figsize=(10, 4))
    ax_auc, ax_w = fig.subplots(1, 2)
    for name, curve in curves.items():
        ax_auc.plot(curve["events"], curve["auc"], label=name)
        ax_w.plot(curve["events"], curve[f"w_{agent}_fake"], label=f"{name}: W[{agent}, fake]")
        ax_w.plot(curve["events"], curve[f"w_{agent}_real"], linestyle="--", label=f"{name}: W[{agent}, real]")
    for name, value in lines.items():
        ax_auc.axhline(value, linestyle=":", color="grey")
        ax_auc.annotate(name, (0, value), fontsize=7, va="bottom")
    ax_auc.set_xlabel("feedback events")
    ax_auc.set_ylabel("ROC AUC (evaluation part)")
    ax_auc.legend(fontsize="small")
    ax_w.set_xlabel("feedback events")
    ax_w.set_ylabel("log-odds weight")
    ax_w.legend(fontsize="x-small")
    fig.suptitle(title)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
    return buffer.getvalue()


def main(argv: list[str]) -> None:
    parser = bench_parser(__doc__)
    add_vote_args(parser, manifest="benchmarks/splits/dfdc.csv")
    parser.add_argument("--drift-agent", default=None, help="agent whose votes turn to noise (default: the best)")
    parser.add_argument("--events", type=int, default=2000, help="feedback events of the drift stream")
    parser.add_argument("--poison-events", type=int, default=1000, help="feedback events with wrong labels")
    parser.add_argument("--tolerance", type=float, default=0.005, help="AUC distance counted as recovered")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="benchmarks/results", help="folder for feedback.json and the PNGs")
    args = parser.parse_args(argv)

    bundle, paths, labels, groups, votes = val_votes(args)
    ok = np.isfinite(votes).all(axis=1)
    votes, labels, groups = votes[ok], labels[ok], groups[ok]
    agents = bundle.agent_names
    fit, rep, ev = split_parts(groups, labels, args.seed)
    live = LogOddsController(agents, LogOddsConfig()).fit(votes[fit], labels[fit])
    replay = ReplaySet(tuple(agents), votes[rep], labels[rep])
    drift_agent = args.drift_agent or max(agents, key=lambda a: roc_auc_score(labels[fit], votes[fit, agents.index(a)]))
    col = agents.index(drift_agent)
    rng = np.random.default_rng(args.seed)
    drifted_fit, drifted_ev = votes[fit].copy(), votes[ev].copy()
    drifted_fit[:, col] = rng.uniform(0.01, 0.99, len(fit))
    drifted_ev[:, col] = rng.uniform(0.01, 0.99, len(ev))
    clean_auc = float(roc_auc_score(labels[ev], live.predict_proba(votes[ev])))
    start_auc = float(roc_auc_score(labels[ev], live.predict_proba(drifted_ev)))
    oracle = LogOddsController(agents).fit(drifted_fit, labels[fit])
    oracle_auc = float(roc_auc_score(labels[ev], oracle.predict_proba(drifted_ev)))
    every = 25
    drift = {name: run_stream(live, replay, drifted_fit, labels[fit], drifted_ev, labels[ev], events=args.events,
                              every=every, seed=args.seed, guarded=guarded)
             for name, guarded in (("guarded", True), ("unguarded", False))}
    poison = {name: run_stream(live, replay, votes[fit], 1 - labels[fit], votes[ev], labels[ev],
                               events=args.poison_events, every=every, seed=args.seed + 1, guarded=guarded)
              for name, guarded in (("guarded", True), ("unguarded", False))}
    result = {
        "bundle_version": bundle.version, "agents": agents, "rows": {"fit": len(fit), "replay": len(rep), "eval": len(ev)},
        "controller": live.summary(),
        "drift": {"agent": drift_agent, "auc_clean": clean_auc, "auc_at_drift": start_auc, "auc_refit_on_drift": oracle_auc,
                  "tolerance": args.tolerance,
                  "events_to_recover": {k: first_within(c, oracle_auc, args.tolerance) for k, c in drift.items()},
                  "final_auc": {k: c["auc"][-1] for k, c in drift.items()},
                  "final_weights": {k: {"fake": c[f"w_{drift_agent}_fake"][-1], "real": c[f"w_{drift_agent}_real"][-1]}
                                    for k, c in drift.items()},
                  "promotions": drift["guarded"]["promotions"][-1], "curves": drift},
        "poisoning": {"events": args.poison_events, "auc_before": clean_auc,
                      "auc_after": {k: c["auc"][-1] for k, c in poison.items()},
                      "auc_loss": {k: clean_auc - min(c["auc"]) for k, c in poison.items()},
                      "promotions": poison["guarded"]["promotions"][-1], "curves": poison},
    }
    out = Path(args.out)
    write_json(out / "feedback.json", result)
    atomic_write_bytes(out / "feedback_drift.png", plot(drift, f"drift: {drift_agent} votes turn to noise",
                                                        {"refit on drifted data": oracle_auc, "before drift": clean_auc},
                                                        drift_agent))
    atomic_write_bytes(out / "feedback_poisoning.png", plot(poison, "poisoning: wrong labels",
                                                            {"before": clean_auc, "allowed loss": clean_auc - 0.01},
                                                            drift_agent))
    d, p = result["drift"], result["poisoning"]
    print(f"drift ({drift_agent} -> noise): AUC clean {clean_auc:.4f}, at drift {start_auc:.4f}, refit {oracle_auc:.4f}; "
          f"events to recover {d['events_to_recover']}; final {d['final_auc']}")
    print(f"poisoning ({args.poison_events} wrong labels): AUC before {clean_auc:.4f}, worst loss {p['auc_loss']}")


if __name__ == "__main__":
    main(sys.argv[1:])
