"""Does averaging each agent's vote over the face and its mirror image raise its AUC? (test-time flip)

A probe on the mixed split's val faces only (a seeded sample; no test split is read): each agent
of a bundle scores every face and its left-right mirror; the averaged log-odds are scored against
the plain vote. Doubling an agent's cost is worth it only for a clear gain.

    PYTHONPATH=. python benchmarks/bench_flip.py [--n 2000] [--bundle DIR]
"""

from __future__ import annotations

import time

from harness import REPO, bench_parser, setup, write_json

setup()

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from sklearn.metrics import roc_auc_score  # noqa: E402

from blackboard.calibration import logit, sigmoid  # noqa: E402


def main() -> None:
    parser = bench_parser(__doc__, out="flip.json")
    parser.add_argument("--manifest", default=str(REPO / "benchmarks" / "splits" / "mixed.csv"))
    parser.add_argument("--n", type=int, default=2000, help="val faces to sample")
    parser.add_argument("--bundle", default=None, help="model bundle (default: the shipped one)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    from agents.bundle import load_bundle
    from agents.predictor import AgentPredictor
    from vision.media import read_image

    manifest = REPO / args.manifest  # an absolute path stays as it is
    val = pd.read_csv(manifest).query("split == 'val'").reset_index(drop=True)
    pick = np.sort(np.random.default_rng(args.seed).choice(len(val), size=min(args.n, len(val)), replace=False))
    val = val.iloc[pick].reset_index(drop=True)
    faces = [read_image(manifest.parent / p) for p in val.path]  # paths are relative to the manifest
    y = (val.label == "fake").to_numpy()
    bundle = load_bundle(args.bundle)
    result = {"n": len(faces), "bundle": bundle.version, "agents": {}}
    for agent in bundle.agent_names:
        predictor = AgentPredictor(bundle, agent)
        start = time.perf_counter()
        plain = predictor.predict_p_fake(faces)
        mirror = predictor.predict_p_fake([f[:, ::-1] for f in faces])
        both = sigmoid((logit(plain) + logit(mirror)) / 2)
        row = {"plain": roc_auc_score(y, plain), "mirror": roc_auc_score(y, mirror), "average": roc_auc_score(y, both),
               "logit_corr": float(np.corrcoef(logit(plain), logit(mirror))[0, 1]),
               "seconds": time.perf_counter() - start}
        result["agents"][agent] = row
        print(agent, {k: round(v, 4) for k, v in row.items()}, flush=True)
    write_json(args.out, result)


if __name__ == "__main__":
    main()
