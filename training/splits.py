"""What every trainer (Keras agents and forensic) shares: the rows and labels of the train and
val splits of a manifest, where an agent's run keeps its files, and the reuse of a run that
finished before."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from agents.atomic import atomic_write_text
from agents.labels import label_to_index
from agents.preprocessing import Preprocessing
from agents.registry import get_agent

if TYPE_CHECKING:
    from training.train import TrainConfig


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


def train_val(manifest: pd.DataFrame, config: "TrainConfig") -> tuple[pd.DataFrame, pd.DataFrame]:
    """(train rows, val rows), each cut to the config's image limit by whole groups."""
    return (load_split(manifest, "train", limit=config.max_train_images, seed=config.seed),
            load_split(manifest, "val", limit=config.max_val_images, seed=config.seed))


def split_labels(rows: pd.DataFrame) -> np.ndarray:
    """The class index of each row's label (int64, in row order)."""
    return np.array([label_to_index(v) for v in rows["label"]], dtype=np.int64)


@dataclass(frozen=True)
class AgentRun:
    """One agent's training run as every trainer sees it: its settings and where its files go.

    Attributes:
        name: the agent's registry name.
        kind: the agent's kind in the registry ("keras" or "forensic"), which picks the trainer.
        config: the run's config with the agent's registry defaults and overrides applied.
        size: the square input size override (None: the registry's).
        contract: the agent's preprocessing contract at that size.
        work_dir: the run's work directory; the agent's own files live in ``work_dir/<name>/``.
    """

    name: str
    kind: str
    config: "TrainConfig"
    size: int | None
    contract: Preprocessing
    work_dir: Path

    @classmethod
    def of(cls, name: str, config: "TrainConfig", work_dir: str | Path) -> "AgentRun":
        """The run of agent ``name`` under ``config`` (before its per-agent options), in ``work_dir``."""
        spec = get_agent(name)
        config = config.for_agent(name)
        size = config.input_sizes.get(name)
        contract = spec.contract(size, **config.agent_kwargs.get(name, {}))  # the recipe's input
        return cls(name=name, kind=spec.kind, config=config, size=size, contract=contract, work_dir=Path(work_dir))

    @property
    def agent_dir(self) -> Path:
        return self.work_dir / self.name

    @property
    def meta_path(self) -> Path:
        return self.agent_dir / "meta.json"

    @property
    def log_path(self) -> Path:
        return self.agent_dir / "log.csv"

    @property
    def curves_path(self) -> Path:
        return self.agent_dir / "curves.png"

    def artefact(self, meta: dict[str, Any], model: Any, **extra: Any) -> dict[str, Any]:
        """The bundle artefact of a trained ``model``: its meta, the model, contract and log files."""
        files = {f"logs/{self.name}.csv": str(self.log_path), f"logs/{self.name}.png": str(self.curves_path)}
        return {**meta, **extra, "model": model, "preprocessing": self.contract, "files": files}

    def finished_meta(self, model_path: Path, *, verbose: int) -> dict[str, Any] | None:
        """The stored ``meta.json`` of a training that finished here before (its model file beside
        it), so a rerun reuses it; None when there is none."""
        if not (self.meta_path.is_file() and model_path.is_file()):
            return None
        if verbose:
            print(f"[{self.name}] reusing finished training in {self.agent_dir}")
        return json.loads(self.meta_path.read_text())

    def write_meta(self, meta: dict[str, Any]) -> None:
        """Writes ``meta.json`` atomically: it marks the training finished, so it goes last."""
        atomic_write_text(self.meta_path, json.dumps(meta, indent=2, default=str))
