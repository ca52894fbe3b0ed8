"""Does the controller earn its place on mixed input? Context vs context-free, grouped 5-fold CV on val.

Rows of the comparison are val faces of a manifest (default benchmarks/splits/mixed.csv) as they
are, plus one screenshot-like copy (``vision.degrade.random_chain``, seeded) of the faces of about
half the source groups (a group is kept when crc32(group) is even; copies stay in their
source's group). Every decider is scored by ``training.controller_cv.cross_validate``
(GroupKFold, so a face and its copies are never on both sides); AUC is also given on the clean
and the degraded rows alone. With ``--detected-copies N`` those groups' faces also enter as N
copies whose chain may place them in a player or phone screenshot, found again as serving finds
them (their own face size, "detected" set): the rows a face-size context needs to learn "small
face" rather than "rescaled crop"; their AUC is given alone too. Nothing here touches a test split.

    PYTHONPATH=. python benchmarks/bench_context_controller.py --cache-dir /tmp/context-votes
"""

from __future__ import annotations

import sys
import time
import zlib

from harness import add_vote_args, bench_parser, setup, val_votes, write_json

setup()

import numpy as np  # noqa: E402

from blackboard.controllers.logodds import LogOddsConfig, LogOddsController  # noqa: E402
from training.controller_cv import (Variant, context_variants, cross_validate, default_variants,  # noqa: E402
                                    format_table)
from training.degraded_votes import collect_degraded  # noqa: E402
from training.votes import collect_context  # noqa: E402
from vision.context import CONTEXT_NAMES  # noqa: E402

FEATURE_SETS = {
    "sharpness": ("sharpness",),
    "face_size": ("face_size",),
    "blockiness": ("blockiness",),
    "size+sharp": ("face_size", "sharpness"),
    "all": CONTEXT_NAMES[:4],  # "detected" is constant on crops sent as given: no information here
}
# With --detected-copies faces also come from screens through the detector: "detected" varies.
DETECTED_SETS = {"size+detected": ("face_size", "detected"), "all+detected": CONTEXT_NAMES}


def fitted_without_detected(agents: list[str]) -> Variant:
    """The shipped context-free log-odds controller fitted on the clean and degraded rows only,
    scored on every row: does fitting on faces found in screens change the controller at all?"""
    def fit(votes, labels, ctx):
        rows = ctx[:, 0] < 2  # the row kind: 0 clean, 1 degraded, 2 detected
        controller = LogOddsController(agents, LogOddsConfig()).fit(votes[rows], labels[rows])
        return lambda v, c: controller.predict_proba(v, None, None)
    return Variant("logodds, fit without detected rows", "controller", fit, context=("row_kind",))


def main(argv: list[str]) -> None:
    parser = bench_parser(__doc__, out="context_controller_cv.json")
    add_vote_args(parser, manifest="benchmarks/splits/mixed.csv")
    parser.add_argument("--seed", type=int, default=0, help="seed of the degradation chains")
    parser.add_argument("--detected-copies", type=int, default=0,
                        help="also a copy per kept image whose chain may compose a screen, its face found as "
                             "serving finds it (training.degraded_votes, detected=True)")
    args = parser.parse_args(argv)

    bundle, paths, labels, groups, votes = val_votes(args)
    agents = bundle.agent_names
    context = collect_context(paths, CONTEXT_NAMES)
    keep = np.array([zlib.crc32(g.encode()) % 2 == 0 for g in groups])
    sub = [p for p, k in zip(paths, keep) if k]
    d_votes, d_context, source = collect_degraded(bundle, sub, copies=1, seed=args.seed, progress=False,
                                                  cache_dir=args.cache_dir)
    kept = np.flatnonzero(keep)[source]
    all_votes = np.concatenate([votes, d_votes])
    all_context = np.concatenate([context, d_context])
    kind = np.r_[np.zeros(len(labels), int), np.ones(len(kept), int)]  # 0 clean, 1 degraded, 2 detected
    sources = np.r_[np.arange(len(labels)), kept]
    if args.detected_copies > 0:
        t_votes, t_context, t_source = collect_degraded(bundle, sub, copies=args.detected_copies, seed=args.seed,
                                                        progress=False, cache_dir=args.cache_dir, detected=True)
        all_votes, all_context = np.concatenate([all_votes, t_votes]), np.concatenate([all_context, t_context])
        kind, sources = np.r_[kind, np.full(len(t_source), 2)], np.r_[sources, np.flatnonzero(keep)[t_source]]
    y, g = labels[sources], groups[sources]
    ok = np.isfinite(all_votes).all(axis=1) & np.isfinite(all_context).all(axis=1)
    all_votes, all_context, y, g, kind = all_votes[ok], all_context[ok], y[ok], g[ok], kind[ok]
    ctx = {n: all_context[:, j] for j, n in enumerate(CONTEXT_NAMES)}
    ctx["blur"] = ctx["sharpness"]
    variants = default_variants(agents, ["blur"])  # agents, baselines, Q-trust, log-odds, today's log-odds+blur
    sets = {**FEATURE_SETS, **(DETECTED_SETS if args.detected_copies > 0 else {})}
    variants += context_variants(agents, sets, bins=(2, 3, 4))
    if args.detected_copies > 0:
        ctx["row_kind"] = kind.astype(float)
        variants.append(fitted_without_detected(list(agents)))
    start = time.perf_counter()
    table = cross_validate(all_votes, y, g, variants, context=ctx,
                           subsets={"clean": kind == 0, "degraded": kind == 1,
                                    **({"detected": kind == 2} if args.detected_copies > 0 else {})})
    seconds = time.perf_counter() - start
    result = {"bundle_version": bundle.version, "manifest": args.manifest, "rows": int(len(y)),
              "clean_rows": int((kind == 0).sum()), "degraded_rows": int((kind == 1).sum()),
              "detected_rows": int((kind == 2).sum()), "folds": 5,
              "seed": args.seed, "cv_seconds": seconds, "cv": table}
    subsets = ["clean", "degraded"] + (["detected"] if args.detected_copies > 0 else [])
    lines = [format_table(table), "", "| system | " + " | ".join(f"AUC {s}" for s in subsets) + " |",
             "|---|" + "---|" * len(subsets)]
    lines += [f"| {name} | " + " | ".join(f"{row['auc_' + s]:.4f}" for s in subsets) + " |"
              for name, row in table.items()]
    text = "\n".join(lines)
    print(text)
    write_json(args.out, result, markdown=text)


if __name__ == "__main__":
    main(sys.argv[1:])
