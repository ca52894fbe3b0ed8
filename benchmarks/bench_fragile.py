"""What the degraded-copy check (blackboard.fragile) costs per face, and what it buys on val.

Cost: the controller's decision on one face (issue 22: <= 1 ms), and the shipped bundle's
in-process board deciding the same val crops one case at a time with the check off and on: wall
and process CPU milliseconds per face (CPU counts every thread, so it stays meaningful on a
shared, loaded machine). Gain: on clean val faces of the manifest (a fixed seeded sample), the
margin is fitted for 10 % abstention by ``fit_margin`` on one half of the groups and applied to
the other half: the answered faces' accuracy vs all faces', and what the check withholds beyond
the borderline band the service already answers "can't tell" in.

    PYTHONPATH=. python benchmarks/bench_fragile.py --faces 24 --val 1500
"""

from __future__ import annotations

import sys
import time
import zlib

import numpy as np

from harness import bench_parser, stamp, use_checkout, write_json

use_checkout()

from blackboard.config import EnsembleConfig  # noqa: E402
from blackboard.decision import decide_matrix  # noqa: E402
from blackboard.fragile import DEFAULT_COPIES, fit_margin, fragile_reasons  # noqa: E402
from blackboard.inprocess import InProcessBoard  # noqa: E402
from training.degraded_votes import collect_copy_votes  # noqa: E402
from training.votes import collect_votes, read_crop, read_manifest_split  # noqa: E402


def per_face_cost(crops: list[np.ndarray], fragile: bool) -> dict[str, float]:
    board = InProcessBoard(None, EnsembleConfig(fragile_check=fragile))
    board.classify_faces([crops[0]], deadline_s=600)  # warm the models
    wall, cpu = [], []
    for crop in crops:
        w0, c0 = time.perf_counter(), time.process_time()
        board.classify_faces([crop], deadline_s=600)
        wall.append((time.perf_counter() - w0) * 1000.0)
        cpu.append((time.process_time() - c0) * 1000.0)
    board.shutdown()
    return {"wall_ms_median": float(np.median(wall)), "cpu_ms_median": float(np.median(cpu))}


def decision_ms(controller, faces: int = 2000) -> float:
    """The controller's decision on one face, explained and with the borderline band, as a case
    makes it (issue 22's goal: <= 1 ms), over random votes; median of five passes, ms per face."""
    from blackboard.borderline import borderline_for
    from blackboard.decision import decide

    band = borderline_for(controller)
    rng = np.random.default_rng(0)
    votes = [{a: np.array([rng.uniform(0.02, 0.98)]) for a in controller.agents} for _ in range(faces)]
    passes = []
    for _ in range(5):
        start = time.perf_counter()
        for vote in votes:
            decide(vote, controller, band=band)
        passes.append((time.perf_counter() - start) / faces * 1000.0)
    return float(np.median(passes))


def main(argv: list[str]) -> None:
    parser = bench_parser(__doc__, out="fragile.json")
    parser.add_argument("--manifest", default="benchmarks/splits/mixed.csv")
    parser.add_argument("--faces", type=int, default=12, help="cases timed with the check off and on")
    parser.add_argument("--val", type=int, default=200, help="val faces for the margin and the gain")
    parser.add_argument("--cache-dir", default=None)
    args = parser.parse_args(argv)
    paths, labels, groups = read_manifest_split(args.manifest, "val", with_groups=True)
    rng = np.random.default_rng(0)
    pick = np.sort(rng.choice(len(paths), size=min(args.val, len(paths)), replace=False))
    crops = [read_crop(paths[i]) for i in pick[:args.faces]]
    off, on = per_face_cost(crops, False), per_face_cost(crops, True)
    result: dict = {**stamp(argv), "faces_timed": len(crops), "off": off, "on": on,
                    "extra_cpu_share": (on["cpu_ms_median"] - off["cpu_ms_median"]) / off["cpu_ms_median"]}
    board = InProcessBoard(None)
    controller = board.controller
    result["decision_ms_per_face"] = decision_ms(controller)
    sub = [paths[i] for i in pick]
    votes = collect_votes(board.bundle, sub, progress=False, cache_dir=args.cache_dir)
    copies = collect_copy_votes(board.bundle, sub, DEFAULT_COPIES)
    # The shipped controller reads the crop's sharpness ("blur"): context of crops sent as given.
    from training.votes import collect_context

    names = controller.context_names
    ctx = collect_context(sub, names) if names else None
    p = decide_matrix(votes, controller.agents, controller, context=ctx).p_fake
    pc = np.stack([decide_matrix(v, controller.agents, controller, context=ctx).p_fake for v in copies])
    y = labels[pick]
    half = np.array([zlib.crc32(g.encode()) % 2 == 0 for g in groups[pick]])
    fit = fit_margin(p[half], pc[:, half], y[half], controller.threshold, abstain=0.10)
    why = fragile_reasons(p[~half], pc[:, ~half], controller.threshold, fit["margin"], DEFAULT_COPIES)
    uncertain = np.array([bool(w) for w in why])
    correct = (p[~half] >= controller.threshold).astype(int) == y[~half]
    result.update({"val_faces": int(len(pick)), "fit_half": fit, "held_out_faces": int((~half).sum()),
                   "held_out_abstain": float(uncertain.mean()), "held_out_accuracy_all": float(correct.mean()),
                   "held_out_accuracy_answered": float(correct[~uncertain].mean()),
                   "flip_share": float(np.mean([bool(w) and "flips" in w for w in why]))})
    # What the check adds to the borderline band the service already answers "can't tell" in
    # (blackboard.borderline): the held-out faces it flags outside the band, and their accuracy.
    from blackboard.borderline import borderline_for

    borderline = borderline_for(controller)
    band = borderline.inside(p[~half], controller.threshold)

    def accuracy(mask: np.ndarray) -> float | None:
        return float(correct[mask].mean()) if mask.any() else None

    result["beyond_borderline"] = {
        "band_half_width": borderline.half_width,
        "band_share": float(band.mean()), "fragile_outside_band_share": float((uncertain & ~band).mean()),
        "fragile_outside_band_accuracy": accuracy(uncertain & ~band),
        "answered_accuracy_band": accuracy(~band), "answered_accuracy_band_and_check": accuracy(~band & ~uncertain)}
    write_json(args.out, result, echo=True)


if __name__ == "__main__":
    main(sys.argv[1:])
