"""Training the `forensic` agent: features of every crop, gradient boosting, calibration on val.

`training.train.train_agent` hands agents of kind "forensic" to :func:`train_forensic`, so
``fakeface train --agents forensic`` (or the default, all agents) trains it into the same
bundle as the CNN agents, with the same calibration (temperature on val) and threshold rule.

Features are computed once per image with the serving code path and cached in shards of
``OUT.work/cache/forensic-v<version>-<H>x<W>/`` (`training.forensic_cache`): an interrupted run
resumes from the shards already written, and other runs on the same files reuse them.

With ``TrainConfig.degraded_copies`` (default 1) every train and val image also enters once per
copy as a screenshot-like degraded version (`vision.degrade.random_chain`: re-encoding, resizing,
blur, gamma, H.264), seeded by the image's path so a rerun makes the same copies; the copy then
takes the same serving path (contract, features). Val's degraded copies make calibration and the
threshold hold for degraded faces as well as clean ones. With ``TrainConfig.aligned_copies`` the
first copies are cut as serving cuts a face it detects in a photo or screenshot
(`training.pipeline_crops`), the others stay whole crops. With ``TrainConfig.detected_share``
that share of images also enters once as a whole screen: a chain with a player or phone
composition, the face found in it by serving's detector and cut as serving cuts it (a copy in
which no face is found is left out, as serving would answer "no face").
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd
from sklearn.model_selection import GroupShuffleSplit
from sklearn.utils.class_weight import compute_sample_weight

from agents.forensic import ForensicModel, load_forensic, save_forensic
from agents.forensic_features import FEATURE_VERSION, GROUPS, N_FEATURES
from agents.registry import get_agent
from training.calibrate import binary_metrics, calibrate, calibration_summary
from training.curves import plot_curves
from training.forensic_cache import DETECTED_COPY, FeatureCache, degrade_seed
from training.pipeline_crops import LandmarkCache
from training.splits import AgentRun, split_labels, train_val

# Share of the train GROUPS held out for early stopping (never val: val calibrates).
EARLY_STOP_FRACTION = 0.1


def with_degraded_copies(rows: pd.DataFrame, copies: int, seed: int) -> pd.DataFrame:
    """``rows`` followed by ``copies`` degraded versions of each, with a ``degrade_seed`` column.

    The clean rows have ``degrade_seed`` and ``degrade_copy`` None; a copy keeps its row's label
    and group, so a group-wise split keeps an image and its copies on one side.
    """
    parts = [rows.assign(degrade_seed=None, degrade_copy=None)]
    for copy in range(copies):
        seeds = [degrade_seed(p, copy, seed) for p in rows["path"].astype(str)]
        parts.append(rows.assign(degrade_seed=seeds, degrade_copy=copy))
    return pd.concat(parts, ignore_index=True).astype({"degrade_seed": object, "degrade_copy": object})


def with_detected_copies(rows: pd.DataFrame, share: float, seed: int) -> pd.DataFrame:
    """``rows`` (a ``detected`` column added, False) followed by one composed-screen copy of
    ``share`` of the images, chosen by a stable hash of the path (``detected`` True, no
    ``degrade_copy``); a copy keeps its row's label and group."""
    if "degrade_seed" not in rows:
        rows = rows.assign(degrade_seed=None, degrade_copy=None)
    rows = rows.assign(detected=False)
    if share <= 0:
        return rows
    seeds = np.array([degrade_seed(p, DETECTED_COPY, seed) for p in rows["path"].astype(str)], dtype=np.int64)
    chosen = ((seeds % 10_000) < round(share * 10_000)) & rows["degrade_seed"].isna().to_numpy()  # once per image
    copies = rows[chosen].assign(degrade_seed=seeds[chosen].tolist(), degrade_copy=None, detected=True)
    out = pd.concat([rows, copies], ignore_index=True)
    return out.astype({"degrade_seed": object, "degrade_copy": object})


def _seeds(rows: pd.DataFrame) -> list[int | None]:
    return [None if s is None or pd.isna(s) else int(s) for s in rows["degrade_seed"]]


def _is_aligned(rows: pd.DataFrame, aligned_copies: int) -> np.ndarray:
    """Which rows are degraded copies cut the serving way (the first ``aligned_copies`` copies)."""
    return np.array([c is not None and not pd.isna(c) and int(c) < aligned_copies for c in rows["degrade_copy"]],
                    dtype=bool)


