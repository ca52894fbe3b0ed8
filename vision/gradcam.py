"""Grad-CAM heatmaps: which pixels of a face crop pushed an agent towards "fake".

Grad-CAM (Selvaraju et al., 2017) weights the feature maps of a convolutional stage by the mean
gradient of the class score and keeps the positive part. The stage is chosen per agent
(:func:`target_layer_index`): the registry's declaration, else the last convolution whose map is
still fine enough to place evidence on a face. It runs on the TensorFlow backend with
``tf.GradientTape``, on models loaded from the bundle or handed in by a Serve replica.

A map is shown only when it can say where: an agent whose maps were measured not to follow the
manipulated region (``AgentSpec.heatmap_withheld``, ``benchmarks/bench_heatmaps.py``) and a map
spread evenly over the face (`vision.heatmap_quality`) are withheld with a one-line reason.

The forensic agent has no feature maps: its tile is a chart of its per-feature-group
contributions to the log-odds of fake (``ForensicModel.explain``,
`vision.forensic_chart`); :meth:`GradCamRenderer.explain` gives the numbers.
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
from agents.registry import agent_names, get_agent
from vision.forensic_chart import contribution_chart
from vision.heatmap_quality import AgentMap, withheld_reason
from vision.media import encode_png


# The coarsest Grad-CAM map that still places evidence on a face: 8x8 cells of a face crop are
# about an eye wide. The agents' last stages are coarser (the shipped VGG-16's is 2x2, a colour
# ramp once blown up), so the map is taken from the last convolution at least this fine.
MIN_CAM_SIDE = 8
# Layers that change values cell by cell only: the feature map Grad-CAM reads is a convolution's
# output after its normalisation and activation (what the next stage sees), not before them.
_ELEMENTWISE = ("BatchNormalization", "Activation", "ReLU", "LeakyReLU")


def _feature_layers(model) -> list:
    """The model's layers in call order, without input layers, nested models opened up.

    All agents are chains (each layer feeds the next), and so are nested transfer bases such as
    VGG-16's, so running the layers one by one reproduces the model and exposes any intermediate
    feature map Grad-CAM may read.
    """
    import keras

    out = []
    for layer in model.layers:
        if isinstance(layer, keras.layers.InputLayer):
            continue
        out.extend(_feature_layers(layer) if isinstance(layer, keras.Model) else [layer])
    return out


def _is_softmax_dense(layer) -> bool:
    import keras

    return isinstance(layer, keras.layers.Dense) and getattr(layer.activation, "__name__", "") == "softmax"


def _stage_end(layers: list, index: int) -> int:
    """The last layer of the convolution at ``index`` with its normalisation and activation."""
    while index + 1 < len(layers) and type(layers[index + 1]).__name__ in _ELEMENTWISE:
        index += 1
    return index


def conv_stages(model) -> list[tuple[str, int, int]]:
    """Every convolution of the model as (name, index of its stage's end in the layer chain,
    smaller side of its output in cells), in call order."""
    import keras

    layers = _feature_layers(model)
    return [(layer.name, _stage_end(layers, i), int(min(layer.output.shape[1:3])))
            for i, layer in enumerate(layers) if isinstance(layer, keras.layers.Conv2D)]


def target_layer_index(model, *, layer: str | None = None, min_side: int = MIN_CAM_SIDE) -> int:
    """Index (in :func:`_feature_layers`) of the feature map Grad-CAM reads.

    Args:
        model: a chain-shaped Keras model.
        layer: the name of the convolution to read (declared per agent in ``agents.registry``);
            None picks by rule: the last convolution whose output is at least ``min_side`` cells
            on its smaller side (the first convolution when none is that fine).
        min_side: the rule's coarsest acceptable map side.

    Raises:
        ValueError: the model has no convolution, or none named ``layer``.
    """
    stages = conv_stages(model)
    if not stages:
        raise ValueError(f"Model {model.name!r} has no Conv2D layer; Grad-CAM needs one.")
    if layer is not None:
        for name, end, _ in stages:
            if name == layer:
                return end
        raise ValueError(f"Model {model.name!r} has no convolution named {layer!r}; "
                         f"its convolutions are {[name for name, _, _ in stages]}.")
    fine = [end for _, end, side in stages if side >= int(min_side)]
    return fine[-1] if fine else stages[0][1]


def grad_cam(model, inputs: np.ndarray, *, class_index: int = FAKE_INDEX, layer: str | None = None) -> np.ndarray:
    """Grad-CAM maps for a batch of prepared model inputs.

    Args:
        model: a chain-shaped Keras model (the bundle's agents are).
        inputs: float32 (N, H, W, C) already prepared with the agent's preprocessing contract.
        class_index: the class whose score is explained (fake by default).
        layer: the convolution whose feature map is read (:func:`target_layer_index`; None: by rule).

    Returns:
        float32 (N, h, w) maps in [0, 1] at the feature map's resolution (all zero when the
        gradient is zero everywhere, e.g. a saturated softmax).
    """
    import tensorflow as tf

    if inputs.ndim != 4:
        raise ValueError(f"inputs must be (N, H, W, C), received shape {inputs.shape}.")
    layers = _feature_layers(model)
    target = target_layer_index(model, layer=layer)
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


def declared_withheld(names: Sequence[str]) -> dict[str, str]:
    """The registry's reasons for withholding these agents' maps (registered agents with one)."""
    known = set(agent_names())
    return {name: get_agent(name).heatmap_withheld for name in names
            if name in known and get_agent(name).heatmap_withheld}


class GradCamRenderer:
    """Renders every agent's heat-map tile for a bundle (models loaded on first use).

    CNN agents get a Grad-CAM overlay at their declared (or the rule's) layer, unless their maps
    are withheld; forensic agents get their feature-group contribution chart.

    Thread-safe: one lock serialises the TensorFlow work so concurrent requests cannot
    multiply the memory of the gradient tapes.

    Args:
        bundle: a bundle directory, a loaded `Bundle`, or None for the shipped default.
        models: agents' models already loaded in this process, by agent name (a Serve replica
            explains with the models it votes with instead of loading them a second time).
        withheld: agent -> why its maps are never shown; None takes the registry's
            (``AgentSpec.heatmap_withheld``), {} shows every agent's map that is not uniform.
    """

    def __init__(self, bundle: str | os.PathLike[str] | Bundle | None, *,
                 models: Mapping[str, object] | None = None, withheld: Mapping[str, str] | None = None) -> None:
        self.bundle = bundle if isinstance(bundle, Bundle) else load_bundle(bundle)
        unknown = sorted(set(models or {}) - set(self.bundle.agent_names))
        if unknown:
            raise ValueError(f"models must be keyed by the bundle's agents {self.bundle.agent_names}, "
                             f"received {unknown}.")
        self._models: dict[str, object] = dict(models or {})
        self.withheld = declared_withheld(self.bundle.agent_names) if withheld is None else dict(withheld)
        self._lock = threading.Lock()

    def _model(self, agent: str):
        # Grad-CAM reads a Keras model's layers: a replica's ONNX Runtime model (which has none)
        # gives way to the agent's Keras file, loaded on the first map asked of it. The forensic
        # agent's explanation needs only predictions: its ONNX export does.
        model = self._models.get(agent)
        keras = self.bundle.agent(agent).kind == "keras"
        if model is None or (keras and not hasattr(model, "layers")):
            self._models[agent] = model = self.bundle.load_model(agent, runtime="keras" if keras else "auto")
        return model

    def _layer(self, agent: str) -> str | None:
        return get_agent(agent).heatmap_layer if agent in agent_names() else None

    def render(self, crops: Sequence[np.ndarray], *,
               agents: Sequence[str] | None = None) -> list[dict[str, np.ndarray | str]]:
        """One dict per crop: agent -> its RGB uint8 tile, or a str saying why it is withheld."""
        def draw(name: str) -> list[np.ndarray | str]:
            if self.bundle.agent(name).kind == "forensic":
                return [contribution_chart(e) for e in self._explain(name, crops)]
            if name in self.withheld:  # measured not to localise: no gradient work at all
                return [self.withheld[name]] * len(crops)
            maps = grad_cam(self._model(name), prepare_batch(list(crops), self.bundle.agent(name).preprocessing),
                            layer=self._layer(name))
            return [withheld_reason(name, cam) or overlay(np.asarray(crop), cam) for crop, cam in zip(crops, maps)]

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

    def render_png(self, crops: Sequence[np.ndarray], *,
                   agents: Sequence[str] | None = None) -> list[dict[str, AgentMap]]:
        """Like :meth:`render`, each tile PNG-encoded in an `AgentMap` (or its reason withheld)."""
        return [{k: AgentMap(withheld=v) if isinstance(v, str) else AgentMap(png=encode_png(v))
                 for k, v in d.items()} for d in self.render(crops, agents=agents)]
