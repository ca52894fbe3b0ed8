"""Bundle model files: weights-only Keras files, optionally stored as float16, loaded in safe mode;
every agent's ONNX export beside its model file."""

from __future__ import annotations

import os
import zipfile
from pathlib import Path
from typing import Any

import numpy as np


_FLOAT_POLICIES = ("float16", "float32", "bfloat16", "mixed_float16", "mixed_bfloat16")


def _replace_dtype_policy(obj: Any, name: str) -> Any:
    """Returns a copy of a model config with every float dtype policy set to ``name``."""
    if isinstance(obj, dict):
        if obj.get("class_name") == "DTypePolicy" and isinstance(obj.get("config"), dict):
            if obj["config"].get("name") in _FLOAT_POLICIES:
                return {**obj, "config": {**obj["config"], "name": name}}
        return {k: _replace_dtype_policy(v, name) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_replace_dtype_policy(v, name) for v in obj]
    return obj


def _recast(model, dtype: str):
    """Rebuilds a functional model with all variables in ``dtype`` and copies the weights."""
    import keras

    config = _replace_dtype_policy(model.get_config(), dtype)
    clone = keras.Model.from_config(config)
    clone.set_weights([np.asarray(w).astype(dtype) for w in model.get_weights()])
    return clone


def save_model_file(model, path: str | os.PathLike[str], *, storage_dtype: str = "float32") -> None:
    """Saves a model for a bundle: weights only (no optimizer), optionally stored as float16.

    float16 storage halves the file (the VGG-16 base is 59 MB in float32); loading converts
    back to float32 so inference precision is unchanged apart from the rounding of weights.
    """
    if storage_dtype not in ("float32", "float16"):
        raise ValueError(f"storage_dtype must be 'float32' or 'float16', received {storage_dtype!r}.")
    # A fresh clone carries no optimizer state, which would otherwise triple the file.
    clone = _recast(model, storage_dtype)
    path = Path(path)
    tmp = path.with_name(f".{path.stem}.tmp-{os.getpid()}.keras")
    clone.save(tmp)
    os.replace(tmp, path)


def load_model_file(path: str | os.PathLike[str]):
    """Loads a bundle model with ``safe_mode=True`` and float32 variables."""
    import keras

    import agents.vgg16  # noqa: F401  registers VGGPreprocess for deserialisation

    try:
        model = keras.saving.load_model(os.fspath(path), compile=False, safe_mode=True)
    except (ValueError, TypeError, KeyError, OSError, zipfile.BadZipFile) as err:
        # Keras says "File not found" of a file that is there but not a model archive; name it.
        raise ValueError(f"{Path(path).name} does not load as a Keras model: {type(err).__name__}: {err}") from err
    if any(np.asarray(w).dtype != np.float32 for w in model.get_weights()):
        model = _recast(model, "float32")
    return model


def export_agent_onnx(folder: Path, name: str, model_file: str, *, kind: str = "keras") -> dict[str, str]:
    """Exports a bundle's model file to ``{name}.onnx`` beside it: a Keras network as loaded
    (float32, `agents.onnx_model`), or the forensic agent's trees (`agents.forensic_onnx`).

    Returns:
        The agent entry's ``onnx`` field: the file, relative to ``folder``, and its sha256.
    """
    from agents.bundle_files import sha256_file

    rel = f"{name}.onnx"
    if kind == "forensic":
        from agents.forensic import load_forensic
        from agents.forensic_onnx import export_forensic_onnx

        export_forensic_onnx(load_forensic(folder / model_file), folder / rel)
    else:
        from agents.onnx_model import export_onnx

        export_onnx(load_model_file(folder / model_file), folder / rel)
    return {"file": rel, "sha256": sha256_file(folder / rel)}

