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
from dataclasses import asdict, field, replace
from pathlib import Path
from typing import Any, Literal, Sequence

import keras
import numpy as np
import pandas as pd
import pydantic
from pydantic import ConfigDict, Field, model_validator
from sklearn.utils.class_weight import compute_class_weight

from agents.bundle import Bundle, write_bundle
from agents.model_files import load_model_file, save_model_file
from agents.labels import CLASSES
from agents.registry import get_agent
from training.augment import AugmentConfig
from training.calibrate import calibrate, calibration_summary
from training.callbacks import ResumableEarlyStopping, ValMetrics
from training.curves import plot_curves
from training.precision import Precision, resolve_precision
from training.splits import AgentRun, split_labels, train_val
from training.data import FaceSequence, resized_cache


@pydantic.dataclasses.dataclass(frozen=True, config=ConfigDict(extra="forbid"))
class TrainConfig:
    """Hyper-parameters of one training run (shared by all agents unless overridden)."""

    epochs: int = Field(30, ge=1)  # upper bound; early stopping usually ends sooner
    batch_size: int = 64  # images per step
    optimizer: Literal["rmsprop", "adam"] = "rmsprop"
    learning_rate: float = Field(1e-4, gt=0)  # the report's RMSprop(1e-4)
    patience: int = 4  # early-stopping patience on val ROC AUC (best epoch's weights kept)
    lr_schedule: Literal["constant", "cosine"] = "constant"  # "cosine" decays to 0 over `epochs`
    cache: bool = True  # decode and resize every image once into OUT.work/cache (RAM/disk for speed)
    threshold_rule: str = "f0.5"  # how the decision threshold is chosen on val
    synth_fakes: float = 0.0  # extra self-blended fakes per real training image
    # Forensic agent: screenshot-like degraded copies (vision.degrade.random_chain) per train and val
    # image, besides the clean one; 0 trains on clean crops only. Needs `augment`.
    degraded_copies: int = Field(1, ge=0)
    # Forensic agent: how many of those copies (the first ones) are cut as serving cuts a detected
    # face (MTCNN landmarks + alignment, `training.pipeline_crops`); the others stay whole crops
    aligned_copies: int = Field(0, ge=0)
    # Forensic agent: share of train and val images that also enter once composed into a whole
    # player or phone screenshot (vision.degrade's compositions), the face then found by serving's
    # detector and cut as serving cuts it (`training.train_forensic`); costs a detection per copy.
    detected_share: float = Field(0.0, ge=0, le=1)
    # Keras agents: probability that a training sample is its image cut as serving cuts a detected
    # face (`training.pipeline_crops.cut_cache`) instead of the data set's crop; needs `cache`.
    cut_share: float = Field(0.0, ge=0, le=1)
    augment: bool = True  # train-time augmentation
    geometric_augment: bool = True  # random rotation/zoom/shift (resampling: off for NPR inputs)
    # Probability of a screenshot-like degradation chain (vision.degrade).
    screenshot_augment: float = Field(0.0, ge=0, le=1)
    class_weights: bool = True  # re-weight classes by inverse frequency
    # Keras policy; `auto` takes bfloat16 only where the hardware computes it (training.precision).
    precision: Precision = "float32"
    max_train_images: int | None = None  # cap on train images (group-preserving sample) for CPU budgets
    max_val_images: int | None = None  # cap on val images
    workers: int = 2  # PyDataset reader threads
    seed: int = 0  # seeds Keras, NumPy and the data order
    input_sizes: dict[str, int] = field(default_factory=dict)  # agent -> square input size override
    agent_kwargs: dict[str, dict[str, Any]] = field(default_factory=dict)  # agent -> builder kwargs
    overrides: dict[str, dict[str, Any]] = field(default_factory=dict)  # agent -> fields of this config

    @model_validator(mode="after")
    def _options_agree(self) -> "TrainConfig":
        if self.aligned_copies > self.degraded_copies:
            raise ValueError(f"aligned_copies must be at most degraded_copies ({self.degraded_copies}), "
                             f"received {self.aligned_copies}.")
        if self.cut_share and not self.cache:
            raise ValueError(f"cut_share {self.cut_share} needs cache=True (the serving cuts are cached).")
        return self

    def for_agent(self, name: str) -> "TrainConfig":
        """This config with the agent's registry defaults, then its overrides applied.

        The registry's `train_defaults` (e.g. no geometric augmentation for an NPR input) come
        first, so a command-line ``--agent-option`` still wins.
        """
        fields = {**get_agent(name).train_defaults, **self.overrides.get(name, {})}
        unknown = set(fields) - set(self.__dataclass_fields__) - {"overrides"}
        if unknown or "overrides" in fields:
            raise ValueError(f"Unknown training option(s) {sorted(unknown)} for agent {name!r}.")
        return replace(self, **fields) if fields else self


