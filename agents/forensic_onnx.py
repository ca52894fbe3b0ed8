"""The forensic agent's gradient boosting exported to ONNX: scoring without scikit-learn.

A fitted forensic model is a scikit-learn ``HistGradientBoostingClassifier`` stored with skops
(`agents.forensic`). Loading it imports scikit-learn, SciPy and skops: 1.9 s of one core in a
fresh process (2026-12-04), on the path of every `serve` replica's start and every cold
`classify`. skl2onnx writes the same trees as an ONNX ``TreeEnsembleClassifier``, which ONNX
Runtime (already loaded for the CNN agents and MTCNN) runs; the explanation's training medians
and the feature columns travel in the file's metadata. The trees compare float32 features with
float32 thresholds where scikit-learn keeps float64 thresholds, so a feature equal to the float32
just above a threshold may take the other branch; measured on the shipped model over 2 000
dfdc-test crops, |Δp| at most 2.0e-7 (mean 4e-8).

`load_forensic_onnx` returns an `agents.forensic.ForensicModel` whose estimator is the ONNX
session, so prediction and the per-group explanation are the same code as with scikit-learn.
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from agents.atomic import atomic_write_bytes
from agents.forensic import ForensicModel, check_feature_version
from agents.forensic_features import FEATURE_NAMES
from agents.onnx_model import OPSET, OnnxModel

# Metadata key of the file's own description (format, feature version, columns, medians).
METADATA_KEY = "fakeface_forensic"
FILE_FORMAT = "fakeface-forensic-onnx/1"
ML_OPSET = 3  # ai.onnx.ml: TreeEnsembleClassifier as ONNX Runtime 1.32 runs it


@contextlib.contextmanager
def _whole_number_missing_flags() -> Iterator[None]:
    """skl2onnx 1.20 gives a leaf's ``nodes_missing_value_tracks_true`` as Python ``False`` beside
    numpy integers for splits, and onnx 1.23 refuses a bool in an integer list; the flag is made
    an int while the converter runs (the value is the same)."""
    from skl2onnx.common import tree_ensemble

    original = tree_ensemble.add_node

    def add_node(*args: Any, nodes_missing_value_tracks_true: Any = 0, **kwargs: Any) -> Any:
        return original(*args, nodes_missing_value_tracks_true=int(nodes_missing_value_tracks_true), **kwargs)

    tree_ensemble.add_node = add_node
    try:
        yield
    finally:
        tree_ensemble.add_node = original


def export_forensic_onnx(model: ForensicModel, path: str | os.PathLike[str]) -> Path:
    """Writes a fitted forensic model as ONNX (whole, then renamed) and returns the path."""
    from skl2onnx import to_onnx
    from skl2onnx.common.data_types import FloatTensorType

    if model.medians is None:
        raise ValueError("Only a fitted forensic model can be exported.")
    with _whole_number_missing_flags():
        proto = to_onnx(model.estimator, initial_types=[("features", FloatTensorType([None, model.n_features]))],
                        target_opset={"": OPSET, "ai.onnx.ml": ML_OPSET},
                        options={id(model.estimator): {"zipmap": False}})
    about = {"format": FILE_FORMAT, "name": model.name, "feature_version": model.feature_version,
             "n_features": model.n_features, "feature_names": list(FEATURE_NAMES[:model.n_features]),
             "medians": [float(v) for v in model.medians]}
    entry = proto.metadata_props.add()
    entry.key, entry.value = METADATA_KEY, json.dumps(about)
    return atomic_write_bytes(Path(path), proto.SerializeToString())


class OnnxTrees:
    """The exported trees, answering ``predict_proba`` as the scikit-learn estimator does.

    Args:
        path: the ``.onnx`` file.
        threads: intra-op threads (`agents.onnx_model.session_options`).
    """

    def __init__(self, path: str | os.PathLike[str], *, threads: int | None = None) -> None:
        self._model = OnnxModel(path, threads=threads)
        self.path, self.metadata = self._model.path, self._model.metadata

    def predict_proba(self, features: np.ndarray) -> np.ndarray:
        """Class probabilities (N, 2), ``CLASSES`` order, of float32 features (outputs: label, probabilities)."""
        return self._model.run(features)[1]


def load_forensic_onnx(path: str | os.PathLike[str], *, threads: int | None = None) -> ForensicModel:
    """A forensic model scored by ONNX Runtime from a file of :func:`export_forensic_onnx`.

    Raises:
        ValueError: naming the file, when it is not an ONNX model or not a forensic export.
    """
    trees = OnnxTrees(path, threads=threads)
    try:
        about = json.loads(trees.metadata[METADATA_KEY])
        if about.get("format") != FILE_FORMAT:
            raise ValueError(f"format {about.get('format')!r}")
        medians = np.asarray(about["medians"], dtype=np.float32)
        model = ForensicModel(trees, medians, name=str(about["name"]), feature_version=int(about["feature_version"]),
                              n_features=int(about["n_features"]))
    except (KeyError, TypeError, ValueError) as err:
        raise ValueError(f"{Path(path).name} is not a fakeface forensic ONNX export: {err}") from err
    if medians.shape != (model.n_features,):
        raise ValueError(f"{Path(path).name} holds {medians.size} medians for {model.n_features} features.")
    # The same rule as the skops file's (exports before 2026-12-05 keep no names: version and width decide).
    check_feature_version(path, about.get("feature_version"), model.n_features, about.get("feature_names"))
    return model
