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


def test_the_face_stage_in_a_process_without_ray_does_not_import_it(tmp_path, face_crop):
    """An in-process job (`blackboard.local_stages`) names no Ray node, and asking must not import
    Ray (~0.6 s of CPU before its first block)."""
    import subprocess
    import sys
    from pathlib import Path

    repo = Path(__file__).resolve().parents[3]
    cv2.imwrite(str(tmp_path / "crop.png"), cv2.cvtColor(face_crop, cv2.COLOR_RGB2BGR))
    code = ("import sys\nimport numpy as np\nfrom blackboard.face_stage import FaceStage\n"
            "stage = FaceStage(detect='off', fps=1.0, all_faces=False)\n"
            f"out = stage({{'source': np.array([{str(tmp_path / 'crop.png')!r}], dtype=object), "
            "'input_index': np.array([0]), 'shard': np.array([0])})\n"
            "print(list(out['status']), repr(stage.node_id), 'ray' in sys.modules)\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=repo,
                          env={**os.environ, "PYTHONPATH": str(repo)})
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] == f"[{OK!r}] '' False"


def test_only_a_stage_that_will_see_many_pictures_loads_the_compiled_loops(monkeypatch):
    # A Ray actor or a large job's worker process (compiled_loops) pays Numba's start-up with its
    # detector; a small job's stage keeps NumPy's loops (`vision.jit`).
    from vision import jit

    monkeypatch.setattr(jit, "_IN_USE", [False])
    assert FaceStage(detect="on", fps=1.0).detector is not None and not jit.compiled_loops_in_use()
    assert FaceStage(detect="on", fps=1.0, compiled_loops=True).detector is not None
    assert jit.compiled_loops_in_use()
