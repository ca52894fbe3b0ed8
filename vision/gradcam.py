"""Grad-CAM heatmaps: which pixels of a face crop pushed an agent towards "fake".

Grad-CAM (Selvaraju et al., 2017) weights the feature maps of the last convolutional stage by
the mean gradient of the class score and keeps the positive part. It runs on the TensorFlow
backend with ``tf.GradientTape``; the models are loaded from the bundle here (the ensemble's
copies live in Ray actors and are not reachable from this process).

The forensic agent has no feature maps: its "heatmap" is its per-feature-group contribution to
the log-odds of fake (``ForensicModel.explain``), drawn over the crop by
``annotate.contribution_panel``; :meth:`GradCamRenderer.explain` gives the numbers.
"""

from __future__ import annotations

import os
import threading
from typing import Any, Callable, Mapping, Sequence

import cv2
import numpy as np

from agents.bundle import Bundle, load_bundle
from agents.labels import FAKE_INDEX
from agents.preprocessing import prepare_batch
from vision.annotate import contribution_panel
from vision.media import encode_png


def _feature_layers(model) -> list:
    """The model's layers in call order, without the input layer.

    All agents are chains (each layer feeds the next), so running them one by one reproduces the
    model and exposes the intermediate feature map Grad-CAM needs.
    """
    import keras

    return [layer for layer in model.layers if not isinstance(layer, keras.layers.InputLayer)]


def _is_conv_stage(layer) -> bool:
    """A 2-D convolution, or a nested model (a transfer base such as VGG-16) containing one."""
    import keras

    if isinstance(layer, keras.layers.Conv2D):
        return True
    if isinstance(layer, keras.Model):
        return any(isinstance(inner, keras.layers.Conv2D) for inner in layer.layers)
    return False


def _is_softmax_dense(layer) -> bool:
    import keras

    return isinstance(layer, keras.layers.Dense) and getattr(layer.activation, "__name__", "") == "softmax"


def target_layer_index(model) -> int:
    """Index (in :func:`_feature_layers`) of the last convolutional stage.

    Raises:
        ValueError: when the model has no convolution (Grad-CAM needs a spatial feature map).
    """
    layers = _feature_layers(model)
    for index in range(len(layers) - 1, -1, -1):
        if _is_conv_stage(layers[index]):
            return index
    raise ValueError(f"Model {model.name!r} has no Conv2D layer; Grad-CAM needs one.")


def grad_cam(model, inputs: np.ndarray, *, class_index: int = FAKE_INDEX) -> np.ndarray:
    """Grad-CAM maps for a batch of prepared model inputs.

    Args:
        model: a chain-shaped Keras model (the bundle's agents are).
        inputs: float32 (N, H, W, C) already prepared with the agent's preprocessing contract.
        class_index: the class whose score is explained (fake by default).

    Returns:
        float32 (N, h, w) maps in [0, 1] at the feature map's resolution (all zero when the
        gradient is zero everywhere, e.g. a saturated softmax).
    """
    import tensorflow as tf

    if inputs.ndim != 4:
        raise ValueError(f"inputs must be (N, H, W, C), received shape {inputs.shape}.")
    layers = _feature_layers(model)
    target = target_layer_index(model)
    with tf.GradientTape() as tape:
        x = tf.convert_to_tensor(inputs, dtype=tf.float32)
        features = None
        for index, layer in enumerate(layers):
            if index == len(layers) - 1 and _is_softmax_dense(layer):
                # Explain the pre-softmax score, as Grad-CAM does: a saturated softmax has
                # (numerically) zero gradient and would give an empty map.
                x = tf.matmul(x, layer.kernel) + layer.bias
            else:
                x = layer(x, training=False)
            if index == target:
                features = x
                tape.watch(features)
        score = x[:, class_index]
    grads = tape.gradient(score, features)
    weights = tf.reduce_mean(grads, axis=(1, 2), keepdims=True)
    cam = tf.nn.relu(tf.reduce_sum(features * weights, axis=-1)).numpy().astype(np.float32)
    peak = cam.reshape(len(cam), -1).max(axis=1)
    scale = np.where(peak > 0, peak, 1.0)[:, None, None]
    return cam / scale


