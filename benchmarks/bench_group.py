"""Group pictures: is a face in a group judged as the same face cut out alone, and are dim faces found?

Usage:
    python benchmarks/bench_group.py shares [--per-set 100] [--cuts 40]
    python benchmarks/bench_group.py group [--seed 0]
    python benchmarks/bench_group.py refine [--repeats 15] [--per-set 60]

``shares`` measures how much of a crop-shaped image the detected face box covers (the rule
`vision.faces.CROP_MIN_FACE_SHARE` decides on): on data set crops as they are (dfdc-test,
gan-faces, lfw-swaps, both classes), and on cuts 1.5x and 2x the face box around the same faces
placed on a plain background. Detector only, no agents.

``group`` builds group pictures from dfdc-test crops (grids of 2x2 and 3x2 at two gaps on a dark,
a mid-grey and a noisy background, and grids with one face dimmed), classifies each group with
the shipped bundle on the in-process board (``detect="auto"``), then cuts each face found out of
the group (1.5x and 2x its box) and classifies the cut alone. It reports |p_fake(cut) -
p_fake(group)| (median, max, share within 0.02), the faces found, and the dimmed faces found.

``refine`` measures what the landmark refinement (`vision.face_refine`) costs and changes:
detection time with and without it (interleaved, median wall and process CPU) on the astronaut
upscaled to 1024x1024 and on a 1920x1080 page with four dfdc-test crops and the astronaut, and
whether dfdc-test crops (224 px and upscaled to 448 px) are still used whole, with the same crops.

Results go to ``benchmarks/results/group_shares.json``, ``group.json`` and ``group_refine.json``.
"""

from __future__ import annotations

import csv
import json
import os
import platform
import time
from pathlib import Path

import numpy as np

from harness import REPO, RESULTS, add_repeats_arg, bench_parser, now, setup, write_json

setup(tf_log_level="3")

SETS = ("dfdc-test", "gan-faces", "lfw-swaps")
CUT_FACTORS = (1.5, 2.0)
UPSCALED = 448  # side the crops are also measured at (the share rule applies from 257 to 512 px)
TOLERANCE = 0.02  # the goal: a cut face within 0.02 of the same face in the group


