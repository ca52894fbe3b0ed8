"""The `forensic` agent: hand-made forensic features into scikit-learn gradient boosting.

Unlike the CNN agents it has no Keras model. :class:`ForensicModel` takes the same prepared
batch as any agent (its contract, ``forensic_features.CONTRACT``: 224x224 RGB at raw scale),
computes the features of :mod:`agents.forensic_features` and returns class probabilities in
``CLASSES`` order from a fitted ``HistGradientBoostingClassifier``. It stands in for a Keras
model where the bundle and the predictor expect one (``predict_on_batch``).

Its explanation, in place of Grad-CAM, is a per-feature-group contribution: for each group,
how much the (calibrated) log-odds of "fake" drop when that group's features are replaced by
their training medians (positive: the group pushed towards fake).

A model trained on an earlier feature version whose features are the first columns of today's
(version 1: the first 144 of version 2's, whose new groups were appended) keeps working: it
reads only its own columns, so a bundle made before version 2 still loads and scores the same.

Storage is **skops.io**, never pickle: the file is loaded with an explicit, fixed list of
trusted types (:data:`TRUSTED_TYPES`), so a crafted file cannot run code; on top of that the
bundle verifies the file's sha256 before it is opened at all.
"""

from __future__ import annotations

import importlib
import json
import os
import sys
import threading
import zipfile
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from agents.forensic_features import FEATURE_NAMES, FEATURE_VERSION, GROUPS, batch_features
from agents.labels import CLASSES, FAKE_INDEX

FILE_FORMAT = "fakeface-forensic"
# Every type a model file may contain beyond builtins, NumPy arrays and skops' own safe internals
# (gradient-boosting losses, links and binning). Fixed here, never taken from the file: the estimator
# and its label encoder by their full names, and the trees it predicts with.
TRUSTED_TYPES = (
    "sklearn.ensemble._hist_gradient_boosting.gradient_boosting.HistGradientBoostingClassifier",
    "sklearn.preprocessing._label.LabelEncoder",
    "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
)
# Gradient-boosting settings chosen on val (see training/train_forensic.py and the report).
# On dfdc-extra val (all features): 31 leaves/lr 0.05 0.845, 63 leaves 0.859, 127 leaves/lr 0.1 0.860.
DEFAULT_PARAMS: dict[str, Any] = {
    "learning_rate": 0.1,
    "max_iter": 1500,
    "max_leaf_nodes": 127,
    "min_samples_leaf": 100,
    "l2_regularization": 1.0,
    "max_features": 0.5,
    "early_stopping": True,
    "n_iter_no_change": 40,
    "random_state": 0,
}


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(np.asarray(p, dtype=np.float64), 1e-7, 1 - 1e-7)
    return np.log(p) - np.log1p(-p)


def fit_threads(*, sample_s: float = 0.2) -> int:
    """OpenMP threads for a gradient-boosting fit: the cores other processes leave idle, at least 1.

    scikit-learn's boosting starts a thread per core, and a thread whose core is taken makes the
    others spin at every barrier: a fit of 1 360 x 278 features took 266 s on two threads beside a
    nice'd two-thread Keras training and 8.5 s on one (5.5 s on two on a quiet box; BENCHMARKS.md,
    "the suite's time"); training beside another process is this project's fast setup on 2 cores.
    So the fit takes the cores that were idle over ``sample_s`` before it, never more than the
    OpenMP limit already in force. Beside plain busy processes that costs up to the threads it
    leaves out (the shipped agent's settings: 2.4 s on one thread against 1.5 s on two).
    """
    import psutil
    from threadpoolctl import threadpool_info

    import sklearn.ensemble  # noqa: F401 - loads scikit-learn's OpenMP runtime, so its limit is listed

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    busy = psutil.cpu_percent(interval=sample_s) / 100.0 * (psutil.cpu_count() or cores)
    idle = max(1, int(round(cores - min(busy, cores))))
    limits = [int(lib["num_threads"]) for lib in threadpool_info() if lib.get("user_api") == "openmp"]
    return min([idle, *limits])


