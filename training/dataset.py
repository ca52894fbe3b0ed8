"""The dataset builder: labelled images and videos -> aligned 224x224 face crops + a split manifest.

``build_dataset`` finds sources (see :mod:`training.dataset_sources`), detects and aligns faces
with :func:`vision.faces.extract_faces` (the serving code path, so training crops are framed
like served ones; in videos the detector runs on every ``keyframe_every``-th sampled frame and
faces are followed in between, see :mod:`vision.face_tracking`), drops near-duplicate crops
of one video by perceptual hash, and splits by group so that no scene and no fake/real pair
straddles train, val and test.

Output folder::

    crops/<label>/<id>.jpg   224x224 RGB JPEG crops
    manifest.csv             MANIFEST_COLUMNS, paths relative to the folder (written last)
    rejects.csv              source,reason for every input that gave no crop
    summary.json             counts, duplicates dropped, rejects by reason, timings
    progress.jsonl           one line per finished source, so a re-run resumes
    build_config.json        the crop settings the progress was made with
"""

from __future__ import annotations

import io
import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pydantic
from pydantic import ConfigDict, Field, model_validator
import pandas as pd

from agents.errors import raised_as, read_bytes
from agents.labels import CLASSES
from training.dataset_sources import Reject, Source, discover_sources
from training.dataset_work import SourceResult, open_detector, open_follower, process_source, write_atomic

MANIFEST_COLUMNS = ("path", "label", "group", "split", "source", "frame", "confidence", "hash")
SPLITS = ("train", "val", "test")
MANIFEST_NAME = "manifest.csv"
REJECTS_NAME = "rejects.csv"
SUMMARY_NAME = "summary.json"
PROGRESS_NAME = "progress.jsonl"
CONFIG_NAME = "build_config.json"


@pydantic.dataclasses.dataclass(frozen=True, config=ConfigDict(extra="forbid"))
class BuildConfig:
    """How to build a dataset."""

    detect: bool = True  # False: inputs are crops already, used whole (resized to `size`)
    all_faces: bool = False  # every face of an image/frame, or only the most confident
    fps: float | None = Field(None, gt=0)  # video frames sampled per second (default 2 when frames is None too)
    frames: int | None = Field(None, ge=1)  # or this many frames spread over each video
    # Drop a crop within this phash Hamming distance of a kept one (same video+label); a phash has 64 bits.
    hash_distance: int = Field(6, ge=0, le=64)
    # Faces smaller than this (pixels, shorter box side) are rejected as too small; 12 is MTCNN's window.
    min_face: int = Field(40, ge=12)
    val: float = Field(0.15, ge=0)  # fraction of rows (by group) for validation
    test: float = Field(0.15, ge=0)  # fraction of rows (by group) for test
    seed: int = 0  # split seed
    size: int = Field(224, ge=32)  # crop side in pixels
    margin: float = 0.3  # context around the aligned face (vision.faces.template_points)
    jpeg_quality: int = Field(95, ge=1, le=100)  # JPEG quality of written crops
    batch_frames: int = Field(8, ge=1)  # video keyframes per MTCNN batch (batching halves detection cost)
    # Frames are shrunk to this longer side for detection (1080p: 3x faster).
    detect_max_side: int = Field(640, ge=64)
    # Full-frame detection on every N-th sampled video frame; in between, each face is followed by
    # MTCNN's last stage near its last box (vision.face_tracking); 1 = detect on every frame.
    keyframe_every: int = Field(8, ge=1)

    @model_validator(mode="after")
    def _one_sampling_and_splits_below_one(self) -> "BuildConfig":
        if self.fps is not None and self.frames is not None:
            raise ValueError(f"Give fps or frames, not both (received fps={self.fps}, frames={self.frames}).")
        if self.val + self.test >= 1:
            raise ValueError(f"val and test must leave rows for training (val + test < 1), received val={self.val}, "
                             f"test={self.test}.")
        return self

    @property
    def video_fps(self) -> float | None:
        """The sampling rate actually used (2 per second unless frames is given)."""
        return None if self.frames is not None else (self.fps if self.fps is not None else 2.0)

    def crop_settings(self) -> dict[str, Any]:
        """The settings that change crops; a resumed build must use the same ones."""
        keys = ("detect", "all_faces", "fps", "frames", "hash_distance", "min_face", "size", "margin",
                "jpeg_quality", "detect_max_side")
        settings = {k: getattr(self, k) for k in keys}
        if self.detect and self.keyframe_every != 1:
            # Absent means 1, so folders built before following existed resume with --keyframe-every 1.
            settings["keyframe_every"] = self.keyframe_every
        return settings