def _copy_landmarks(train: pd.DataFrame, val: pd.DataFrame, work_dir: Path, aligned_copies: int, *,
                    verbose: bool):
    """Per-row landmarks for the first ``aligned_copies`` degraded copies (None for clean rows and
    the copies kept whole), found once per image."""
    found = LandmarkCache.for_work_dir(work_dir).landmarks(
        pd.concat([train["path"], val["path"]]).astype(str).tolist(), verbose=verbose)

    def per_row(rows: pd.DataFrame) -> list[tuple[np.ndarray, tuple[int, int]] | None]:
        return [found[str(p)] if cut else None for p, cut in zip(rows["path"], _is_aligned(rows, aligned_copies))]

    return per_row


def holdout_plan(labels: np.ndarray, groups: Sequence[str], *, class_weights: bool,
                 seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """How train rows are used: (fit rows, early-stopping rows, per-row sample weights).

    The early-stopping holdout is a share of the train GROUPS, so it shares no source video
    with the rows the trees are fitted on; weights balance the classes when asked.
    """
    splitter = GroupShuffleSplit(n_splits=1, test_size=EARLY_STOP_FRACTION, random_state=seed)
    fit_idx, stop_idx = next(splitter.split(np.zeros(len(groups)), groups=np.asarray(groups)))
    weights = compute_sample_weight("balanced", labels) if class_weights else np.ones(len(labels))
    return fit_idx, stop_idx, weights


def _write_log(model: ForensicModel, log_path: Path) -> None:
    """Per-iteration log loss on the fit part and the holdout, in the CSV shape plot_curves reads."""
    est = model.estimator
    train = -np.asarray(getattr(est, "train_score_", []), dtype=np.float64)
    log = pd.DataFrame({"epoch": np.arange(len(train)), "loss": train})
    holdout = np.asarray(getattr(est, "validation_score_", []), dtype=np.float64)
    if len(holdout) == len(train):
        log["val_loss"] = -holdout
    tmp = log_path.with_name(f".{log_path.name}.tmp")
    log.to_csv(tmp, index=False)
    os.replace(tmp, log_path)


def fit_forensic(
    spec_name: str,
    x_train: np.ndarray,
    y_train: np.ndarray,
    groups: Sequence[str],
    *,
    contract_size: int | None = None,
    params: dict[str, Any] | None = None,
    class_weights: bool = True,
    seed: int = 0,
) -> ForensicModel:
    """Fits a forensic model on train features, early stopping on a group-held-out part of them.

    Args:
        spec_name: registry name of the agent (its builder makes the estimator).
        x_train: (N, N_FEATURES) features of the train split.
        y_train: class indices.
        groups: each row's group (source video), so the holdout shares none with the fit part.
        contract_size: square input size override of the contract (None: the registry's).
        params: ``HistGradientBoostingClassifier`` parameters over the agent's defaults.
        class_weights: weight classes by inverse frequency (as the CNN agents do).
        seed: seeds the holdout split and the boosting.
    """
    fit_idx, stop_idx, weights = holdout_plan(y_train, groups, class_weights=class_weights, seed=seed)
    model = get_agent(spec_name).build(input_size=contract_size, **{"random_state": seed, **dict(params or {})})
    return model.fit(x_train[fit_idx], y_train[fit_idx], sample_weight=weights[fit_idx],
                     val_features=x_train[stop_idx], val_labels=y_train[stop_idx], val_weight=weights[stop_idx])


def train_forensic(run: AgentRun, manifest: pd.DataFrame, *, verbose: int = 1) -> dict[str, Any]:
    """Trains and calibrates a forensic agent; returns its bundle artefact (like `train_agent`,
    which hands ``run`` over).

    The fitted model and `meta.json` go to `work_dir/<name>/` (atomically); a rerun reuses
    them, and the feature cache in `work_dir/cache/` makes an interrupted extraction resume.
    """
    name, config, contract, work_dir = run.name, run.config, run.contract, run.work_dir
    agent_dir = run.agent_dir
    model_path = agent_dir / f"{name}.skops"
    meta = run.finished_meta(model_path, verbose=verbose)
    if meta is not None:
        return run.artefact(meta, load_forensic(model_path), kind="forensic")

    train, val = train_val(manifest, config)
    copies = config.degraded_copies if config.augment else 0
    share = config.detected_share if config.augment else 0.0
    train = with_detected_copies(with_degraded_copies(train, copies, config.seed), share, config.seed)
    val = with_detected_copies(with_degraded_copies(val, copies, config.seed), share, config.seed)
    cache = FeatureCache.for_work_dir(work_dir, contract)
    start = time.perf_counter()
    aligned = config.aligned_copies if copies else 0  # no copies without augmentation
    marks = _copy_landmarks(train, val, work_dir, aligned, verbose=bool(verbose)) if aligned else None
    x_train = cache.features(train["path"].tolist(), degrade_seeds=_seeds(train), detected=train["detected"].tolist(),
                             landmarks=marks(train) if marks else None, workers=config.workers, verbose=bool(verbose))
    x_val = cache.features(val["path"].tolist(), degrade_seeds=_seeds(val), detected=val["detected"].tolist(),
                           landmarks=marks(val) if marks else None, workers=config.workers, verbose=bool(verbose))
    features_s = time.perf_counter() - start
    # Composed copies in which the detector found no face: serving answers "no face" there. Only
    # those are dropped; any other row is kept whatever its features.
    keep_train = ~(train["detected"].to_numpy(bool) & np.isnan(x_train).all(axis=1))
    keep_val = ~(val["detected"].to_numpy(bool) & np.isnan(x_val).all(axis=1))
    lost = {"train": int((~keep_train).sum()), "val": int((~keep_val).sum())}
    train, x_train = train[keep_train].reset_index(drop=True), x_train[keep_train]
    val, x_val = val[keep_val].reset_index(drop=True), x_val[keep_val]
    y_train, y_val = split_labels(train), split_labels(val)
    if verbose:
        print(f"[{name}] {len(train)} train, {len(val)} val rows ({copies} degraded copies each), {N_FEATURES} features "
              f"({len(GROUPS)} groups), input {contract.input_shape}; features in {features_s:.0f}s")

    start = time.perf_counter()
    params = dict(config.agent_kwargs.get(name, {}))
    model = fit_forensic(name, x_train, y_train, train["group"].tolist(), contract_size=run.size, params=params,
                         class_weights=config.class_weights, seed=config.seed)
    fit_s = time.perf_counter() - start

    agent_dir.mkdir(parents=True, exist_ok=True)
    save_forensic(model, model_path)
    model = load_forensic(model_path)  # calibrate exactly what the bundle will hold
    raw = model.predict_features(x_val)
    p_val, calibration = calibrate(raw, y_val, config.threshold_rule)
    threshold, temperature = calibration["threshold"], calibration["temperature"]
    clean = val["degrade_seed"].isna().to_numpy()
    cut, found = _is_aligned(val, aligned), val["detected"].to_numpy(dtype=bool)
    parts = {"clean": clean, "degraded": ~clean, "degraded_whole": ~clean & ~cut & ~found, "degraded_aligned": cut,
             "degraded_detected": found}
    part_metrics = {k: binary_metrics(p_val[m], y_val[m], threshold) for k, m in parts.items() if m.any()}
    contributions = model.explain_features(x_val, temperature=temperature)
    mean_abs = {g: float(np.mean([abs(c[g]) for c in contributions])) for g in GROUPS}
    _write_log(model, run.log_path)
    plot_curves(run.log_path, run.curves_path, title=f"{name} boosting (log loss per iteration)")

    meta = {
        **calibration,
        "training": {
            "train_files": int(train["degrade_seed"].isna().sum()),
            "val_files": int(val["degrade_seed"].isna().sum()),
            "train_rows": int(len(train)),
            "val_rows": int(len(val)),
            "degraded_copies": int(copies),
            "aligned_copies": int(aligned),
            "detected_share": float(share),
            "detected_copies": {"train": int(train["detected"].sum()), "val": int(val["detected"].sum()),
                                "no_face": lost},
            "val_metrics_by_copy": part_metrics,
            "features": N_FEATURES,
            "feature_version": FEATURE_VERSION,
            "feature_groups": {g: len(cols) for g, cols in GROUPS.items()},
            "boosting_iterations": int(model.estimator.n_iter_),
            "params": {k: v for k, v in model.estimator.get_params().items() if not callable(v)},
            "early_stop_fraction": EARLY_STOP_FRACTION,
            "class_weights": config.class_weights,
            "feature_seconds": round(features_s, 1),
            "train_seconds": round(fit_s, 1),
            "val_mean_abs_group_contribution": mean_abs,
            "seed": config.seed,
            "backend": "scikit-learn",
        },
    }
    run.write_meta(meta)
    if verbose:
        print(f"[{name}] done: {model.estimator.n_iter_} iterations in {fit_s:.0f}s, {calibration_summary(meta)}")
    return run.artefact(meta, model, kind="forensic")