class ForensicModel:
    """A fitted (or to-be-fitted) gradient-boosting classifier on forensic features.

    Args:
        estimator: a scikit-learn ``HistGradientBoostingClassifier`` (fitted for prediction).
        medians: per-feature training medians (``(N_FEATURES,)``), the reference the
            explanation replaces a group with; None until fitted.
        name: the agent name (mirrors a Keras model's ``name``).
    """

    def __init__(self, estimator: Any, medians: np.ndarray | None = None, *, name: str = "forensic",
                 feature_version: int = FEATURE_VERSION, n_features: int | None = None) -> None:
        self.estimator = estimator
        self.medians = None if medians is None else np.asarray(medians, dtype=np.float32)
        self.name = name
        # The features it was fitted on: the first `n_features` columns of today's (all of them
        # for a model of this version).
        self.feature_version = int(feature_version)
        self.n_features = len(FEATURE_NAMES) if n_features is None else int(n_features)

    # ----------------------------------------------------------------- fitting
    def fit(self, features: np.ndarray, labels: np.ndarray, *, sample_weight: np.ndarray | None = None,
            val_features: np.ndarray | None = None, val_labels: np.ndarray | None = None,
            val_weight: np.ndarray | None = None) -> "ForensicModel":
        """Fits on a feature matrix; early stopping uses ``val_*`` when given.

        Args:
            features: (N, N_FEATURES) training features.
            labels: class indices (``CLASSES`` order: 1 = fake).
            sample_weight: optional per-sample weights (e.g. balanced classes).
            val_features: held-out features for early stopping (a part of train, never val).
            val_labels: their labels.
            val_weight: their sample weights.
        """
        features = self._check(features)
        kwargs: dict[str, Any] = {"sample_weight": sample_weight}
        if val_features is not None:
            kwargs.update(X_val=self._check(val_features), y_val=np.asarray(val_labels), sample_weight_val=val_weight)
        from threadpoolctl import threadpool_limits

        with threadpool_limits(limits=fit_threads(), user_api="openmp"):
            self.estimator.fit(features, np.asarray(labels), **kwargs)
        if list(self.estimator.classes_) != list(range(len(CLASSES))):
            raise ValueError(f"Training labels must include every class index of {CLASSES}, "
                             f"received {list(self.estimator.classes_)}.")
        self.medians = np.median(features, axis=0).astype(np.float32)
        return self

    def _check(self, features: np.ndarray) -> np.ndarray:
        """Features as float32 (N, model's columns); today's full feature rows are cut to them."""
        features = np.asarray(features, dtype=np.float32)
        if features.ndim != 2 or features.shape[1] not in (len(FEATURE_NAMES), self.n_features):
            raise ValueError(f"features must be (N, {len(FEATURE_NAMES)}), received {features.shape}.")
        return features[:, :self.n_features]

    # -------------------------------------------------------------- prediction
    def predict_features(self, features: np.ndarray) -> np.ndarray:
        """Uncalibrated class probabilities ``(N, 2)`` float32 of a feature matrix."""
        features = self._check(features)
        if len(features) == 0:
            return np.zeros((0, len(CLASSES)), dtype=np.float32)
        return self.estimator.predict_proba(features).astype(np.float32)

    def predict_on_batch(self, x: np.ndarray) -> np.ndarray:
        """Uncalibrated class probabilities of a prepared batch (the Keras model's interface)."""
        return self.predict_features(batch_features(x))

    # ------------------------------------------------------------- explanation
    def explain_features(self, features: np.ndarray, *, temperature: float = 1.0) -> list[dict[str, float]]:
        """Per-group contributions to the calibrated log-odds of fake, one dict per row.

        Contribution of group g = logit(p(x)) - logit(p(x with g's features set to the
        training medians)), divided by ``temperature`` like the calibrated output. Positive
        values pushed the verdict towards fake. Groups interact in the trees, so the
        contributions need not add up to the distance from the all-median prediction.
        """
        if self.medians is None:
            raise ValueError("The forensic model is not fitted: it has no training medians to explain against.")
        features = self._check(features)
        # The groups this model reads (an older version's model lacks the groups added since).
        groups = {g: [i for i in cols if i < self.n_features] for g, cols in GROUPS.items()}
        groups = {g: cols for g, cols in groups.items() if cols}
        n, names = len(features), list(groups)
        if n == 0:
            return []
        variants = np.repeat(features[None], len(names) + 1, axis=0)  # (G + 1, N, F); [0] = as is
        for g, group in enumerate(names, start=1):
            variants[g][:, groups[group]] = self.medians[groups[group]]
        p = self.predict_features(variants.reshape(-1, features.shape[1]))[:, FAKE_INDEX]
        z = _logit(p).reshape(len(names) + 1, n) / float(temperature)
        return [{group: float(z[0, i] - z[g, i]) for g, group in enumerate(names, start=1)} for i in range(n)]

    def explain(self, x: np.ndarray, *, temperature: float = 1.0) -> list[dict[str, float]]:
        """:meth:`explain_features` of a prepared batch."""
        return self.explain_features(batch_features(x), temperature=temperature)


def build_forensic(*, input_shape: Sequence[int] = (224, 224, 3), name: str = "forensic",
                   **params: Any) -> ForensicModel:
    """An unfitted forensic model (the registry's builder).

    Args:
        input_shape: the contract's (height, width, channels); features need RGB, >= 32 px.
        name: model name.
        **params: ``HistGradientBoostingClassifier`` parameters overriding :data:`DEFAULT_PARAMS`.
    """
    from sklearn.ensemble import HistGradientBoostingClassifier

    shape = tuple(int(v) for v in input_shape)
    if len(shape) != 3 or shape[2] != 3 or min(shape[:2]) < 32:
        raise ValueError(f"The forensic agent needs an RGB input of at least 32x32, received {shape}.")
    return ForensicModel(HistGradientBoostingClassifier(**{**DEFAULT_PARAMS, **params}), name=name)


