"""How many threads a stage's worker may start: one cap for ONNX Runtime, TensorFlow, OpenMP and OpenCV."""

from __future__ import annotations

import os


def limit_threads(threads: int) -> None:
    """Caps ONNX Runtime (`agents.onnx_model.session_options` reads ``OMP_NUM_THREADS``),
    TensorFlow and OpenMP threads in this worker before they start.

    Several actors share the machine's cores; each one spinning up a thread per core would
    oversubscribe them and make 2 actors slower than 1.
    """
    value = str(max(1, int(threads)))
    for var in ("TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS", "OMP_NUM_THREADS"):
        os.environ[var] = value
    import cv2

    cv2.setNumThreads(int(value))

