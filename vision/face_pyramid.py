"""MTCNN's three networks driven so that the cost follows the face, not the image.

The ``mtcnn`` package runs its scale pyramid on the whole image as a float tensor: every level is
resized in TensorFlow from the full-size image, and RNet's patches are cut from it too. For a
1024 px portrait or a 1080p screenshot most of that work looks for faces far smaller than any the
caller wants. :class:`FacePyramid` runs the same networks (same weights, exported to ONNX:
`vision.mtcnn_export`) with the same box and landmark arithmetic (`vision.mtcnn_boxes`, which
behaves as ``mtcnn.utils`` does without importing TensorFlow) in three steps:

1. a reduced copy of each image, shrunk so the smallest wanted face is :data:`REDUCED_FACE` px
   (area filter, in OpenCV on uint8), from which the PNet pyramid is made and RNet's patches cut;
2. the pyramid starts at the smallest wanted face, so its first level is already small;
3. ONet, which gives the final box, confidence and the five landmarks, runs on patches cut from
   the image at full resolution, around each face RNet kept, exactly as ``mtcnn`` cuts them
   (``crop_and_resize`` with TensorFlow's coordinate convention), so the landmarks that align a
   crop come from the same pixels as before.

The output is ``mtcnn``'s JSON form (``box`` as x, y, width, height; ``confidence``;
``keypoints``), rounded the same way, so callers need not know which driver ran.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Sequence

import cv2
import numpy as np

from vision.area import area_resize, integral_image
from vision.jit import use_compiled_loops
from vision.mtcnn_boxes import (adjust_bboxes, crop_and_resize, generate_bounding_box, limit_bboxes, pick_matches,
                                resize_to_square, smart_nms_from_bboxes, to_json)
from vision.mtcnn_export import MODEL_DIR

WINDOW = 12.0  # PNet's window: the smallest face, in pixels, that one pyramid level can see
SCALE_STEP = 0.709  # ratio between pyramid levels, as in MTCNN's paper and package
# The smallest wanted face's size in the reduced copy: twice RNet's 24 px input, so RNet's patches
# are sampled from at least twice their size. 24 px (no margin) lost 2 of 160 gan-faces portraits
# that the full-size pyramid found; 48 lost none (benchmarks/bench_photos.py).
REDUCED_FACE = 48.0
THRESHOLDS = (0.6, 0.7, 0.8)  # PNet, RNet, ONet face probabilities (mtcnn's defaults)
# Pyramid levels of at most this many pixels are area-averaged from one integral image of the
# reduced copy (`vision.area`: 0.1-0.2 ms each) instead of by OpenCV, whose area filter costs
# about 1.2 ms per level whatever its size when the scale is not a whole number (2026-12-04).
SMALL_LEVEL = 64 * 64


def _normalized(images: np.ndarray) -> np.ndarray:
    """uint8 RGB (or float32 samples of it) -> float32 in MTCNN's input range, about [-1, 1]."""
    return (images.astype(np.float32) - 127.5) / 128.0


def _patches(images: np.ndarray, coords: np.ndarray, index: np.ndarray, side: int) -> np.ndarray:
    """MTCNN's normalised patches, as ``crop_and_resize`` cuts them from the normalised images
    (samples outside an image read 0), but sampled from the uint8 pixels and normalised after:
    the same bilinear mix to float32 rounding, without a float copy of every image."""
    return _normalized(crop_and_resize(images, coords.astype(np.float32), index.astype(np.int32), (side, side),
                                       extrapolation_value=127.5))


def load_loops() -> None:
    """Makes this process (and the processes it forks) run detection's compiled loops (`vision.jit`),
    for one that will detect many pictures, and loads them now: each runs once on tiny inputs of
    the kinds a detection passes it, so that Numba and its cached machine code (~0.55 s) load
    beside the models rather than on the first picture."""
    use_compiled_loops()
    tiny = np.zeros((1, 8, 16, 3), np.uint8)
    area_resize(tiny[0], (4, 4))
    for images in (tiny, tiny[:, :, ::2]):  # a whole stack and a region of a picture (strided)
        crop_and_resize(images, np.array([[0.0, 0.0, 1.0, 1.0]], np.float32), np.zeros(1, np.int32), (4, 4))
    generate_bounding_box(np.zeros((1, 2, 2, 4), np.float32), np.ones((1, 2, 2, 2), np.float32), THRESHOLDS[0])
    smart_nms_from_bboxes(np.array([[0, 0, 0, 4, 4, 0.9], [0, 1, 1, 5, 5, 0.8]]), 0.5)


