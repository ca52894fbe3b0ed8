"""MTCNN's three networks as ONNX files, so that detection runs without TensorFlow.

The ``mtcnn`` package ships PNet, RNet and ONet as Keras layers with its own weights; importing
any of it imports TensorFlow (4-6 s, ~0.7 GB). The files in ``vision/mtcnn_onnx/`` are those
networks with those weights, exported once with tf2onnx and committed (2 MB), and
`vision.face_pyramid.FacePyramid` runs them on ONNX Runtime. ``tests/unit/vision/test_mtcnn_export.py``
checks them against the package's networks; after an ``mtcnn`` upgrade, regenerate them with

    fakeface bundle export-mtcnn            # or: --out DIR
"""

from __future__ import annotations

import os
from pathlib import Path

from agents.atomic import atomic_write_bytes
from agents.onnx_model import OPSET

# Where the committed exports live (package data of `vision`).
MODEL_DIR = Path(__file__).resolve().parent / "mtcnn_onnx"
# Network -> (the package's class, its weights file, input shape; None = any size).
NETWORKS = {
    "pnet": ("mtcnn.network.pnet.PNet", "pnet.lz4", (None, None, None, 3)),
    "rnet": ("mtcnn.network.rnet.RNet", "rnet.lz4", (None, 24, 24, 3)),
    "onet": ("mtcnn.network.onet.ONet", "onet.lz4", (None, 48, 48, 3)),
}


def package_network(name: str):
    """The ``mtcnn`` package's network ``name`` with its weights, as a traced TensorFlow function."""
    import importlib

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf
    from mtcnn.utils.tensorflow import load_weights

    path, weights, shape = NETWORKS[name]
    module, cls = path.rsplit(".", 1)
    net = getattr(importlib.import_module(module), cls)()
    net.build()
    net.set_weights(load_weights(weights))
    return tf.function(net, input_signature=[tf.TensorSpec(shape, tf.float32, name="images")])


def export_mtcnn(out_dir: str | os.PathLike[str] = MODEL_DIR) -> list[Path]:
    """Writes ``pnet.onnx``, ``rnet.onnx`` and ``onet.onnx`` (each written whole, then renamed)."""
    import tf2onnx

    out, written = Path(out_dir), []
    out.mkdir(parents=True, exist_ok=True)
    for name in NETWORKS:
        traced = package_network(name)
        proto, _ = tf2onnx.convert.from_function(traced, input_signature=traced.input_signature, opset=OPSET)
        written.append(atomic_write_bytes(out / f"{name}.onnx", proto.SerializeToString()))
    return written

