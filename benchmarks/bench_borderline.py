"""The borderline band on held-out test faces: how many answers it withholds, and how much more
often the answers it gives are right (issue 25: "coin flips are shown as firm verdicts").

Reads the ensemble's p_fake per test face from an `fakeface evaluate` run (predictions.csv), the
band the server uses for the bundle (`blackboard.borderline.borderline_for`: fitted on the
bundle's val replay set), and scores answered vs withheld faces. No model is run.

    python benchmarks/bench_borderline.py [--predictions benchmarks/results/eval-dfdc-test/predictions.csv]
"""

from __future__ import annotations


from harness import RESULTS, bench_parser, use_checkout, write_json

use_checkout()

from agents.command_line import add_bundle_arg  # noqa: E402


def main() -> None:
    parser = bench_parser(__doc__, show_defaults=True, out="borderline.json")
    parser.add_argument("--predictions", default=str(RESULTS / "eval-dfdc-test/predictions.csv"))
    add_bundle_arg(parser)
    args = parser.parse_args()
    import numpy as np
    import pandas as pd

    from blackboard.borderline import borderline_for
    from blackboard.controllers.store import load_controller, load_replay

    controller = load_controller(args.bundle)
    band = borderline_for(controller, load_replay(args.bundle))
    rows = pd.read_csv(args.predictions)
    p, y, t = rows["ensemble"].to_numpy(float), rows["label"].to_numpy(int), float(controller.threshold)
    called_fake = p >= t
    correct = called_fake == (y == 1)
    inside = band.inside(p, t)
    answered = ~inside

    def rate(hit, of):
        return round(float(hit[of].mean()), 4) if of.any() else None

    out = {"bundle_controller": controller.version, "threshold": t, "band": band.to_dict(),
           "band_bounds": band.bounds(t), "test_faces": int(len(y)),
           "accuracy_all": rate(correct, np.ones_like(correct)), "withheld": round(float(inside.mean()), 4),
           "accuracy_inside_band": rate(correct, inside), "accuracy_answered": rate(correct, answered),
           "false_alarm_all": rate(called_fake, y == 0), "false_alarm_answered": rate(called_fake, (y == 0) & answered),
           "miss_all": rate(~called_fake, y == 1), "miss_answered": rate(~called_fake, (y == 1) & answered)}
    write_json(args.out, out, echo=True)


if __name__ == "__main__":
    main()
