"""Training agents from a manifest into a model bundle.

Each agent trains on the manifest's train split and early-stops on val; then its temperature
and decision threshold are fitted on val and everything goes into the bundle. Finished agents
are kept in a work directory beside the bundle, so an interrupted run resumes where it stopped.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Sequence

import keras
import numpy as np
import pandas as pd
from sklearn.utils.class_weight import compute_class_weight

from agents.bundle import Bundle, load_model_file, save_model_file, write_bundle
from agents.labels import CLASSES, label_to_index
from agents.predictor import apply_temperature
from agents.registry import get_agent
from training.augment import AugmentConfig
from training.calibrate import binary_metrics, choose_threshold, fit_temperature, p_fake_of
from training.curves import plot_curves
from training.data import FaceSequence


@dataclass(frozen=True)
class TrainConfig:
    """Hyper-parameters of one training run (shared by all agents unless overridden)."""

    epochs: int = 30  # upper bound; early stopping usually ends sooner
    batch_size: int = 64  # images per step
    optimizer: str = "rmsprop"  # "rmsprop" or "adam"
    learning_rate: float = 1e-4  # the report's RMSprop(1e-4)
    patience: int = 4  # early-stopping patience on val loss (best weights restored)
    threshold_rule: str = "f0.5"  # how the decision threshold is chosen on val
    synth_fakes: float = 0.0  # extra self-blended fakes per real training image
    augment: bool = True  # train-time augmentation
    class_weights: bool = True  # re-weight classes by inverse frequency
    precision: str = "float32"  # "float32" or "mixed_bfloat16" (fast on CPUs with AMX)
    max_train_images: int | None = None  # cap on train images (group-preserving sample) for CPU budgets
    max_val_images: int | None = None  # cap on val images
    workers: int = 2  # PyDataset reader threads
    seed: int = 0  # seeds Keras, NumPy and the data order
    input_sizes: dict[str, int] = field(default_factory=dict)  # agent -> square input size override
    agent_kwargs: dict[str, dict[str, Any]] = field(default_factory=dict)  # agent -> builder kwargs
    overrides: dict[str, dict[str, Any]] = field(default_factory=dict)  # agent -> fields of this config

    def for_agent(self, name: str) -> "TrainConfig":
        """This config with the agent's overrides applied (e.g. a lower learning rate for vgg16)."""
        fields = dict(self.overrides.get(name, {}))
        unknown = set(fields) - set(self.__dataclass_fields__) - {"overrides"}
        if unknown or "overrides" in fields:
            raise ValueError(f"Unknown training option(s) {sorted(unknown)} for agent {name!r}.")
        return replace(self, **fields) if fields else self

    def __post_init__(self) -> None:
        if self.epochs < 1:
            raise ValueError(f"epochs must be >= 1, received {self.epochs}.")
        if self.optimizer not in ("rmsprop", "adam"):
            raise ValueError(f"optimizer must be 'rmsprop' or 'adam', received {self.optimizer!r}.")
        if self.precision not in ("float32", "mixed_bfloat16"):
            raise ValueError(f"precision must be 'float32' or 'mixed_bfloat16', received {self.precision!r}.")
        if self.learning_rate <= 0:
            raise ValueError(f"learning_rate must be positive, received {self.learning_rate}.")


def load_split(manifest: pd.DataFrame, split: str, *, limit: int | None, seed: int) -> pd.DataFrame:
    """Rows of one split; `limit` keeps whole groups (never part of a group) up to about that many."""
    rows = manifest[manifest["split"] == split]
    if rows.empty:
        raise ValueError(f"The manifest has no {split!r} rows; build it with `fakeface dataset build`.")
    if limit is not None and len(rows) > limit:
        groups = rows["group"].drop_duplicates().sample(frac=1.0, random_state=seed)
        sizes = rows.groupby("group").size()
        keep = groups[sizes.loc[groups].cumsum().to_numpy() <= limit]
        rows = rows[rows["group"].isin(set(keep))]
    return rows.reset_index(drop=True)


def _optimizer(config: TrainConfig):
    if config.optimizer == "adam":
        return keras.optimizers.Adam(config.learning_rate)
    return keras.optimizers.RMSprop(config.learning_rate)


def _labels(rows: pd.DataFrame) -> np.ndarray:
    return np.array([label_to_index(v) for v in rows["label"]], dtype=np.int64)