@dataclass(frozen=True)
class BuildSummary:
    """What a build produced."""

    out_dir: str  # the output folder
    manifest: str  # path of manifest.csv
    sources: int  # input files considered
    sources_resumed: int  # of those, finished by an earlier run and skipped
    crops: int  # rows in the manifest
    groups: int  # distinct groups
    by_label: dict[str, int]  # crops per label
    by_split: dict[str, int]  # crops per split
    by_split_label: dict[str, dict[str, int]]  # crops per split and label
    duplicates_dropped: int  # near-duplicate crops not kept
    frames_sampled: int  # video frames looked at
    frames_without_face: int  # of those, frames with no usable face
    rejects: int  # rows in rejects.csv
    rejects_by_reason: dict[str, int]  # reject count per reason kind
    seconds: float  # wall time of this run
    warnings: list[str] = field(default_factory=list)  # e.g. too few groups for a split

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def make_splits(df: pd.DataFrame, val: float = 0.15, test: float = 0.15, seed: int = 0) -> pd.DataFrame:
    """Assigns train/val/test by group, stratified by label, reproducibly.

    Uses scikit-learn's StratifiedGroupKFold: the first fold of a ``round(1/test)``-fold split is
    test, then the same on the rest for val, so fractions are approximate (0.15 -> 1/7). With fewer
    groups than folds, whole groups are dealt out in a seeded shuffle instead.

    Args:
        df: rows with ``label`` and ``group`` columns.
        val: fraction of rows for validation.
        test: fraction of rows for test.
        seed: random seed; the same rows and seed give the same splits.

    Returns:
        A copy of ``df`` with a ``split`` column.
    """
    if val < 0 or test < 0 or val + test >= 1:
        raise ValueError(f"val and test must be >= 0 with val + test < 1, received val={val}, test={test}.")
    missing = [c for c in ("label", "group") if c not in df.columns]
    if missing:
        raise ValueError(f"make_splits needs columns label and group; missing {missing}.")
    out = df.copy()
    out["split"] = "train"
    if out.empty:
        return out
    # Work in a canonical row order so that the result does not depend on how rows arrived.
    order = np.lexsort((out["label"].astype(str).to_numpy(), out["group"].astype(str).to_numpy()))
    rows = out.iloc[order]
    remaining = np.arange(len(rows))
    split = np.array(["train"] * len(rows), dtype=object)
    for name, fraction in (("test", test), ("val", val)):
        if fraction <= 0 or len(remaining) == 0:
            continue
        share = fraction * len(rows) / len(remaining)  # fraction of what is left
        chosen = _pick_groups(rows.iloc[remaining], share, seed)
        split[remaining[chosen]] = name
        remaining = remaining[~chosen]
    out.loc[rows.index, "split"] = split
    check_splits(out)
    return out


def _pick_groups(rows: pd.DataFrame, share: float, seed: int) -> np.ndarray:
    """Boolean mask of rows whose groups make up about ``share`` of ``rows``, label-stratified."""
    from sklearn.model_selection import StratifiedGroupKFold

    groups = rows["group"].astype(str).to_numpy()
    labels = rows["label"].astype(str).to_numpy()
    unique = np.unique(groups)
    n_splits = max(2, int(round(1.0 / min(share, 0.5))))
    if len(unique) < n_splits:
        rng = np.random.default_rng(seed)
        take = unique[rng.permutation(len(unique))][: int(round(share * len(unique)))]
        return np.isin(groups, take)
    import warnings

    with warnings.catch_warnings():
        # A class with fewer groups than folds is fine here: we only use one fold.
        warnings.simplefilter("ignore", UserWarning)
        folds = StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=seed)
        _, held = next(iter(folds.split(np.zeros(len(rows)), labels, groups)))
    mask = np.zeros(len(rows), dtype=bool)
    mask[held] = True
    return mask