_SKOPS_IMPORT = threading.Lock()


def _trusted_estimators(*_args: Any, **_kwargs: Any) -> list[tuple[str, type]]:
    """What skops' estimator walk is shown while it is imported: the estimators among
    :data:`TRUSTED_TYPES` (the types a forensic file holds)."""
    from sklearn.base import BaseEstimator

    classes = [getattr(importlib.import_module(module), name)
               for module, _, name in (path.rpartition(".") for path in TRUSTED_TYPES)]
    return [(cls.__name__, cls) for cls in classes if issubclass(cls, BaseEstimator)]


def skops_io() -> Any:
    """Returns ``skops.io``, imported without walking all of scikit-learn.

    On import, skops lists every scikit-learn estimator (``sklearn.utils.all_estimators``) as its
    default trusted types. The walk imports every scikit-learn package: ``sklearn.utils._testing``
    and with it pytest, and ``sklearn.externals.array_api_compat.torch``, i.e. PyTorch where it is
    installed. Measured 2026-12-03: ``import skops.io`` 4.2 s of a cold ``fakeface classify``'s
    10.4 s, paid again by every process that loads this agent. fakeface never relies on those
    defaults: every load names its types (:data:`TRUSTED_TYPES`). So while skops is imported the walk
    is shown only the estimators a forensic file holds, and then put back; a file holding any other
    estimator is refused (it was trusted by skops' defaults before). Where skops.io is already
    imported (by anything else), it is returned as it is.
    """
    with _SKOPS_IMPORT:
        if "skops.io" not in sys.modules:
            import sklearn.utils as sk_utils

            walk = sk_utils.all_estimators
            sk_utils.all_estimators = _trusted_estimators
            try:
                import skops.io  # noqa: F401  (imported with the short walk, used below)
            finally:
                sk_utils.all_estimators = walk
    import skops.io as sio

    return sio


def save_forensic(model: ForensicModel, path: str | os.PathLike[str]) -> None:
    """Writes a fitted model with skops.io (temporary file, then rename)."""
    sio = skops_io()

    if model.medians is None:
        raise ValueError("Only a fitted forensic model can be saved.")
    payload = {
        "format": FILE_FORMAT,
        "feature_version": model.feature_version,
        "feature_names": list(FEATURE_NAMES[:model.n_features]),
        "name": model.name,
        "medians": np.asarray(model.medians, dtype=np.float32),
        "estimator": model.estimator,
    }
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_bytes(sio.dumps(payload))
    os.replace(tmp, path)


def check_feature_version(path: str | os.PathLike[str], version: Any, n_features: int,
                          names: Sequence[str] | None = None) -> None:
    """Refuses a model made for other features than this fakeface computes: it must be of today's
    feature version, or of an older one whose features are a prefix of today's (``names``,
    where the file keeps them, must be that prefix).

    Raises:
        ValueError: naming the file and the fix.
    """
    prefix = names is None or (len(names) == n_features and list(names) == list(FEATURE_NAMES[:n_features]))
    readable = prefix and 0 < n_features <= len(FEATURE_NAMES) and (
        version == FEATURE_VERSION if n_features == len(FEATURE_NAMES)
        else isinstance(version, int) and version < FEATURE_VERSION)
    if not readable:
        raise ValueError(f"{path} was trained on forensic features version {version!r}; this fakeface computes "
                         f"version {FEATURE_VERSION}. Retrain the agent with `fakeface train --agents forensic`.")


def load_forensic(path: str | os.PathLike[str]) -> ForensicModel:
    """Loads a model file written by :func:`save_forensic`, trusting only :data:`TRUSTED_TYPES`.

    Raises:
        ValueError: naming the file, when it is not a forensic model file, holds types outside
            the trusted list, or was made for other features (retrain it).
    """
    sio = skops_io()
    path = Path(path)
    data = path.read_bytes()
    try:
        untrusted = sorted(set(sio.get_untrusted_types(data=data)) - set(TRUSTED_TYPES))
        if untrusted:
            raise ValueError(f"{path} holds types that are not trusted: {untrusted}.")
        payload = sio.loads(data, trusted=list(TRUSTED_TYPES))
    except (zipfile.BadZipFile, KeyError, TypeError, json.JSONDecodeError) as err:
        # A damaged archive, or types outside the list (skops' UntrustedTypesFoundException).
        raise ValueError(f"{path} is not a readable skops forensic model file: {err}") from err
    if not isinstance(payload, dict) or payload.get("format") != FILE_FORMAT:
        raise ValueError(f"{path} is not a fakeface forensic model file.")
    names = list(payload.get("feature_names", []))
    version = payload.get("feature_version")
    check_feature_version(path, version, len(names), names)
    return ForensicModel(payload["estimator"], payload["medians"], name=str(payload.get("name", "forensic")),
                         feature_version=int(version), n_features=len(names))
