"""Two-shots with one face in shadow: does the dark-region pass still find the dim face when it
skips the regions a found face mostly takes (`vision.lighting.DIM_SKIP_SHARE`)?

Usage:
    python benchmarks/bench_two_shot.py [--out benchmarks/results/two_shot.json]

Each picture is one face (scikit-image's astronaut, cut around its detected box with a margin of
``--pads`` times the box's side, on a plain dark backdrop) twice side by side: as it is, and in
shadow (``--lights`` of its light over a raised black level of 12). Every combination of margin,
light, backdrop grey (``--backdrops``) and picture width (``--widths``) is detected twice, with the
skip (the default share) and without it (a share no face can reach), and the faces found on each
side are compared. Detector only; no data set is read.
"""

from __future__ import annotations

import itertools
import sys

import numpy as np

from harness import bench_parser, setup, stamp, write_json

setup(tf_log_level="3")


def two_shot(face: np.ndarray, box: tuple[int, int, int, int], *, pad: float, light: float, backdrop: int,
             width: int) -> np.ndarray:
    """The face cut with ``pad`` times its side around it on a ``backdrop`` grey, beside the same
    cut at ``light`` of its light, resized to ``width`` px across."""
    import cv2

    x, y, w, h = box
    margin = int(pad * max(w, h))
    tile = np.full((h + 2 * margin, w + 2 * margin, 3), backdrop, np.uint8)
    y0, y1 = max(0, y - margin), min(face.shape[0], y + h + margin)
    x0, x1 = max(0, x - margin), min(face.shape[1], x + w + margin)
    tile[y0 - (y - margin):y1 - (y - margin), x0 - (x - margin):x1 - (x - margin)] = face[y0:y1, x0:x1]
    pair = np.hstack([tile, (tile * light + 12).astype(np.uint8)])
    scale = width / pair.shape[1]
    interpolation = cv2.INTER_AREA if scale < 1 else cv2.INTER_CUBIC
    return np.ascontiguousarray(cv2.resize(pair, None, fx=scale, fy=scale, interpolation=interpolation))


def main() -> None:
    parser = bench_parser(__doc__, out="two_shot.json")
    parser.add_argument("--pads", type=float, nargs="+", default=[0.15, 0.3, 0.45, 0.6, 0.8, 1.0])
    parser.add_argument("--lights", type=float, nargs="+", default=[0.07, 0.15, 0.25])
    parser.add_argument("--backdrops", type=int, nargs="+", default=[15, 30, 45])
    parser.add_argument("--widths", type=int, nargs="+", default=[512, 1024])
    args = parser.parse_args()
    from skimage import data

    import vision.lighting as lighting
    from vision.face_detector import FaceDetector

    face = np.ascontiguousarray(data.astronaut())
    detector = FaceDetector()
    box = tuple(int(v) for v in detector.detect(face)[0].box)
    default_share = lighting.DIM_SKIP_SHARE
    cases = []
    for pad, light, backdrop, width in itertools.product(args.pads, args.lights, args.backdrops, args.widths):
        picture = two_shot(face, box, pad=pad, light=light, backdrop=backdrop, width=width)
        sides = {}
        for name, share in (("skip", default_share), ("no_skip", 2.0)):
            lighting.DIM_SKIP_SHARE = share
            try:
                found = detector.detect(picture)
            finally:
                lighting.DIM_SKIP_SHARE = default_share
            sides[name] = sorted(int(f.box[0] // (picture.shape[1] / 2)) for f in found)  # 0 lit, 1 dim
        cases.append({"pad": pad, "light": light, "backdrop": backdrop, "width": width, **sides})
    result = {**stamp(sys.argv[1:]), "dim_skip_share": default_share, "cases": len(cases),
              "dim_found_skip": sum(1 in c["skip"] for c in cases),
              "dim_found_no_skip": sum(1 in c["no_skip"] for c in cases),
              "lit_found_skip": sum(0 in c["skip"] for c in cases),
              "lit_found_no_skip": sum(0 in c["no_skip"] for c in cases),
              "differ": [c for c in cases if c["skip"] != c["no_skip"]], "per_case": cases}
    write_json(args.out, result, echo=True, hide=("per_case",))


if __name__ == "__main__":
    main()
