"""How much the agents depend on the data set's framing: the same faces used whole vs cut as serving cuts them.

Usage:
    python benchmarks/bench_framing.py [--bundle DIR] [--per-class 60] [--data ../shared/data]

For the first ``--per-class`` real and fake dfdc-test crops in which MTCNN finds a face, the
bundle scores (in process, `blackboard.inprocess.InProcessBoard.classify_faces`) the crop used
whole (as the agents were trained) and cut from the detector's result in several ways: serving's
similarity alignment (`vision.alignment.align_face`), a scale-and-shift-only fit to the same
template, and a square around the detector's box. For each: mean absolute pixel difference to
the whole crop, |Δ ensemble p_fake| (median, mean, share ≤ 0.02) and ensemble / forensic AUC.
A photo or a screenshot always reaches the agents through serving's cut.

Three more cuts put the crop in a desktop-player screenshot (`vision.screens`, seeded by the
file name) first: the face the detector finds there (as `fakeface evaluate --degrade player`
scores it), the crop's own landmarks moved onto the screen (the detector taken out), and the
same screenshot made from the crop inside its mirrored surround. The aligned window reaches
past a data set's crop; on a screenshot of the crop that part is the player's backdrop, behind
a hard edge no real frame has, and the last cut measures what that edge costs.
Results: benchmarks/results/framing.json.
"""

from __future__ import annotations

import sys
import zlib
from pathlib import Path

from harness import bench_parser, setup, stamp, write_json

setup()

import cv2  # noqa: E402
import numpy as np  # noqa: E402
from sklearn.metrics import roc_auc_score  # noqa: E402

from agents.command_line import add_bundle_arg  # noqa: E402
from blackboard.inprocess import InProcessBoard  # noqa: E402
from vision.alignment import align_face, template_points  # noqa: E402
from vision.face_detector import FaceDetector  # noqa: E402
from vision import screens  # noqa: E402
from vision.faces import extract_faces, whole_image_crop  # noqa: E402


def _warp(image: np.ndarray, scale: float, shift: np.ndarray, size: int = 224) -> np.ndarray:
    matrix = np.array([[scale, 0, shift[0]], [0, scale, shift[1]]])
    return cv2.warpAffine(image, matrix, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def scale_only(image: np.ndarray, landmarks: np.ndarray, *, k: float = 1.0, size: int = 224) -> np.ndarray:
    """The template fit without rotation: least-squares scale and shift of the five landmarks."""
    dst, src = template_points(size), np.asarray(landmarks, float)
    s = np.sqrt(((dst - dst.mean(0)) ** 2).sum() / ((src - src.mean(0)) ** 2).sum()) / k
    return _warp(image, s, dst.mean(0) - s * src.mean(0), size)


def box_square(image: np.ndarray, box, *, k: float = 1.0, size: int = 224) -> np.ndarray:
    """A square of ``k`` times the detector box's longer side, centred on the box."""
    x, y, w, h = box
    side = max(w, h) * k
    s = size / side
    return _warp(image, s, np.array([-(x + w / 2 - side / 2) * s, -(y + h / 2 - side / 2) * s]), size)


CUTS = {
    "aligned (serving)": lambda im, f: align_face(im, f.landmarks),
    "scale-only k1.0": lambda im, f: scale_only(im, f.landmarks),
    "scale-only k0.9": lambda im, f: scale_only(im, f.landmarks, k=0.9),
    "box k1.0": lambda im, f: box_square(im, f.box),
    "box k1.1": lambda im, f: box_square(im, f.box, k=1.1),
}

SCREEN_CUTS = ["player screenshot, detected", "player screenshot, crop's landmarks",
               "player screenshot, crop in its mirrored surround"]


def screenshot_cuts(image: np.ndarray, landmarks: np.ndarray, detector: FaceDetector, seed: int
                    ) -> list[np.ndarray] | None:
    """The SCREEN_CUTS of one crop (None when the detector finds no face in the screenshot)."""
    screen, (x, y, w, h) = screens.screenshot("player", image, np.random.default_rng(seed))
    found = extract_faces(screen, detector, mode="auto", all_faces=False)
    if not found:
        return None
    moved = np.asarray(landmarks, float) * [w / image.shape[1], h / image.shape[0]] + [x, y]
    pad = image.shape[0] // 2
    framed = cv2.copyMakeBorder(image, pad, pad, pad, pad, cv2.BORDER_REFLECT_101)
    screen2, (x2, y2, w2, h2) = screens.screenshot("player", framed, np.random.default_rng(seed))
    moved2 = (np.asarray(landmarks, float) + pad) * [w2 / framed.shape[1], h2 / framed.shape[0]] + [x2, y2]
    return [found[0].crop, align_face(screen, moved), align_face(screen2, moved2)]


def main(argv: list[str] | None = None) -> None:
    p = bench_parser(__doc__, out="framing.json")
    add_bundle_arg(p)
    p.add_argument("--per-class", type=int, default=60)
    p.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[2] / "shared/data")
    args = p.parse_args(argv)

    board, detector = InProcessBoard(args.bundle), FaceDetector()
    board.ready()
    rows = []
    for label in ("real", "fake"):
        paths = sorted((args.data / "dfdc-test" / label).glob("*.jpg"))[:args.per_class]
        for path in paths:
            image = cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)
            faces = detector.detect(image)
            if not faces:
                continue
            on_screen = screenshot_cuts(image, faces[0].landmarks, detector, zlib.crc32(path.name.encode()))
            if on_screen is None:
                continue
            crops = [whole_image_crop(image).crop] + [cut(image, faces[0]) for cut in CUTS.values()] + on_screen
            case = board.classify_faces(crops, deadline_s=300)
            rows.append({"fake": label == "fake",
                         "ensemble": [f.decision.p_fake for f in case.faces],
                         "forensic": [f.votes["forensic"].p_fake for f in case.faces],
                         "mad": [float(np.abs(c.astype(float) - crops[0]).mean()) for c in crops]})
    board.shutdown()
    y = np.array([r["fake"] for r in rows])
    ens, foren, mad = (np.array([r[k] for r in rows]) for k in ("ensemble", "forensic", "mad"))
    results = []
    for i, name in enumerate(["whole (trained framing)", *CUTS, *SCREEN_CUTS]):
        d = np.abs(ens[:, i] - ens[:, 0])
        results.append({"cut": name, "pixel_mad": round(float(mad[:, i].mean()), 2),
                        "dp_median": round(float(np.median(d)), 4), "dp_mean": round(float(d.mean()), 4),
                        "share_dp_le_0.02": round(float(np.mean(d <= 0.02)), 3),
                        "auc_ensemble": round(float(roc_auc_score(y, ens[:, i])), 4),
                        "auc_forensic": round(float(roc_auc_score(y, foren[:, i])), 4)})
        print(f"{name:48s} " + "  ".join(f"{k} {v}" for k, v in results[-1].items() if k != "cut"), flush=True)
    write_json(args.out, {**stamp(argv or sys.argv[1:]), "bundle": args.bundle or "default", "faces": len(rows),
                          "results": results})


if __name__ == "__main__":
    main()