def check_splits(df: pd.DataFrame) -> None:
    """Raises ValueError when any group has rows in more than one split (a leak)."""
    spread = df.groupby(df["group"].astype(str))["split"].nunique()
    leaking = spread[spread > 1]
    if len(leaking):
        raise ValueError(f"{len(leaking)} group(s) straddle splits, e.g. {list(leaking.index[:3])}; "
                         "rebuild the splits with make_splits.")


def read_manifest(path: str | os.PathLike[str]) -> pd.DataFrame:
    """Reads a manifest with crop paths made absolute (relative ones are relative to its folder).

    Raises:
        ValueError: naming the file, when it is missing, unreadable or lacks required columns.
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{path}: manifest not found; build one with `fakeface dataset build INPUT --out DIR`")
    data = io.BytesIO(read_bytes(path, error=ValueError, what="manifest"))
    with raised_as(ValueError, f"{path}: not a readable CSV manifest",
                   catch=(pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError)):
        df = pd.read_csv(data, dtype={"path": str, "label": str, "group": str, "split": str, "source": str,
                                      "hash": str}, keep_default_na=False)
    missing = [c for c in ("path", "label", "group", "split") if c not in df.columns]
    if missing:
        raise ValueError(f"{path}: manifest lacks column(s) {missing}; expected {list(MANIFEST_COLUMNS)}")
    bad = sorted(set(df["label"]) - set(CLASSES))
    if bad:
        raise ValueError(f"{path}: unknown label(s) {bad[:5]}; expected one of {CLASSES}")
    base = path.resolve().parent
    # Normalised ("a/b/../c" is "a/c"), as `vision.inputs` lists files: the caches keyed by path
    # (landmarks, resized crops, forensic features) then hold for every checkout that reaches the
    # same data, not only for the one whose manifest folder spelled the way there.
    df["path"] = [os.path.normpath(p if os.path.isabs(p) else base / p) for p in df["path"]]
    return df


def _reject_kind(reason: str) -> str:
    return reason.split(":", 1)[0].split("(", 1)[0].strip()


class _Progress:
    """Append-only record of finished sources; a torn last line is ignored on reload."""

    def __init__(self, out_dir: Path, config: BuildConfig) -> None:
        self.path = out_dir / PROGRESS_NAME
        config_path = out_dir / CONFIG_NAME
        settings = config.crop_settings()
        if config_path.is_file():
            previous = json.loads(config_path.read_text())
            if previous != settings:
                changed = sorted(k for k in set(settings) | set(previous) if previous.get(k) != settings.get(k))
                raise ValueError(f"{out_dir}: was built with other crop settings ({changed}); use a new --out "
                                 "folder or the same options to resume")
        else:
            write_atomic(config_path, json.dumps(settings, indent=2).encode())
        self.done: dict[str, SourceResult] = {}
        if self.path.is_file():
            for line in self.path.read_text().splitlines():
                try:
                    record = json.loads(line)
                except json.JSONDecodeError:
                    continue  # interrupted mid-line: that source is simply redone
                self.done[record["source"]] = SourceResult.from_dict(record)

    def add(self, handle, result: SourceResult) -> None:
        handle.write(json.dumps(result.to_dict()) + "\n")
        handle.flush()
        self.done[result.source] = result


def build_dataset(
    inputs: list[str | os.PathLike[str]],
    out_dir: str | os.PathLike[str],
    config: BuildConfig | None = None,
    *,
    show_progress: bool = True,
) -> BuildSummary:
    """Builds (or resumes) a face-crop dataset.

    Args:
        inputs: folders laid out real/ and fake/ and/or CSV manifests ``path,label[,group]``.
        out_dir: output folder (created; an existing one is resumed).
        config: build settings; defaults to ``BuildConfig()``.
        show_progress: draw a tqdm progress bar on stderr.

    Returns:
        The summary also written to ``summary.json``.
    """
    from tqdm import tqdm

    config = config or BuildConfig()
    start = time.perf_counter()
    sources, rejects = discover_sources(list(inputs))
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    progress = _Progress(out, config)
    pending = [s for s in sources if s.path not in progress.done]
    resumed = len(sources) - len(pending)
    detector = open_detector(config) if pending and config.detect else None
    follower = open_follower(detector, config) if detector is not None else None
    with open(progress.path, "a", encoding="utf-8") as handle, tqdm(
        total=len(sources), initial=resumed, unit="file", desc="dataset", disable=not show_progress
    ) as bar:
        crops = sum(len(progress.done[s.path].rows) for s in sources if s.path in progress.done)
        for source in pending:
            result = process_source(source, out, config, detector, follower)
            progress.add(handle, result)
            crops += len(result.rows)
            bar.update(1)
            bar.set_postfix(crops=crops, refresh=False)
    return _finish(out, sources, rejects, progress, config, resumed, time.perf_counter() - start)


def _finish(out: Path, sources: list[Source], rejects: list[Reject], progress: _Progress, config: BuildConfig,
            resumed: int, seconds: float) -> BuildSummary:
    """Splits, then writes rejects.csv, summary.json and (last) manifest.csv."""
    rows: list[dict[str, Any]] = []
    dropped = sampled = faceless = 0
    all_rejects = [(r.source, r.reason) for r in rejects]
    for source in sources:
        result = progress.done[source.path]
        dropped += result.dropped
        sampled += result.frames_sampled
        faceless += result.frames_without_face
        all_rejects.extend((source.path, reason) for reason in result.rejects)
        # Label and group come from this run's inputs (a changed metadata.csv takes effect).
        rows.extend({**row, "label": source.label, "group": source.group, "source": source.path}
                    for row in result.rows)
    df = pd.DataFrame(rows, columns=[c for c in MANIFEST_COLUMNS if c != "split"])
    df = make_splits(df, val=config.val, test=config.test, seed=config.seed)[list(MANIFEST_COLUMNS)]
    warnings = []
    for name, fraction in (("val", config.val), ("test", config.test)):
        if fraction > 0 and len(df) and not (df["split"] == name).any():
            warnings.append(f"{name} is empty: only {df['group'].nunique()} group(s), too few to split by group")
    rejects_df = pd.DataFrame(all_rejects, columns=["source", "reason"])
    write_atomic(out / REJECTS_NAME, rejects_df.to_csv(index=False).encode())
    by_split_label = {s: {lab: int(((df["split"] == s) & (df["label"] == lab)).sum()) for lab in CLASSES}
                      for s in SPLITS}
    summary = BuildSummary(
        out_dir=str(out.resolve()),
        manifest=str((out / MANIFEST_NAME).resolve()),
        sources=len(sources),
        sources_resumed=resumed,
        crops=len(df),
        groups=int(df["group"].nunique()) if len(df) else 0,
        by_label={lab: int((df["label"] == lab).sum()) for lab in CLASSES},
        by_split={s: int((df["split"] == s).sum()) for s in SPLITS},
        by_split_label=by_split_label,
        duplicates_dropped=dropped,
        frames_sampled=sampled,
        frames_without_face=faceless,
        rejects=len(rejects_df),
        rejects_by_reason=rejects_df["reason"].map(_reject_kind).value_counts().to_dict() if len(rejects_df) else {},
        seconds=round(seconds, 2),
        warnings=warnings,
    )
    write_atomic(out / SUMMARY_NAME, json.dumps(summary.to_dict(), indent=2).encode())
    write_atomic(out / MANIFEST_NAME, df.to_csv(index=False).encode())
    return summary
