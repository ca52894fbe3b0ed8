"""A Keras agent's network as an ONNX file, run by ONNX Runtime.

Serving, `classify`, `batch` and `evaluate` only run the networks forward, and TensorFlow costs
4-6 s of import and ~0.7 GB in every process that holds it; ONNX Runtime imports in ~0.1 s. So a
bundle keeps each CNN twice: the `.keras` file (what training writes, what Grad-CAM and further
training read) and an `.onnx` export of the same float32 network, which :class:`OnnxModel` runs
with the ``predict_on_batch`` interface of a Keras model. The export needs TensorFlow (tf2onnx);
it happens where a bundle is written, never where it is served.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from agents.atomic import atomic_write_bytes

# ONNX operator set of the exports: supported by every onnxruntime release since 1.12.
OPSET = 17


def export_onnx(model: Any, path: str | os.PathLike[str]) -> Path:
    """Writes a Keras model's forward pass as an ONNX file (float32 in, the model's outputs out).

    Args:
        model: a built Keras model with float32 variables (as `agents.model_files.load_model_file`
            returns it), one image input of shape (batch, height, width, channels).
        path: the ``.onnx`` file to write (written whole, then renamed).

    Returns:
        The path written.
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf
    import tf2onnx

    shape = tuple(model.input_shape)
    if len(shape) != 4:
        raise ValueError(f"export_onnx needs a model with one image input (batch, h, w, c), received {shape}.")
    spec = [tf.TensorSpec((None, *shape[1:]), tf.float32, name="images")]
    proto, _ = tf2onnx.convert.from_keras(model, input_signature=spec, opset=OPSET)
    path = Path(path)
    atomic_write_bytes(path, _half_stored(proto).SerializeToString())
    return path


def _half_stored(proto: Any) -> Any:
    """The model with every weight that float16 holds exactly stored as float16 and cast back to
    float32 when the session starts (ONNX Runtime folds the casts): bundles store their Keras
    weights as float16, so their export halves in size and computes exactly the same."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    graph, casts = proto.graph, []
    for init in list(graph.initializer):
        if init.data_type != TensorProto.FLOAT:
            continue
        weights = numpy_helper.to_array(init)
        half = weights.astype(np.float16)
        if weights.size < 1024 or not np.array_equal(half.astype(np.float32), weights):
            continue
        graph.initializer.remove(init)
        graph.initializer.append(numpy_helper.from_array(half, f"{init.name}__f16"))
        casts.append(helper.make_node("Cast", [f"{init.name}__f16"], [init.name], to=TensorProto.FLOAT))
    nodes = casts + list(graph.node)
    del graph.node[:]
    graph.node.extend(nodes)
    onnx.checker.check_model(proto)
    return proto


def session_options(threads: int | None = None) -> Any:
    """ONNX Runtime options for a process that shares its cores with other models and actors.

    ``threads``: intra-op threads; None takes the cap a stage set for its worker
    (`blackboard.worker_threads.limit_threads` sets ``OMP_NUM_THREADS``), else ONNX Runtime's
    default. Idle threads sleep instead of spinning: several sessions share two cores.
    """
    import onnxruntime as ort

    options = ort.SessionOptions()
    if threads is None and os.environ.get("OMP_NUM_THREADS", "").isdigit():
        threads = int(os.environ["OMP_NUM_THREADS"])
    if threads:
        options.intra_op_num_threads = max(1, int(threads))
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.log_severity_level = 3  # errors only: the exports' unused-initializer notes are noise
    return options


class OnnxModel:
    """An exported network, called like a Keras model (``predict_on_batch``).

    Args:
        path: the ``.onnx`` file.
        threads: intra-op threads (see :func:`session_options`).
    """

    def __init__(self, path: str | os.PathLike[str], *, threads: int | None = None) -> None:
        import onnxruntime as ort

        self.path = Path(path)
        try:
            self._session = ort.InferenceSession(os.fspath(path), sess_options=session_options(threads),
                                                 providers=["CPUExecutionProvider"])
        except Exception as err:  # onnxruntime raises its own Fail / InvalidProtobuf types
            raise ValueError(f"{self.path.name} does not load as an ONNX model: {type(err).__name__}: {err}") from err
        self._input = self._session.get_inputs()[0].name
        self.input_shape = tuple(self._session.get_inputs()[0].shape)
        self.metadata = dict(self._session.get_modelmeta().custom_metadata_map)  # the file's own notes

    def run(self, x: np.ndarray) -> list[np.ndarray]:
        """Every output of the network for a float32 batch."""
        return self._session.run(None, {self._input: np.ascontiguousarray(x, dtype=np.float32)})

    def predict_on_batch(self, x: np.ndarray) -> np.ndarray:
        """The network's first output for a float32 batch (a Keras model's call)."""
        return self.run(x)[0]
