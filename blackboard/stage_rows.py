"""The rows the stages of `fakeface batch` and `fakeface evaluate` pass along, and their columns.

One row per face, or one placeholder row per input or video frame without a face, so that every
input leaves a trace and the driver can tell when an input is complete: ``rows_for_input`` is how
many rows the face stage (`blackboard.face_stage`) emitted for that input. A batch is a dict of
column -> numpy array, as Ray Data's ``map_batches`` hands it to a stage.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from vision.context import CONTEXT_NAMES

CROP_SIZE = 224
# Row status values (batch output, evaluate's no_face.csv): a face was cut out, none was found,
# or the input could not be decoded.
OK, NO_FACE, REJECTED = "ok", "no_face", "rejected"
STATUSES = (OK, NO_FACE, REJECTED)


def context_column(name: str) -> str:
    """The column holding context feature ``name`` (``vision.context.CONTEXT_NAMES``)."""
    return f"ctx_{name}"


def row_contexts(batch: dict[str, Any], rows: np.ndarray) -> list[dict[str, float]] | None:
    """The face stage's context of the selected rows, as dicts; None when the columns are absent."""
    names = [n for n in CONTEXT_NAMES if context_column(n) in batch]
    if len(names) < len(CONTEXT_NAMES):
        return None
    values = np.stack([np.asarray(batch[context_column(n)], dtype=np.float64)[rows] for n in names], axis=1)
    return [dict(zip(names, row)) for row in values]


def face_row(*, kind: str, frame: int, time_s: float, status: str, face_index: int = -1,
             box: tuple[float, float, float, float] = (np.nan, np.nan, np.nan, np.nan),
             confidence: float = np.nan, aligned: bool = False, crop: np.ndarray | None = None,
             reason: str = "", context: dict[str, float] | None = None) -> dict[str, Any]:
    """One row of the face stage: a face (``status`` OK, with its crop) or a placeholder."""
    if crop is None:
        # A fixed-shape placeholder keeps the face column one tensor type; agents skip it.
        crop = np.zeros((CROP_SIZE, CROP_SIZE, 3), dtype=np.uint8)
    elif crop.shape != (CROP_SIZE, CROP_SIZE, 3):
        import cv2

        crop = cv2.resize(crop, (CROP_SIZE, CROP_SIZE), interpolation=cv2.INTER_AREA)
    return {
        "kind": kind, "frame": int(frame), "time_s": float(time_s), "face_index": int(face_index),
        "box_x": box[0], "box_y": box[1], "box_w": box[2], "box_h": box[3],
        "face_confidence": float(confidence), "aligned": bool(aligned), "face": crop,
        "has_face": status == OK, "status": status, "reason": reason, "context": dict(context or {}),
    }


_DTYPES = {
    "frame": np.int32, "face_index": np.int32, "rows_for_input": np.int32, "input_index": np.int64,
    "shard": np.int64, "time_s": np.float32, "box_x": np.float32, "box_y": np.float32,
    "box_w": np.float32, "box_h": np.float32, "face_confidence": np.float32, "aligned": bool,
    "has_face": bool,
}


def to_columns(rows: list[dict[str, Any]]) -> dict[str, np.ndarray]:
    """Row dicts -> column arrays with stable dtypes (strings as object arrays)."""
    cols: dict[str, np.ndarray] = {}
    for key in rows[0]:
        values = [r[key] for r in rows]
        if key == "face":
            cols[key] = np.stack(values).astype(np.uint8)
        elif key in _DTYPES:
            cols[key] = np.asarray(values, dtype=_DTYPES[key])
        else:
            cols[key] = np.asarray(values, dtype=object)
    return cols