def train_agent(
    name: str,
    manifest: pd.DataFrame,
    config: TrainConfig,
    work_dir: Path,
    *,
    verbose: int = 1,
) -> dict[str, Any]:
    """Trains one agent and calibrates it; returns its bundle artefact description.

    The trained model and a `meta.json` are written to `work_dir/<name>/` (atomically) so a
    re-run reuses them.
    """
    spec = get_agent(name)
    config = config.for_agent(name)
    size = config.input_sizes.get(name)
    contract = spec.contract(size)
    agent_dir = work_dir / name
    meta_path = agent_dir / "meta.json"
    model_path = agent_dir / f"{name}.keras"
    if meta_path.is_file() and model_path.is_file():
        meta = json.loads(meta_path.read_text())
        if verbose:
            print(f"[{name}] reusing finished training in {agent_dir}")
        return {**meta, "model": load_model_file(model_path), "preprocessing": contract,
                "files": {f"logs/{name}.csv": str(agent_dir / "log.csv"), f"logs/{name}.png": str(agent_dir / "curves.png")}}

    keras.utils.set_random_seed(config.seed)
    keras.mixed_precision.set_global_policy(config.precision)
    train = load_split(manifest, "train", limit=config.max_train_images, seed=config.seed)
    val = load_split(manifest, "val", limit=config.max_val_images, seed=config.seed)
    y_train, y_val = _labels(train), _labels(val)
    reader = {"workers": config.workers, "use_multiprocessing": False}
    train_seq = FaceSequence(
        train["path"].tolist(), y_train, contract, batch_size=config.batch_size,
        augment_config=AugmentConfig() if config.augment else None, synth_ratio=config.synth_fakes,
        shuffle=True, seed=config.seed, **reader,
    )
    val_seq = FaceSequence(val["path"].tolist(), y_val, contract, batch_size=config.batch_size, **reader)
    class_weight = None
    if config.class_weights:
        all_y = train_seq.labels
        w = compute_class_weight("balanced", classes=np.arange(len(CLASSES)), y=all_y)
        class_weight = {i: float(v) for i, v in enumerate(w)}

    model = spec.build(input_size=size, **config.agent_kwargs.get(name, {}))
    model.compile(optimizer=_optimizer(config), loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    agent_dir.mkdir(parents=True, exist_ok=True)
    log_path = agent_dir / "log.csv"
    callbacks = [
        keras.callbacks.EarlyStopping(monitor="val_loss", patience=config.patience, restore_best_weights=True),
        keras.callbacks.CSVLogger(str(log_path)),
    ]
    if verbose:
        print(f"[{name}] {len(train_seq.items)} train ({len(train)} files, synth {config.synth_fakes}), "
              f"{len(val)} val, input {contract.input_shape}, {model.count_params():,} params, {config.precision}")
    start = time.perf_counter()
    history = model.fit(train_seq, validation_data=val_seq, epochs=config.epochs, class_weight=class_weight,
                        callbacks=callbacks, verbose=verbose)
    train_s = time.perf_counter() - start
    epochs_run = len(history.history.get("loss", []))
    images_per_s = len(train_seq.items) * epochs_run / max(train_s, 1e-9)
    keras.mixed_precision.set_global_policy("float32")

    # Calibrate on val with the float32 copy that the bundle will hold.
    save_model_file(model, model_path)
    model = load_model_file(model_path)
    raw = np.concatenate([np.asarray(model.predict_on_batch(val_seq[i][0])) for i in range(len(val_seq))])
    temperature = fit_temperature(raw, y_val)
    p_val = p_fake_of(apply_temperature(raw, temperature))
    threshold = choose_threshold(p_val, y_val, config.threshold_rule)
    metrics = binary_metrics(p_val, y_val, threshold)
    plot_curves(log_path, agent_dir / "curves.png", title=f"{name} training")

    meta = {
        "temperature": temperature,
        "threshold": threshold,
        "threshold_rule": config.threshold_rule,
        "val_metrics": metrics,
        "training": {
            "train_files": int(len(train)),
            "train_samples": int(len(train_seq.items)),
            "synthetic_fakes": int(sum(1 for it in train_seq.items if it[2])),
            "val_files": int(len(val)),
            "epochs_run": epochs_run,
            "best_epoch": int(np.argmin(history.history["val_loss"])) + 1,
            "train_seconds": round(train_s, 1),
            "train_images_per_second": round(images_per_s, 1),
            "builder_kwargs": config.agent_kwargs.get(name, {}),
            "config": {k: v for k, v in asdict(config).items()
                       if k not in ("agent_kwargs", "input_sizes", "overrides")},
            "backend": keras.backend.backend(),
        },
    }
    tmp = meta_path.with_suffix(".tmp")
    tmp.write_text(json.dumps(meta, indent=2))
    os.replace(tmp, meta_path)
    if verbose:
        print(f"[{name}] done in {train_s:.0f}s ({images_per_s:.1f} img/s): T={temperature:.3f} "
              f"threshold={threshold:.3f} val AUC={metrics['auc']:.4f} acc={metrics['accuracy']:.4f}")
    return {**meta, "model": model, "preprocessing": contract,
            "files": {f"logs/{name}.csv": str(log_path), f"logs/{name}.png": str(agent_dir / "curves.png")}}


def train_bundle(
    manifest: pd.DataFrame,
    agents: Sequence[str],
    out_dir: str | os.PathLike[str],
    config: TrainConfig,
    *,
    description: dict[str, Any] | None = None,
    storage_dtype: str = "float32",
    keep_work: bool = False,
    verbose: int = 1,
) -> Bundle:
    """Trains the named agents and writes the bundle atomically to `out_dir`."""
    for name in agents:
        get_agent(name)  # validate every name before hours of training
    out_dir = Path(out_dir)
    work_dir = out_dir.with_name(out_dir.name + ".work")
    work_dir.mkdir(parents=True, exist_ok=True)
    artefacts = {name: train_agent(name, manifest, config, work_dir, verbose=verbose) for name in agents}
    bundle = write_bundle(out_dir, artefacts, description=description, storage_dtype=storage_dtype)
    if not keep_work:
        shutil.rmtree(work_dir, ignore_errors=True)
    return bundle
