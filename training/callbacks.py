"""Training callbacks that survive an interrupted run: val AUC each epoch and resumable early stopping.

Keras' own `BackupAndRestore` brings back the epoch, the weights and the optimizer state; these
callbacks add what it does not keep: which epoch was best, its weights, and how long the run has
waited for a better one, so a resumed run stops at the same epoch an uninterrupted one would.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import keras
import numpy as np
from sklearn.metrics import log_loss, roc_auc_score

from agents.atomic import atomic_write, atomic_write_text
from agents.labels import FAKE_INDEX


class ValMetrics(keras.callbacks.Callback):
    """Scores the val set after each epoch and adds `val_auc` and `val_loss` to the epoch logs.

    Placed first in the callback list, so early stopping and the CSV log see the values.

    Args:
        val_seq: a `FaceSequence` over the val split (no augmentation, no shuffle).
        y_val: the val labels in the sequence's order.
    """

    def __init__(self, val_seq: keras.utils.PyDataset, y_val: np.ndarray) -> None:
        super().__init__()
        self.val_seq = val_seq
        self.y_val = np.asarray(y_val)

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        probs = np.concatenate([np.asarray(self.model.predict_on_batch(self.val_seq[i][0]), dtype=np.float64)
                                for i in range(len(self.val_seq))])
        probs /= probs.sum(axis=1, keepdims=True)
        if logs is not None:
            logs["val_auc"] = float(roc_auc_score(self.y_val, probs[:, FAKE_INDEX]))
            clipped = np.clip(probs, 1e-7, 1.0)
            clipped /= clipped.sum(axis=1, keepdims=True)  # a clipped row must still sum to one
            logs["val_loss"] = float(log_loss(self.y_val, clipped, labels=[0, 1]))


class ResumableEarlyStopping(keras.callbacks.Callback):
    """Early stopping on a maximised metric whose state lives on disk.

    Each epoch it writes `state.json` (best value, best epoch, epochs waited) and, when the
    epoch is the best so far, `best.weights.h5`; both written to a temporary name and renamed.

    Args:
        work_dir: the agent's work directory.
        monitor: the log key to maximise (e.g. "val_auc").
        patience: epochs without improvement before stopping.
    """

    def __init__(self, work_dir: str | os.PathLike[str], *, monitor: str = "val_auc", patience: int = 4) -> None:
        super().__init__()
        if patience < 1:
            raise ValueError(f"patience must be >= 1, received {patience}.")
        self.work_dir = Path(work_dir)
        self.monitor = monitor
        self.patience = int(patience)
        self.state_path = self.work_dir / "state.json"
        self.best_path = self.work_dir / "best.weights.h5"
        self.state = self.load_state()

    def load_state(self) -> dict[str, Any]:
        if self.state_path.is_file() and self.best_path.is_file():
            return json.loads(self.state_path.read_text())
        return {"best": None, "best_epoch": None, "wait": 0}

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        # A run resumed after its stopping point has nothing left to do.
        if self.state["wait"] >= self.patience:
            self.model.stop_training = True

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        value = (logs or {}).get(self.monitor)
        if value is None:
            raise KeyError(f"ResumableEarlyStopping: {self.monitor!r} is not in the epoch logs; "
                           f"put the callback that computes it first.")
        if self.state["best"] is None or value > self.state["best"]:
            self.state.update(best=float(value), best_epoch=int(epoch) + 1, wait=0)
            atomic_write(self.best_path, self.model.save_weights)
        else:
            self.state["wait"] += 1
        atomic_write_text(self.state_path, json.dumps(self.state))
        if self.state["wait"] >= self.patience:
            self.model.stop_training = True

    def restore_best(self) -> None:
        """Loads the best epoch's weights into the model (when any epoch finished)."""
        if self.best_path.is_file():
            self.model.load_weights(self.best_path)
