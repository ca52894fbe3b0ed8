"""The face stage in this process: crops used whole, unreadable inputs rejected, context columns."""

from __future__ import annotations

import os

import cv2
import numpy as np
import pytest

from blackboard.face_stage import FaceStage
from blackboard.stage_rows import NO_FACE, OK, REJECTED, STATUSES, context_column


@pytest.mark.slow  # loads real models (MTCNN / three agents): several seconds of CPU
def test_face_stage_uses_a_small_crop_whole_without_loading_mtcnn(tmp_path, face_crop, face_rgb, monkeypatch):
    """--detect auto: a crop-shaped image of at most CROP_TRUST_SIDE px is a crop (no detector is
    loaded); one statuses vocabulary; a larger photo still goes to MTCNN."""
    for var in ("TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS", "OMP_NUM_THREADS"):
        monkeypatch.setenv(var, os.environ.get(var, "2"))
    threads = cv2.getNumThreads()
    try:
        stage = FaceStage(detect="auto", fps=1.0, all_faces=False, context=("blur",))
    finally:
        cv2.setNumThreads(threads)
    cv2.imwrite(str(tmp_path / "crop.png"), cv2.cvtColor(face_crop, cv2.COLOR_RGB2BGR))
    (tmp_path / "bad.png").write_bytes(b"not an image")
    batch_in = {"source": np.array([str(tmp_path / "crop.png"), str(tmp_path / "bad.png")], dtype=object),
                "input_index": np.array([0, 1]), "shard": np.array([0, 0])}
    out = stage(batch_in)
    assert stage._detector is None  # MTCNN never loaded for a crop
    assert list(out["status"]) == [OK, REJECTED] and set(out["status"]) <= set(STATUSES)
    assert out["face"].shape == (2, 224, 224, 3) and not out["aligned"][0]
    assert np.isfinite(out[context_column("blur")][0]) and np.isnan(out[context_column("blur")][1])
    blank = np.full((600, 600, 3), 128, np.uint8)  # crop-shaped but large: detected, nothing found
    cv2.imwrite(str(tmp_path / "blank.png"), blank)
    out = stage({"source": np.array([str(tmp_path / "blank.png")], dtype=object), "input_index": np.array([0]),
                 "shard": np.array([0])})
    assert stage._detector is not None and list(out["status"]) == [NO_FACE]

