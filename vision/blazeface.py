"""Face boxes from MediaPipe's BlazeFace (full-range) on ONNX Runtime: the detector's fast first pass.

BlazeFace looks at the whole picture once, shrunk to 192 x 192 px, and scores one anchor per cell
of a 48 x 48 grid; each anchor regresses a box (and six key points, unused here: the detector
reads MTCNN's five landmarks around each face, `vision.face_refine`). One pass costs ~5 ms on one
core where MTCNN's pyramid, RNet and ONet cost ~60 ms on a 1024 px portrait
(benchmarks/bench_blazeface.py). The anchor layout, the box decoding and the score rule follow
MediaPipe's published options for this model (SSD anchors, stride 4, offset 0.5, fixed anchor
size; box values in input pixels around the anchor; sigmoid of logits clipped at +-80; score
> 0.5; suppression at IoU 0.3).
"""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np

from vision.blazeface_export import MODEL_DIR, MODEL_FILE

SIDE = 192  # the network's input side, px
STRIDE = 4  # one anchor per 4 x 4 px cell of the input: a 48 x 48 grid
MIN_SCORE = 0.5  # MediaPipe's detection threshold
NMS_OVERLAP = 0.3  # MediaPipe's suppression threshold (IoU)
RAW_SCORE_LIMIT = 80.0  # logits are clipped before the sigmoid (float32 overflow)
PAD_VALUE = 128  # the letterbox beyond the picture: mid-grey, 0 after scaling to [-1, 1]


def anchors(side: int = SIDE, stride: int = STRIDE) -> np.ndarray:
    """(n, 2) anchor centres as shares of the input, x varying fastest (the network's order)."""
    cells = side // stride
    centres = (np.arange(cells, dtype=np.float32) + 0.5) / cells
    return np.stack(np.meshgrid(centres, centres), axis=-1).reshape(-1, 2)


class BlazeFace:
    """BlazeFace's face boxes for RGB uint8 pictures.

    Args:
        model_path: the ONNX export (`vision.blazeface_export`).
        threads: ONNX Runtime intra-op threads (None: the worker's cap, `agents.onnx_model`).
        min_score: boxes scored at or below this are dropped.
    """

    def __init__(self, *, model_path: str | os.PathLike[str] = MODEL_DIR / MODEL_FILE, threads: int | None = None,
                 min_score: float = MIN_SCORE) -> None:
        if not 0.0 <= float(min_score) < 1.0:
            raise ValueError(f"min_score must be in [0, 1), received {min_score!r}.")
        from agents.onnx_model import OnnxModel

        self._run = OnnxModel(Path(model_path), threads=threads).run
        self.min_score = float(min_score)
        self._anchors = anchors()

    def boxes(self, image_rgb: np.ndarray) -> np.ndarray:
        """Faces in ``image_rgb``: (n, 5) rows of x, y, width, height (image pixels) and score,
        most confident first."""
        height, width = image_rgb.shape[:2]
        scale = SIDE / max(height, width)  # letterboxed: the picture at the top left, grey beyond
        size = (max(1, round(width * scale)), max(1, round(height * scale)))
        canvas = np.full((SIDE, SIDE, 3), PAD_VALUE, np.uint8)
        canvas[:size[1], :size[0]] = cv2.resize(image_rgb, size, interpolation=cv2.INTER_AREA)
        raw, logits = self._run((canvas.astype(np.float32) / 127.5 - 1.0)[None])
        raw, logits = np.asarray(raw)[0], np.asarray(logits)[0, :, 0]
        scores = 1.0 / (1.0 + np.exp(-np.clip(logits, -RAW_SCORE_LIMIT, RAW_SCORE_LIMIT)))
        keep = np.flatnonzero(scores > self.min_score)
        if not len(keep):
            return np.empty((0, 5))
        centre = raw[keep, :2] / SIDE + self._anchors[keep]
        extent = raw[keep, 2:4] / SIDE
        # Shares of the input -> image pixels (the letterbox starts at the top left: no offset).
        pixels = np.concatenate([centre - extent / 2, extent], axis=1).astype(np.float64) * (SIDE / scale)
        valid = np.flatnonzero((pixels[:, 2] > 0) & (pixels[:, 3] > 0))
        chosen = np.asarray(cv2.dnn.NMSBoxes(pixels[valid].tolist(), scores[keep][valid].tolist(), self.min_score,
                                             NMS_OVERLAP), dtype=int).reshape(-1)
        rows = np.concatenate([pixels[valid][chosen], scores[keep][valid][chosen, None]], axis=1)
        return rows[np.argsort(-rows[:, 4], kind="stable")]