def augment_config(config: TrainConfig) -> AugmentConfig | None:
    """The train-time augmentation that `config` asks for (None: none)."""
    if not config.augment:
        return None
    geometry = {} if config.geometric_augment else {"max_shift": 0.0, "max_rotate": 0.0, "max_scale": 0.0}
    return AugmentConfig(screenshot=config.screenshot_augment, **geometry)


def _optimizer(config: TrainConfig, steps_per_epoch: int):
    lr = config.learning_rate
    if config.lr_schedule == "cosine":
        # A function of the optimizer's step counter, which BackupAndRestore restores with it.
        lr = keras.optimizers.schedules.CosineDecay(lr, decay_steps=max(1, config.epochs * steps_per_epoch))
    if config.optimizer == "adam":
        return keras.optimizers.Adam(lr)
    return keras.optimizers.RMSprop(lr)


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
    run = AgentRun.of(name, config, work_dir)
    if run.kind == "forensic":  # features + gradient boosting: its own module, same artefact
        from training.train_forensic import train_forensic

        return train_forensic(run, manifest, verbose=verbose)
    config, contract, agent_dir = run.config, run.contract, run.agent_dir
    model_path = agent_dir / f"{name}.keras"
    meta = run.finished_meta(model_path, verbose=verbose)
    if meta is not None:
        return run.artefact(meta, load_model_file(model_path))

    keras.utils.set_random_seed(config.seed)
    policy, why = resolve_precision(config.precision)
    keras.mixed_precision.set_global_policy(policy)
    train, val = train_val(manifest, config)
    y_train, y_val = split_labels(train), split_labels(val)
    reader = {"workers": config.workers, "use_multiprocessing": False}
    caches = {"train": None, "val": None}
    if config.cache:
        for split, rows in (("train", train), ("val", val)):
            cache_file = work_dir / "cache" / f"{split}-{contract.height}x{contract.width}-{len(rows)}.npy"
            caches[split] = resized_cache(rows["path"].tolist(), contract, cache_file,
                                          workers=config.workers, verbose=bool(verbose))
    cuts = None
    if config.cut_share:
        from training.pipeline_crops import LandmarkCache, cut_cache, detector_settings_tag

        # Named for the detector's settings too: the cut follows the landmarks it found.
        cut_file = f"train-cut-{contract.height}x{contract.width}-{len(train)}-{detector_settings_tag()}.npy"
        cuts = cut_cache(train["path"].tolist(), contract, work_dir / "cache" / cut_file,
                         LandmarkCache.for_work_dir(work_dir), verbose=bool(verbose))
    train_seq = FaceSequence(
        train["path"].tolist(), y_train, contract, batch_size=config.batch_size,
        augment_config=augment_config(config), synth_ratio=config.synth_fakes,
        shuffle=True, seed=config.seed, cache=caches["train"], cut_cache=cuts, cut_share=config.cut_share,
        **reader,
    )
    val_seq = FaceSequence(val["path"].tolist(), y_val, contract, batch_size=config.batch_size,
                           cache=caches["val"], **reader)
    class_weight = None
    if config.class_weights:
        all_y = train_seq.labels
        w = compute_class_weight("balanced", classes=np.arange(len(CLASSES)), y=all_y)
        class_weight = {i: float(v) for i, v in enumerate(w)}

    model = get_agent(name).build(input_size=run.size, **config.agent_kwargs.get(name, {}))
    model.compile(optimizer=_optimizer(config, len(train_seq)), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    agent_dir.mkdir(parents=True, exist_ok=True)
    log_path = run.log_path
    stopper = ResumableEarlyStopping(agent_dir, monitor="val_auc", patience=config.patience)
    backup = keras.callbacks.BackupAndRestore(str(agent_dir / "backup"))
    callbacks = [
        ValMetrics(val_seq, y_val),  # first: the callbacks after it read val_auc from the logs
        stopper,
        keras.callbacks.CSVLogger(str(log_path), append=True),
        # Epoch, weights and optimizer state after every epoch (after its log row): a rerun
        # of the same command continues from there.
        backup,
    ]
    if verbose:
        print(f"[{name}] {len(train_seq.items)} train ({len(train)} files, synth {config.synth_fakes}), "
              f"{len(val)} val, input {contract.input_shape}, {model.count_params():,} params, {policy} ({why})")
    resumed_from = _backup_epoch(agent_dir / "backup")
    if resumed_from:
        train_seq.set_epoch(resumed_from)
        if verbose:
            print(f"[{name}] resuming after epoch {resumed_from} (best val AUC so far {stopper.state['best']})")
    start = time.perf_counter()
    model.fit(train_seq, epochs=config.epochs, class_weight=class_weight, callbacks=callbacks, verbose=verbose)
    train_s = time.perf_counter() - start
    stopper.restore_best()
    history = pd.read_csv(log_path)
    epochs_run = int(history["epoch"].max()) + 1 if len(history) else 0
    images_per_s = len(train_seq.items) * max(1, epochs_run - resumed_from) / max(train_s, 1e-9)
    keras.mixed_precision.set_global_policy("float32")

    # Calibrate on val with the float32 copy that the bundle will hold.
    save_model_file(model, model_path)
    model = load_model_file(model_path)
    raw = np.concatenate([np.asarray(model.predict_on_batch(val_seq[i][0])) for i in range(len(val_seq))])
    _, calibration = calibrate(raw, y_val, config.threshold_rule)
    plot_curves(log_path, run.curves_path, title=f"{name} training")

    meta = {
        **calibration,
        "training": {
            "train_files": int(len(train)),
            "train_samples": int(len(train_seq.items)),
            "synthetic_fakes": int(sum(1 for it in train_seq.items if it[2])),
            "val_files": int(len(val)),
            "epochs_run": epochs_run,
            "best_epoch": stopper.state["best_epoch"],
            "best_val_auc": stopper.state["best"],
            "resumed_from_epoch": resumed_from,
            "train_seconds": round(train_s, 1),
            "train_images_per_second": round(images_per_s, 1),
            "builder_kwargs": config.agent_kwargs.get(name, {}),
            "config": {k: v for k, v in asdict(config).items()
                       if k not in ("agent_kwargs", "input_sizes", "overrides")},
            "backend": keras.backend.backend(),
            "precision_policy": policy,  # what `auto` resolved to on this machine
        },
    }
    run.write_meta(meta)
    if verbose:
        print(f"[{name}] done in {train_s:.0f}s ({images_per_s:.1f} img/s): {calibration_summary(meta)}")
    return run.artefact(meta, model)


def _backup_epoch(backup_dir: Path) -> int:
    """The epoch a `BackupAndRestore` directory will resume from (0 when there is none)."""
    meta = backup_dir / "training_metadata.json"
    if not meta.is_file():
        return 0
    return int(json.loads(meta.read_text()).get("epoch", 0))


def train_bundle(
    manifest: pd.DataFrame,
    agents: Sequence[str],
    out_dir: str | os.PathLike[str],
    config: TrainConfig,
    *,
    description: dict[str, Any] | None = None,
    storage_dtype: str = "float32",
    keep_work: bool = False,
    work_dir: str | os.PathLike[str] | None = None,
    verbose: int = 1,
) -> Bundle:
    """Trains the named agents and writes the bundle atomically to `out_dir`.

    Finished agents and per-epoch checkpoints live in `work_dir` (default `OUT.work`), so a
    rerun of the same command resumes, and separate runs sharing it reuse finished agents.
    """
    for name in agents:
        get_agent(name)  # validate every name before hours of training
    out_dir = Path(out_dir)
    work_dir = Path(work_dir) if work_dir is not None else out_dir.with_name(out_dir.name + ".work")
    work_dir.mkdir(parents=True, exist_ok=True)
    artefacts = {name: train_agent(name, manifest, config, work_dir, verbose=verbose) for name in agents}
    bundle = write_bundle(out_dir, artefacts, description=description, storage_dtype=storage_dtype)
    if not keep_work:
        shutil.rmtree(work_dir, ignore_errors=True)
    return bundle
