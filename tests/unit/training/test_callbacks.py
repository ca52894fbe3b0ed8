"""The val metrics written into each epoch's log (`training.callbacks.ValMetrics`)."""

from __future__ import annotations

import warnings

import numpy as np

from training.callbacks import ValMetrics


class _Rows:
    """A val "sequence" of two batches of (inputs, labels)."""

    def __init__(self, labels):
        self.labels = labels

    def __len__(self):
        return 2

    def __getitem__(self, i):
        return np.arange(2)[:, None] + 2 * i, self.labels[2 * i:2 * i + 2]


class _Model:
    """Probabilities as a bfloat16 softmax gives them: rows off one by a little, one certain row."""

    def predict_on_batch(self, x):
        table = np.array([[0.7, 0.31], [0.2, 0.79], [1.0, 0.0], [0.4, 0.61]])
        return table[x[:, 0]]


def test_val_metrics_take_rows_that_do_not_sum_to_one_without_warnings():
    labels = np.array([0, 1, 0, 1])
    callback = ValMetrics(_Rows(labels), labels)
    callback.set_model(_Model())
    logs = {}
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        callback.on_epoch_end(0, logs)
    assert logs["val_auc"] == 1.0
    assert 0 < logs["val_loss"] < 1
