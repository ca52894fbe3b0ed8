"""Does a face's crop, and so its verdict, depend on where the face sits in the picture?

Usage:
    python benchmarks/bench_crop_shift.py [--side 1024] [--count 40] [--out benchmarks/results/crop_shift.json]

gan-faces test portraits (FFHQ photos and StyleGAN faces, 256 px) are upscaled (bicubic) to
``--side`` px, then shifted by 1, 2, 3 and 5 px (the picture cut that much at its top left). Each
view is detected (`vision.face_detector.FaceDetector`) and its face aligned into the agents'
224 px crop (`vision.alignment.align_face`) two ways: shrunk from the whole picture (the grid of
the area filter anchored at the picture's corner) and from the part around the face (anchored
there, the default since 2026-12-05). Reported per way: how many shifted crops equal the
unshifted one bit for bit, and the largest change of each shipped agent's p_fake over the shifts
(median and max over the faces). Faces of 1024 px portraits are shrunk more than 2x before the
warp; at 600 px they are not, and both ways give the same crops.
"""

from __future__ import annotations

import os
import sys

import numpy as np

from harness import REPO, bench_parser, machine_and_load, setup, stamp, write_json

setup()

DATA = REPO.parent / "shared/data/gan-faces"
SHIFTS = (1, 2, 3, 5)
AGENTS = ("lenet", "custom", "forensic", "vgg16")


def portraits(side: int, count: int) -> list[np.ndarray]:
    """``count`` gan-faces test pictures (every sixth) upscaled to ``side`` px, RGB."""
    import cv2
    import pandas as pd

    table = pd.read_csv(DATA / "metadata.csv")
    rows = table[table["split"] == "test"].iloc[::6].head(count)
    return [cv2.resize(cv2.cvtColor(cv2.imread(str(DATA / path)), cv2.COLOR_BGR2RGB), (side, side),
                       interpolation=cv2.INTER_CUBIC) for path in rows["path"]]


def main(argv: list[str] | None = None) -> int:
    parser = bench_parser(__doc__, out="crop_shift.json")
    parser.add_argument("--side", type=int, default=1024)
    parser.add_argument("--count", type=int, default=40)
    args = parser.parse_args(argv)
    if not DATA.is_dir():
        print(f"needs {DATA}", file=sys.stderr)
        return 2
    from agents.bundle import load_bundle
    from agents.predictor import AgentPredictor
    from blackboard.worker_threads import limit_threads
    from vision.alignment import align_face
    from vision.face_detector import FaceDetector

    limit_threads(1)
    load_before = os.getloadavg()
    detector, bundle = FaceDetector(), load_bundle(None)
    agents = {name: AgentPredictor(bundle, name) for name in AGENTS}
    ways = {"whole picture": "picture", "part around the face": "face"}
    equal = {way: 0 for way in ways}
    spread: dict[str, list[np.ndarray]] = {way: [] for way in ways}
    faces = same_landmarks = 0
    for image in portraits(args.side, args.count):
        views = []
        for k in (0, *SHIFTS):
            view = np.ascontiguousarray(image[k:, k:])
            found = detector.detect(view)
            if not found:
                break
            views.append((view, found[0].landmarks, k))
        if len(views) < 1 + len(SHIFTS):
            continue
        faces += 1
        same_landmarks += all(np.array_equal(points + k, views[0][1]) for _, points, k in views)
        for way, shrink in ways.items():
            crops = [align_face(view, points, shrink=shrink) for view, points, _ in views]
            equal[way] += sum(np.array_equal(crop, crops[0]) for crop in crops[1:])
            p = np.array([[agents[name].predict_p_fake(crop[None])[0] for name in AGENTS] for crop in crops])
            spread[way].append(np.abs(p - p[0]).max(axis=0))
    results = {"faces": faces, "shifts_px": list(SHIFTS), "faces_with_equal_landmarks_in_every_view": same_landmarks,
               "ways": {}}
    for way in ways:
        table = np.array(spread[way], dtype=np.float64)
        results["ways"][way] = {
            "crops_equal_to_unshifted": int(equal[way]), "shifted_crops": faces * len(SHIFTS),
            "max_abs_delta_p_median": dict(zip(AGENTS, np.round(np.median(table, axis=0), 4).tolist())),
            "max_abs_delta_p_max": dict(zip(AGENTS, np.round(table.max(axis=0), 4).tolist()))}
        row = results["ways"][way]
        print(f"{args.side} px, shrunk from the {way}: {row['crops_equal_to_unshifted']} of {row['shifted_crops']} "
              f"shifted crops equal; |dp| over shifts, median {row['max_abs_delta_p_median']}, "
              f"max {row['max_abs_delta_p_max']}", flush=True)
    write_json(args.out, {**stamp(sys.argv[1:] if argv is None else argv), **machine_and_load(load_before),
                          "side": args.side, "results": results})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
