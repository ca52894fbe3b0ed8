"""The plain predictor class every deployment wraps (Ray actor, Ray Data pool, in-process).

``__init__`` loads the model once; ``__call__`` takes a batch dict, so the same class serves
as a Ray Data ``map_batches`` callable, a Ray actor body and an in-process predictor. Ray
resources are applied where it is deployed, never here. The model is whatever the bundle
holds for the agent: its ONNX export on ONNX Runtime (`agents.onnx_model.OnnxModel`), a Keras
model for a bundle without one, or for the forensic agent an `agents.forensic.ForensicModel`
(its trees on ONNX Runtime too, `agents.forensic_onnx`), all with the same ``predict_on_batch``
interface.
"""

from __future__ import annotations

import os
import time
from typing import Any, Sequence

import numpy as np

from agents.bundle import Bundle, load_bundle
from agents.labels import FAKE_INDEX
from agents.preprocessing import prepare_batch


def apply_temperature(probs: np.ndarray, temperature: float, bias: float = 0.0) -> np.ndarray:
    """Rescales softmax probabilities by a temperature, then moves the fake class's log-odds by
    ``bias``: softmax(log(p) / T + bias * [class is fake])."""
    if temperature <= 0:
        raise ValueError(f"temperature must be positive, received {temperature}.")
    logp = np.log(np.clip(probs.astype(np.float64), 1e-12, 1.0)) / float(temperature)
    if bias:
        logp[:, FAKE_INDEX] += float(bias)
    logp -= logp.max(axis=1, keepdims=True)
    e = np.exp(logp)
    return (e / e.sum(axis=1, keepdims=True)).astype(np.float32)


def import_libraries(bundle: Bundle, agents: Sequence[str]) -> None:
    """Imports on the calling thread the libraries the agents' models run on, before threads
    load them side by side: ONNX Runtime always (the CNNs' exports and MTCNN), Keras and
    TensorFlow only for a Keras agent without an ONNX export (TensorFlow imported from two
    threads at once fails half-way)."""
    import onnxruntime  # noqa: F401

    if any(bundle.agent(name).kind == "keras" and not bundle.agent(name).onnx_file for name in agents):
        import keras  # noqa: F401


class AgentPredictor:
    """Calibrated class probabilities from one agent of a bundle.

    Args:
        bundle: a bundle directory (None = the shipped default) or a loaded `Bundle`.
        agent: the agent's name in that bundle.
        batch_size: images per forward pass.
        image_key: the batch-dict key holding RGB uint8 face crops.
        runtime: "auto" (the agent's ONNX export when the bundle has one) or "keras"
            (`agents.bundle.Bundle.load_model`).
    """

    def __init__(
        self,
        bundle: str | os.PathLike[str] | Bundle | None,
        agent: str,
        *,
        batch_size: int = 64,
        image_key: str = "face",
        runtime: str = "auto",
    ) -> None:
        self.bundle = bundle if isinstance(bundle, Bundle) else load_bundle(bundle)
        self.info = self.bundle.agent(agent)
        self.name = agent
        self.batch_size = int(batch_size)
        self.image_key = image_key
        self.model = self.bundle.load_model(agent, runtime=runtime)
        self.model_sha = self.info.sha256
        # Whether two threads may call the model at once: ONNX Runtime sessions and scikit-learn's
        # trees may; a Keras model (a bundle without ONNX exports) is kept to one caller.
        self.thread_safe = not (self.info.kind == "keras" and (runtime == "keras" or not self.info.onnx_file))

    def predict_proba(self, faces: Sequence[np.ndarray] | np.ndarray,
                      prepared: dict[Any, np.ndarray] | None = None) -> np.ndarray:
        """Calibrated probabilities, shape (N, 2) in `CLASSES` order, for RGB uint8 crops.

        ``prepared``: model inputs of these very faces already prepared by another agent, keyed by
        contract and chunk; this agent's are added (agents of one contract prepare them once).
        """
        if len(faces) == 0:
            return np.zeros((0, 2), dtype=np.float32)
        # Prepared chunk by chunk: a batch job hands over whole blocks (a video's frames), and
        # float32 copies of all of them at once would cost far more memory than one pass needs.
        spec = self.info.preprocessing
        parts = []
        for start in range(0, len(faces), self.batch_size):
            key = (spec, start, self.batch_size)
            x = None if prepared is None else prepared.get(key)
            if x is None:
                x = prepare_batch(faces[start:start + self.batch_size], spec)
                if prepared is not None:
                    prepared[key] = x
            parts.append(self._forward(x))
        raw = np.concatenate(parts, axis=0) if len(parts) > 1 else parts[0]
        return apply_temperature(raw, self.info.temperature, self.info.bias)

    def _forward(self, x: np.ndarray) -> np.ndarray:
        # Any batch size goes as it comes (ONNX exports have a free batch dimension; Keras traces
        # its predict function again for the first two batch shapes, then relaxes the batch
        # dimension). Padding to fixed shapes instead wasted up to half of each forward pass.
        return np.asarray(self.model.predict_on_batch(x))

    def warm_up(self) -> None:
        """Runs batches of one and two blank crops, so the first real batches pay no graph trace."""
        spec = self.info.preprocessing
        for n in (1, 2):
            self.predict_proba(np.zeros((n, spec.height, spec.width, 3), dtype=np.uint8))

    def predict_p_fake(self, faces: Sequence[np.ndarray] | np.ndarray,
                       prepared: dict[Any, np.ndarray] | None = None) -> np.ndarray:
        """Calibrated p(fake), shape (N,) (``prepared``: see :meth:`predict_proba`)."""
        return self.predict_proba(faces, prepared)[:, FAKE_INDEX]

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        """Adds ``{agent}_p_fake`` and ``{agent}_latency_ms`` columns to a batch dict."""
        start = time.perf_counter()
        p = self.predict_p_fake(list(batch[self.image_key]) if not isinstance(batch[self.image_key], np.ndarray)
                                else batch[self.image_key])
        elapsed = (time.perf_counter() - start) * 1000.0
        out = dict(batch)
        out[f"{self.name}_p_fake"] = p
        out[f"{self.name}_latency_ms"] = np.full(len(p), elapsed / max(len(p), 1), dtype=np.float32)
        return out