def pyramid_scales(short_side: float, min_face: float) -> list[float]:
    """Scales (relative to the image) at which PNet looks for faces of ``min_face`` px and up.

    The first level makes a ``min_face`` face fill PNet's 12 px window; the pyramid stops where the
    image's short side would drop under the window.
    """
    scales, scale = [], WINDOW / float(min_face)
    while short_side * scale >= WINDOW:
        scales.append(scale)
        scale *= SCALE_STEP
    return scales


class FacePyramid:
    """MTCNN (PNet, RNet, ONet with the package's weights) with a face-sized pyramid.

    The networks run on ONNX Runtime from the exports in ``vision/mtcnn_onnx/``
    (`vision.mtcnn_export`): detection imports no TensorFlow.

    Args:
        model_dir: the folder holding ``pnet.onnx``, ``rnet.onnx`` and ``onet.onnx``.
        threads: intra-op threads of each network (None: the worker's cap, see
            `agents.onnx_model.session_options`).
    """

    def __init__(self, *, model_dir: str | os.PathLike[str] = MODEL_DIR, threads: int | None = None) -> None:
        from agents.onnx_model import OnnxModel

        self._pnet, self._rnet, self._onet = (OnnxModel(Path(model_dir) / f"{name}.onnx", threads=threads).run
                                              for name in ("pnet", "rnet", "onet"))

    def onet(self, patches: np.ndarray) -> Sequence[np.ndarray]:
        """ONet alone on 48 px patches (float32, MTCNN's normalisation): box offsets (n, 4),
        landmarks (n, 10, shares of the patch: five x then five y) and scores (n, 2)."""
        return self._onet(np.asarray(patches, dtype=np.float32))

    def detect_faces(self, images: Sequence[np.ndarray], min_face_size: float) -> list[list[dict[str, Any]]]:
        """Faces of about ``min_face_size`` px and larger in images of one size.

        Args:
            images: RGB uint8 arrays, all of the same shape.
            min_face_size: smallest face to look for, in the images' pixels (>= 12).

        Returns:
            One list per image of ``mtcnn``-style dicts: ``box`` [x, y, w, h] (ints),
            ``confidence`` (float) and ``keypoints`` (name -> [x, y] ints).
        """
        if not images:
            return []
        if len({image.shape for image in images}) != 1:
            raise ValueError("detect_faces needs images of one size; call it once per size.")
        height, width = images[0].shape[:2]
        scales = pyramid_scales(min(height, width), max(WINDOW, float(min_face_size)))
        if not scales:
            return [[] for _ in images]
        # The reduced copy: the smallest wanted face becomes REDUCED_FACE px (never enlarged).
        reduce = min(1.0, REDUCED_FACE / max(WINDOW, float(min_face_size)))
        size = (max(1, round(width * reduce)), max(1, round(height * reduce)))
        reduced = np.stack([image if size == (width, height) else cv2.resize(image, size, interpolation=cv2.INTER_AREA)
                            for image in images])
        boxes = self._propose(reduced, scales, reduce)
        if len(boxes):
            boxes = self._refine(reduced, boxes, (width / size[0], height / size[1]))
        if len(boxes):
            boxes = self._output(np.stack(images), resize_to_square(boxes))
        return _to_json(boxes, len(images), height, width)

    def _propose(self, reduced: np.ndarray, scales: list[float], reduce: float) -> np.ndarray:
        """PNet over the pyramid of the reduced copies: candidate boxes in full-image pixels."""
        height, width = reduced.shape[1:3]
        found, tables = [], [None] * len(reduced)
        for scale in scales:
            level = scale / reduce  # relative to the reduced copy; <= 12 / REDUCED_FACE by construction
            size = (int(width * level), int(height * level))
            if min(size) < WINDOW:  # rounding in the reduced copy can leave the last level short
                continue
            if size[0] * size[1] > SMALL_LEVEL:
                stack = np.stack([cv2.resize(image, size, interpolation=cv2.INTER_AREA) for image in reduced])
            else:
                tables = [integral_image(image) if table is None else table for image, table in zip(reduced, tables)]
                stack = np.stack([area_resize(image, size, table) for image, table in zip(reduced, tables)])
            reg, cls = self._pnet(_normalized(stack))
            boxes = generate_bounding_box(reg, cls, THRESHOLDS[0])
            if len(boxes):
                boxes[:, 1:5] /= scale
                found.append(smart_nms_from_bboxes(boxes, threshold=0.5, method="union", initial_sort=False))
        if not found:
            return np.empty((0, 6))
        merged = smart_nms_from_bboxes(np.concatenate(found), threshold=0.7, method="union", initial_sort=True)
        return resize_to_square(merged)

    def _refine(self, reduced: np.ndarray, boxes: np.ndarray, step: tuple[float, float]) -> np.ndarray:
        """RNet on patches of the reduced copies; keeps and corrects boxes (full-image pixels)."""
        height, width = reduced.shape[1:3]
        # mtcnn divides box corners by the image size (not size - 1); do the same in the copy.
        coords = np.stack([boxes[:, 2] / step[1] / height, boxes[:, 1] / step[0] / width,
                           boxes[:, 4] / step[1] / height, boxes[:, 3] / step[0] / width], axis=1)
        patches = _patches(reduced, coords, boxes[:, 0], 24)
        offsets, scores = self._rnet(patches)
        boxes = boxes.copy()
        boxes[:, 5] = scores[:, -1]
        boxes = pick_matches(adjust_bboxes(boxes, offsets), score_threshold=THRESHOLDS[1])
        if not len(boxes):
            return boxes
        return smart_nms_from_bboxes(boxes, threshold=0.7, method="union", initial_sort=True)

    def _output(self, images: np.ndarray, boxes: np.ndarray) -> np.ndarray:
        """ONet on 48 px patches cut at full resolution: final boxes, confidences, landmarks."""
        patches = np.concatenate([self._patches_full(images[int(i)], boxes[boxes[:, 0] == i])
                                  for i in np.unique(boxes[:, 0])])
        order = np.concatenate([np.flatnonzero(boxes[:, 0] == i) for i in np.unique(boxes[:, 0])])
        boxes = boxes[order]
        offsets, landmarks, scores = self._onet(patches)
        width = boxes[:, 3:4] - boxes[:, 1:2] + 1
        height = boxes[:, 4:5] - boxes[:, 2:3] + 1
        points = np.concatenate([width * landmarks[:, :5] + boxes[:, 1:2] - 1,
                                 height * landmarks[:, 5:] + boxes[:, 2:3] - 1], axis=1)
        boxes = boxes.copy()
        boxes[:, 5] = scores[:, -1]
        boxes = np.concatenate([adjust_bboxes(boxes, offsets), points], axis=1)
        boxes = pick_matches(boxes, scores_column=5, score_threshold=THRESHOLDS[2])
        if not len(boxes):
            return boxes
        return smart_nms_from_bboxes(boxes, threshold=0.7, method="min", initial_sort=True)

    def _patches_full(self, image: np.ndarray, boxes: np.ndarray) -> Any:
        """48 px patches of one image, as ``crop_and_resize`` would cut them from the whole image,
        but sampled from only the region the boxes cover (no full-size float copy)."""
        height, width = image.shape[:2]
        # Where crop_and_resize samples in the whole image, with mtcnn's box normalization:
        # from box / size * (size - 1) to the same for the far corner.
        ys = boxes[:, [2, 4]] / height * (height - 1)
        xs = boxes[:, [1, 3]] / width * (width - 1)
        top = int(np.clip(np.floor(ys.min()), 0, height - 1))
        left = int(np.clip(np.floor(xs.min()), 0, width - 1))
        bottom = int(np.clip(np.ceil(ys.max()), top, height - 1))
        right = int(np.clip(np.ceil(xs.max()), left, width - 1))
        region = image[top:bottom + 1, left:right + 1]
        rh, rw = max(region.shape[0] - 1, 1), max(region.shape[1] - 1, 1)
        # Samples outside the image fall outside the region too: mid-grey, 0 once normalised, as before.
        coords = np.stack([(ys[:, 0] - top) / rh, (xs[:, 0] - left) / rw,
                           (ys[:, 1] - top) / rh, (xs[:, 1] - left) / rw], axis=1)
        return _patches(region[None], coords, np.zeros(len(boxes)), 48)


def _to_json(boxes: np.ndarray, count: int, height: int, width: int) -> list[list[dict[str, Any]]]:
    """Rows [image, x1, y1, x2, y2, confidence, 5 x, 5 y] -> mtcnn's dicts, boxes kept in the image."""
    if not len(boxes):
        return [[] for _ in range(count)]
    shapes = np.array([[height, width, 3]] * count)
    return to_json(limit_bboxes(boxes, images_shapes=shapes, limit_landmarks=False), images_count=count,
                   output_as_width_height=True, input_as_width_height=False)
