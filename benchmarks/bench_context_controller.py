"""Does the controller earn its place on mixed input? Context vs context-free, grouped 5-fold CV on val.

Rows of the comparison are val faces of a manifest (default benchmarks/splits/mixed.csv) as they
are, plus one screenshot-like copy (``vision.degrade.random_chain``, seeded) of the faces of about
half the source groups (a group is kept when crc32(group) is even; copies stay in their
source's group). Every decider is scored by ``training.controller_cv.cross_validate``
(GroupKFold, so a face and its copies are never on both sides); AUC is also given on the clean
and the degraded rows alone. Nothing here touches a test split.

    PYTHONPATH=. python benchmarks/bench_context_controller.py --cache-dir /tmp/context-votes
"""

from __future__ import annotations

import sys
import time
import zlib

from harness import add_vote_args, bench_parser, setup, val_votes, write_json

setup()

import numpy as np  # noqa: E402

from training.controller_cv import context_variants, cross_validate, default_variants, format_table  # noqa: E402
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


def main(argv: list[str]) -> None:
    parser = bench_parser(__doc__, out="context_controller_cv.json")
    add_vote_args(parser, manifest="benchmarks/splits/mixed.csv")
    parser.add_argument("--seed", type=int, default=0, help="seed of the degradation chains")
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
    y = np.concatenate([labels, labels[kept]])
    g = np.concatenate([groups, groups[kept]])
    degraded = np.r_[np.zeros(len(labels), bool), np.ones(len(kept), bool)]
    ok = np.isfinite(all_votes).all(axis=1) & np.isfinite(all_context).all(axis=1)
    all_votes, all_context, y, g, degraded = all_votes[ok], all_context[ok], y[ok], g[ok], degraded[ok]
    ctx = {n: all_context[:, j] for j, n in enumerate(CONTEXT_NAMES)}
    ctx["blur"] = ctx["sharpness"]
    variants = default_variants(agents, ["blur"])  # agents, baselines, Q-trust, log-odds, today's log-odds+blur
    variants += context_variants(agents, FEATURE_SETS, bins=(2, 3, 4))
    start = time.perf_counter()
    table = cross_validate(all_votes, y, g, variants, context=ctx,
                           subsets={"clean": ~degraded, "degraded": degraded})
    seconds = time.perf_counter() - start
    result = {"bundle_version": bundle.version, "manifest": args.manifest, "rows": int(len(y)),
              "clean_rows": int((~degraded).sum()), "degraded_rows": int(degraded.sum()), "folds": 5,
              "seed": args.seed, "cv_seconds": seconds, "cv": table}
    lines = [format_table(table), "", "| system | AUC clean | AUC degraded |", "|---|---|---|"]
    lines += [f"| {name} | {row['auc_clean']:.4f} | {row['auc_degraded']:.4f} |" for name, row in table.items()]
    text = "\n".join(lines)
    print(text)
    write_json(args.out, result, markdown=text)


if __name__ == "__main__":
    main(sys.argv[1:])