def read_rgb(path: Path) -> np.ndarray:
    import cv2

    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise SystemExit(f"cannot read {path}")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def sample_paths(folder: Path, count: int, seed: int) -> list[Path]:
    """``count`` images of a data set folder, half real and half fake, in a fixed random order."""
    with open(folder / "metadata.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    rng = np.random.default_rng(seed)
    out = []
    for label in ("real", "fake"):
        paths = sorted(r["path"] for r in rows if r["label"] == label)
        out += [folder / paths[i] for i in rng.permutation(len(paths))[: count // 2]]
    return out


def cut_around(image: np.ndarray, box, factor: float) -> np.ndarray:
    """The region ``factor`` times the box (same centre), clipped to the image."""
    x, y, w, h = (float(v) for v in box)
    cx, cy = x + w / 2, y + h / 2
    half_w, half_h = factor * w / 2, factor * h / 2
    x0, y0 = max(0, int(round(cx - half_w))), max(0, int(round(cy - half_h)))
    x1, y1 = min(image.shape[1], int(round(cx + half_w))), min(image.shape[0], int(round(cy + half_h)))
    return np.ascontiguousarray(image[y0:y1, x0:x1])


def plain_canvas(crop: np.ndarray, rng: np.random.Generator, level: int = 90) -> tuple[np.ndarray, tuple[int, int]]:
    """The crop in the middle of a background three times its size (grey with mild noise)."""
    h, w = crop.shape[:2]
    canvas = np.clip(rng.normal(level, 8, (3 * h, 3 * w, 3)), 0, 255).astype(np.uint8)
    canvas[h:2 * h, w:2 * w] = crop
    return canvas, (w, h)


def share_of(faces, image: np.ndarray) -> float | None:
    if not faces:
        return None
    x, y, w, h = faces[0].box
    return float(w * h) / float(image.shape[0] * image.shape[1])


def summary(values: list[float]) -> dict:
    if not values:
        return {"n": 0}
    v = np.asarray(values, dtype=np.float64)
    return {"n": int(v.size), "min": round(float(v.min()), 3), "p01": round(float(np.quantile(v, 0.01)), 3),
            "p05": round(float(np.quantile(v, 0.05)), 3), "median": round(float(np.median(v)), 3),
            "p95": round(float(np.quantile(v, 0.95)), 3), "max": round(float(v.max()), 3)}


def run_shares(args) -> dict:
    import cv2

    from vision.face_detector import FaceDetector

    detector = FaceDetector()
    rng = np.random.default_rng(args.seed)
    out: dict = {"sets": {}, "cuts": {str(k): [] for k in CUT_FACTORS}}
    for name in SETS:
        paths = sample_paths(Path(args.data) / name, args.per_set, args.seed)
        shares, upscaled, counts, start = [], [], {"none": 0, "one": 0, "several": 0}, time.perf_counter()
        for i, path in enumerate(paths):
            crop = read_rgb(path)
            faces = detector.detect(crop)
            counts["none" if not faces else "one" if len(faces) == 1 else "several"] += 1
            if faces:
                shares.append(share_of(faces, crop))
            if i < args.upscaled:  # the rule only looks at crop-shaped images over CROP_TRUST_SIDE px
                big = cv2.resize(crop, (UPSCALED, UPSCALED), interpolation=cv2.INTER_CUBIC)
                again = detector.detect(big)
                if again:
                    upscaled.append(share_of(again, big))
            if i < args.cuts and faces:
                canvas, (ox, oy) = plain_canvas(crop, rng)
                x, y, w, h = faces[0].box
                for k in CUT_FACTORS:
                    cut = cut_around(canvas, (x + ox, y + oy, w, h), k)
                    again = detector.detect(cut)
                    out["cuts"][str(k)].append({"set": name, "side": int(max(cut.shape[:2])), "faces": len(again),
                                                "share": share_of(again, cut)})
        out["sets"][name] = {"images": len(paths), "detected": counts, "share": summary(shares),
                             f"share_at_{UPSCALED}px": summary(upscaled),
                             "s_per_image": round((time.perf_counter() - start) / max(len(paths), 1), 3)}
        print(name, json.dumps(out["sets"][name]), flush=True)
    for k, rows in out["cuts"].items():
        found = [r["share"] for r in rows if r["share"] is not None]
        out["cuts_summary"] = out.get("cuts_summary", {})
        out["cuts_summary"][k] = {"cuts": len(rows), "face_found": len(found), "share": summary(found),
                                  "sides": summary([r["side"] for r in rows])}
        print(f"cut {k}x", json.dumps(out["cuts_summary"][k]), flush=True)
    return out


def build_grid(crops: list[np.ndarray], cols: int, gap: int, background: str, rng: np.random.Generator,
               dim: dict[int, float] | None = None) -> tuple[np.ndarray, list[tuple[int, int, int, int]]]:
    """Crops in a grid with ``gap`` px around each; returns the picture and each cell (x, y, w, h).

    ``dim`` maps a cell to a brightness factor (0.3 = the face at 30 % of its light)."""
    side = crops[0].shape[0]
    rows = -(-len(crops) // cols)
    h, w = rows * side + (rows + 1) * gap, cols * side + (cols + 1) * gap
    if background == "dark":
        picture = np.full((h, w, 3), 25, np.uint8)
    elif background == "grey":
        picture = np.full((h, w, 3), 128, np.uint8)
    else:  # coloured noise, smoothed: clutter without faces
        import cv2

        noise = rng.integers(0, 256, (h // 8 + 1, w // 8 + 1, 3), dtype=np.uint8)
        picture = cv2.resize(noise, (w, h), interpolation=cv2.INTER_CUBIC)
    cells = []
    for i, crop in enumerate(crops):
        r, c = divmod(i, cols)
        x, y = gap + c * (side + gap), gap + r * (side + gap)
        factor = (dim or {}).get(i)
        face = crop if factor is None else np.clip(crop.astype(np.float32) * factor, 0, 255).astype(np.uint8)
        picture[y:y + side, x:x + side] = face
        cells.append((x, y, side, side))
    return picture, cells


def _cell_of(box, cells) -> int | None:
    cx, cy = box[0] + box[2] / 2, box[1] + box[3] / 2
    for i, (x, y, w, h) in enumerate(cells):
        if x <= cx < x + w and y <= cy < y + h:
            return i
    return None


def _central(case, image: np.ndarray):
    """The face of a case nearest the centre of its image (a cut's own face, not a neighbour's edge)."""
    if not case.faces:
        return None
    centre = np.array([image.shape[1] / 2, image.shape[0] / 2])
    return min(case.faces, key=lambda f: float(np.linalg.norm(np.array([f.box[0] + f.box[2] / 2,
                                                                         f.box[1] + f.box[3] / 2]) - centre)))


def layouts() -> list[dict]:
    """The group pictures classified: 2x2 and 3x2 grids, 20 and 60 px apart, on a dark and a noisy background."""
    return [{"cols": cols, "faces": cols * 2, "gap": gap, "background": bg, "dim": {}}
            for cols in (2, 3) for gap in (20, 60) for bg in ("dark", "noise")]


def dim_layouts(count: int) -> list[dict]:
    """3x2 grids with one face dimmed (to 35, 25 or 15 % of its light) on each background in turn."""
    factors, backgrounds = (0.35, 0.25, 0.15), ("grey", "dark", "noise")
    return [{"cols": 3, "faces": 6, "gap": 40, "background": backgrounds[i % 3],
             "dim": {i % 6: factors[(i // 3) % 3]}} for i in range(count)]


def dim_recall(args, pool: list[Path], rng: np.random.Generator) -> dict:
    """Faces found in grids with one dim face, by the serving rule (`extract_faces`, detector only)."""
    from vision.face_detector import FaceDetector
    from vision.faces import extract_faces

    detector = FaceDetector()
    by_factor: dict[str, list[int]] = {}
    others = placed = 0
    for layout in dim_layouts(args.dim_grids):
        paths = [pool[i] for i in rng.choice(len(pool), layout["faces"], replace=False)]
        picture, cells = build_grid([read_rgb(p) for p in paths], layout["cols"], layout["gap"],
                                    layout["background"], rng, layout["dim"])
        found = {_cell_of(face.box, cells) for face in extract_faces(picture, detector, mode="auto")}
        (cell, factor), = layout["dim"].items()
        by_factor.setdefault(f"{factor}/{layout['background']}", []).append(int(cell in found))
        others += len(found - {cell, None})
        placed += len(cells) - 1
    dim = [v for hits in by_factor.values() for v in hits]
    return {"grids": args.dim_grids, "dim_found": f"{sum(dim)}/{len(dim)}",
            "dim_recall": round(float(np.mean(dim)), 3) if dim else None,
            "by_factor_and_background": {k: f"{sum(v)}/{len(v)}" for k, v in sorted(by_factor.items())},
            "other_faces_found": f"{others}/{placed}"}


def cut_summary(cuts: list[dict | None]) -> dict:
    """|delta p_fake| between each face in its group and its cut alone: median, max, share within TOLERANCE."""
    deltas = np.asarray([c["delta"] for c in cuts if c is not None], dtype=np.float64)
    if not deltas.size:
        return {"faces": len(cuts), "cut_face_found": 0}
    return {"faces": len(cuts), "cut_face_found": int(deltas.size), "aligned": sum(bool(c and c["aligned"]) for c in cuts),
            "clipped": sum(bool(c and c["clipped"]) for c in cuts),
            "delta_median": round(float(np.median(deltas)), 4), "delta_max": round(float(deltas.max()), 4),
            "share_within_tolerance": round(float(np.mean(deltas <= TOLERANCE)), 4)}


def run_group(args) -> dict:
    from blackboard.config import EnsembleConfig
    from blackboard.inprocess import InProcessBoard

    rng = np.random.default_rng(args.seed)
    pool = sample_paths(Path(args.data) / "dfdc-test", 400, args.seed)
    if args.only_dim:
        return {"dim": dim_recall(args, pool, rng)}
    board = InProcessBoard(None, EnsembleConfig(deadline_s=300.0), preload_detector=True)
    order = rng.permutation(len(pool))
    taken = 0
    rows, groups = [], []
    for n, layout in enumerate(layouts()):
        paths = [pool[i] for i in order[taken:taken + layout["faces"]]]
        taken += layout["faces"]
        picture, cells = build_grid([read_rgb(p) for p in paths], layout["cols"], layout["gap"],
                                    layout["background"], rng, layout["dim"])
        start = time.perf_counter()
        case = board.classify(picture, detect="auto", deadline_s=300.0)
        found = {}
        for face in case.faces:
            cell = _cell_of(face.box, cells)
            if cell is not None and cell not in found:
                found[cell] = face
        groups.append({"layout": n, **{k: v for k, v in layout.items() if k != "dim"},
                       "dim": {str(k): v for k, v in layout["dim"].items()}, "size": list(picture.shape[:2]),
                       "faces_placed": len(cells), "faces_found": len(found), "boxes": len(case.faces),
                       "dim_found": [str(c) for c in layout["dim"] if c in found],
                       "seconds": round(time.perf_counter() - start, 2)})
        print(json.dumps(groups[-1]), flush=True)
        for cell, face in sorted(found.items()):
            row = {"layout": n, "cell": cell, "file": paths[cell].name, "dim": cell in layout["dim"],
                   "p_group": round(face.decision.p_fake, 4), "box": [round(v, 1) for v in face.box]}
            for k in CUT_FACTORS:
                cut = cut_around(picture, face.box, k)
                alone = board.classify(cut, detect="auto", deadline_s=300.0)
                own = _central(alone, cut)
                x, y, w, h = face.box  # a cut the picture's edge clipped is tighter than asked for
                clipped = cut.shape[1] < round(k * w) - 1 or cut.shape[0] < round(k * h) - 1
                row[f"cut_{k}"] = None if own is None else {
                    "side": int(max(cut.shape[:2])), "clipped": bool(clipped), "faces": len(alone.faces),
                    "p": round(own.decision.p_fake, 4),
                    "aligned": bool(own.context.get("detected")),
                    "delta": round(abs(own.decision.p_fake - face.decision.p_fake), 4)}
            rows.append(row)
            print(json.dumps(row), flush=True)
    board.shutdown()
    result: dict = {"groups": groups, "faces": rows, "summary": {}}
    for k in CUT_FACTORS:
        for subset, keep in (("all", lambda c: True), ("unclipped", lambda c: not c["clipped"]),
                             ("aligned", lambda c: c["aligned"])):
            cuts = [r[f"cut_{k}"] for r in rows if r[f"cut_{k}"] is None or keep(r[f"cut_{k}"])]
            result["summary"][f"cut_{k}_{subset}"] = cut_summary(cuts)
    result["summary"]["faces_found"] = f"{sum(g['faces_found'] for g in groups)}/{sum(g['faces_placed'] for g in groups)}"
    result["dim"] = dim_recall(args, pool, rng)
    result["summary"]["dim_faces_found"] = result["dim"]["dim_found"]
    print(json.dumps(result["summary"], indent=1))
    return result


def run_refine(args) -> dict:
    import cv2
    from skimage import data

    from vision.face_detector import FaceDetector
    from vision.faces import extract_faces

    detectors = {"refine": FaceDetector(), "refine=False": FaceDetector(refine=False)}
    astronaut = np.ascontiguousarray(data.astronaut())
    crops = sample_paths(Path(args.data) / "dfdc-test", args.per_set, args.seed)
    page = np.full((1080, 1920, 3), 245, np.uint8)
    page[:80] = (40, 60, 90)  # a title bar
    for i, path in enumerate(crops[:4]):
        page[200:424, 100 + 300 * i:324 + 300 * i] = read_rgb(path)
    page[520:1000, 1300:1780] = cv2.resize(astronaut, (480, 480), interpolation=cv2.INTER_AREA)
    images = {"astronaut 1024x1024": cv2.resize(astronaut, (1024, 1024), interpolation=cv2.INTER_CUBIC),
              "page 1920x1080, 5 faces": page}
    out: dict = {"speed": {}, "crops": {}}
    for name, image in images.items():
        wall: dict[str, list[float]] = {k: [] for k in detectors}
        cpu: dict[str, list[float]] = {k: [] for k in detectors}
        for detector in detectors.values():
            detector.detect(image)  # warm up
        for _ in range(args.repeats):
            for key, detector in detectors.items():
                start, start_cpu = time.perf_counter(), time.process_time()
                detector.detect(image)
                wall[key].append(time.perf_counter() - start)
                cpu[key].append(time.process_time() - start_cpu)
        out["speed"][name] = {key: {"faces": len(detectors[key].detect(image)),
                                    "median_ms": round(1000 * float(np.median(wall[key])), 1),
                                    "cpu_median_ms": round(1000 * float(np.median(cpu[key])), 1)} for key in detectors}
        print(name, json.dumps(out["speed"][name]), flush=True)
    for side in (224, 448):
        whole, same = {k: 0 for k in detectors}, 0
        for path in crops:
            image = read_rgb(path)
            image = image if side == image.shape[0] else cv2.resize(image, (side, side), interpolation=cv2.INTER_CUBIC)
            found = {k: extract_faces(image, d, mode="auto") for k, d in detectors.items()}
            for key, faces in found.items():
                whole[key] += int(len(faces) == 1 and not faces[0].aligned)
            a, b = found.values()
            same += int(len(a) == len(b) and all(np.array_equal(x.crop, y.crop) for x, y in zip(a, b)))
        out["crops"][f"{side}px"] = {"crops": len(crops), "used_whole": whole, "same_crops": same}
        print(side, json.dumps(out["crops"][f"{side}px"]), flush=True)
    return out


def main() -> int:
    parser = bench_parser(__doc__, show_defaults=True)
    parser.add_argument("part", choices=("shares", "group", "refine"))
    parser.add_argument("--per-set", type=int, default=100, help="crops per data set (shares, refine)")
    add_repeats_arg(parser, default=15, per="image and detector (refine)")
    parser.add_argument("--cuts", type=int, default=40, help="of those, how many are also cut loose (shares)")
    parser.add_argument("--upscaled", type=int, default=100, help="of those, how many also at 448 px (shares)")
    parser.add_argument("--dim-grids", type=int, default=27, help="grids with one dim face (group)")
    parser.add_argument("--crop-min-face-share", type=float, default=None,
                        help="replace vision.faces.CROP_MIN_FACE_SHARE for this run (0.15 = the rule before 2026-12-03)")
    parser.add_argument("--no-dim-pass", action="store_true",
                        help="detect without the dark-region pass (vision.lighting.DIM_REGIONS = 0): the 'before'")
    parser.add_argument("--only-dim", action="store_true", help="measure the dim-face recall alone (group)")
    parser.add_argument("--first-pass", choices=("mtcnn", "blazeface"), default=None,
                        help="the detector's first pass for this run (vision.face_detector.FIRST_PASS)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data", default=str(REPO.parent / "shared" / "data"), help="the shared data folder")
    parser.add_argument("--out", default=None, help="JSON output (default: benchmarks/results/group[_shares].json)")
    args = parser.parse_args()
    start = time.perf_counter()
    if args.crop_min_face_share is not None:
        import vision.faces

        vision.faces.CROP_MIN_FACE_SHARE = args.crop_min_face_share  # read at call time, in this process
    if args.no_dim_pass:
        import vision.lighting

        vision.lighting.DIM_REGIONS = 0
    if args.first_pass:
        import vision.face_detector

        vision.face_detector.FIRST_PASS = args.first_pass  # read when each detector is made
    result = {"shares": run_shares, "group": run_group, "refine": run_refine}[args.part](args)
    result.update({"created": now(),
                   "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}",
                   "seconds": round(time.perf_counter() - start, 1),
                   # no machine paths in the record: the data folder and output are the caller's
                   "args": {k: v for k, v in vars(args).items() if k not in ("data", "out")}})
    names = {"shares": "group_shares.json", "group": "group.json", "refine": "group_refine.json"}
    write_json(args.out or RESULTS / names[args.part], result, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