def overlay(crop: np.ndarray, cam: np.ndarray, *, alpha: float = 0.45) -> np.ndarray:
    """Blends a [0, 1] heatmap (any size) over an RGB uint8 crop; returns RGB uint8."""
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], received {alpha}.")
    h, w = crop.shape[:2]
    heat = cv2.resize(np.clip(cam, 0.0, 1.0), (w, h), interpolation=cv2.INTER_LINEAR)
    colour = cv2.applyColorMap((heat * 255).astype(np.uint8), cv2.COLORMAP_JET)
    colour = cv2.cvtColor(colour, cv2.COLOR_BGR2RGB)
    return cv2.addWeighted(crop.astype(np.uint8), 1.0 - alpha, colour, alpha, 0.0)


class GradCamRenderer:
    """Renders Grad-CAM overlays for every agent of a bundle (models loaded on first use).

    Forensic agents get their feature-group contribution panel instead of a Grad-CAM map.

    Thread-safe: one lock serialises the TensorFlow work so concurrent requests cannot
    multiply the memory of the gradient tapes.

    Args:
        bundle: a bundle directory, a loaded `Bundle`, or None for the shipped default.
        models: agents' models already loaded in this process, by agent name (a Serve replica
            explains with the models it votes with instead of loading them a second time).
    """

    def __init__(self, bundle: str | os.PathLike[str] | Bundle | None, *,
                 models: Mapping[str, object] | None = None) -> None:
        self.bundle = bundle if isinstance(bundle, Bundle) else load_bundle(bundle)
        unknown = sorted(set(models or {}) - set(self.bundle.agent_names))
        if unknown:
            raise ValueError(f"models must be keyed by the bundle's agents {self.bundle.agent_names}, "
                             f"received {unknown}.")
        self._models: dict[str, object] = dict(models or {})
        self._lock = threading.Lock()

    def _model(self, agent: str):
        if agent not in self._models:
            self._models[agent] = self.bundle.load_model(agent)
        return self._models[agent]

    def render(self, crops: Sequence[np.ndarray], *, agents: Sequence[str] | None = None) -> list[dict[str, np.ndarray]]:
        """One dict per crop: agent -> RGB uint8 overlay of the crop with that agent's map."""
        def draw(name: str) -> list[np.ndarray]:
            if self.bundle.agent(name).kind == "forensic":
                return [contribution_panel(np.asarray(c), e) for c, e in zip(crops, self._explain(name, crops))]
            maps = grad_cam(self._model(name), prepare_batch(list(crops), self.bundle.agent(name).preprocessing))
            return [overlay(np.asarray(crop), maps[i]) for i, crop in enumerate(crops)]

        return self._per_crop(crops, list(self.bundle.agent_names if agents is None else agents), draw)

    def _per_crop(self, crops: Sequence[np.ndarray], names: list[str],
                  per_agent: Callable[[str], list[Any]]) -> list[dict[str, Any]]:
        """One dict per crop: agent -> its item of ``per_agent(agent)`` (one item per crop), the
        agents taken one at a time under the lock (their models are shared)."""
        out: list[dict[str, Any]] = [{} for _ in crops]
        if len(crops) == 0:
            return out
        with self._lock:
            for name in names:
                for i, item in enumerate(per_agent(name)):
                    out[i][name] = item
        return out

    def _explain(self, name: str, crops: Sequence[np.ndarray]) -> list[dict[str, float]]:
        info = self.bundle.agent(name)
        x = prepare_batch(list(crops), info.preprocessing)
        return self._model(name).explain(x, temperature=info.temperature)

    def explain(self, crops: Sequence[np.ndarray], *,
                agents: Sequence[str] | None = None) -> list[dict[str, dict[str, float]]]:
        """One dict per crop: forensic agent -> {feature group: contribution to calibrated log-odds of fake}.

        Agents other than forensic ones (no group explanation) are left out.
        """
        names = [n for n in (self.bundle.agent_names if agents is None else agents)
                 if self.bundle.agent(n).kind == "forensic"]
        return self._per_crop(crops, names, lambda name: self._explain(name, crops))

    def render_png(self, crops: Sequence[np.ndarray], *, agents: Sequence[str] | None = None) -> list[dict[str, bytes]]:
        """Like :meth:`render`, PNG-encoded."""
        return [{k: encode_png(v) for k, v in d.items()} for d in self.render(crops, agents=agents)]
