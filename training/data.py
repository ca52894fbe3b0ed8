"""Streaming face-crop batches from disk for Keras (`keras.utils.PyDataset`).

Images are read, augmented and prepared per batch, so memory holds one batch per worker,
never the data set. Synthetic fakes (self-blended real faces) are added as extra samples.
"""

from __future__ import annotations

from typing import Sequence

import keras
import numpy as np

from agents.labels import FAKE_INDEX, REAL_INDEX
from agents.preprocessing import Preprocessing, prepare_image
from blackboard.faces import read_image
from training.augment import AugmentConfig, augment
from training.synth import self_blend


class FaceSequence(keras.utils.PyDataset):
    """Batches of (prepared images, labels) read from disk.

    Args:
        paths: image files (RGB face crops).
        labels: class indices (0 real, 1 fake) of those files.
        contract: the agent's preprocessing contract.
        batch_size: images per batch.
        augment_config: train-time augmentation, or None (val/test).
        synth_ratio: extra synthetic fakes per real image (e.g. 0.5 adds half as many as there are reals).
        shuffle: reshuffle every epoch (train only).
        seed: base seed; each epoch and sample derive their own generator from it.
        **kwargs: `workers`, `use_multiprocessing`, `max_queue_size` for `PyDataset`.
    """

    def __init__(
        self,
        paths: Sequence[str],
        labels: Sequence[int],
        contract: Preprocessing,
        *,
        batch_size: int = 64,
        augment_config: AugmentConfig | None = None,
        synth_ratio: float = 0.0,
        shuffle: bool = False,
        seed: int = 0,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        if len(paths) != len(labels):
            raise ValueError(f"paths and labels differ in length: {len(paths)} vs {len(labels)}.")
        if batch_size < 1:
            raise ValueError(f"batch_size must be positive, received {batch_size}.")
        if synth_ratio < 0:
            raise ValueError(f"synth_ratio must be >= 0, received {synth_ratio}.")
        self.contract = contract
        self.batch_size = int(batch_size)
        self.augment_config = augment_config
        self.shuffle = shuffle
        self.seed = int(seed)
        self.epoch = 0
        paths = [str(p) for p in paths]
        labels = [int(v) for v in labels]
        # (path, label, synthetic?) triples; synthetic fakes come from randomly chosen reals.
        items = [(p, y, False) for p, y in zip(paths, labels)]
        reals = [p for p, y in zip(paths, labels) if y == REAL_INDEX]
        n_synth = int(round(synth_ratio * len(reals)))
        if n_synth and reals:
            rng = np.random.default_rng(self.seed + 7919)
            picks = rng.choice(len(reals), size=n_synth, replace=n_synth > len(reals))
            items += [(reals[i], FAKE_INDEX, True) for i in picks]
        self.items = items
        self.order = np.arange(len(items))
        self._reshuffle()

    @property
    def labels(self) -> np.ndarray:
        return np.array([y for _, y, _ in self.items], dtype=np.int64)

    def _reshuffle(self) -> None:
        if self.shuffle:
            np.random.default_rng(self.seed + self.epoch).shuffle(self.order)

    def __len__(self) -> int:
        return (len(self.items) + self.batch_size - 1) // self.batch_size

    def __getitem__(self, index: int):
        idx = self.order[index * self.batch_size:(index + 1) * self.batch_size]
        x = np.empty((len(idx), *self.contract.input_shape), dtype=np.float32)
        y = np.empty(len(idx), dtype=np.int64)
        for j, i in enumerate(idx):
            path, label, synthetic = self.items[i]
            # One generator per (epoch, sample): reproducible whatever the worker order.
            rng = np.random.default_rng((self.seed, self.epoch, int(i)))
            image = read_image(path)  # the same decoding as serving and batch jobs
            if synthetic:
                image = self_blend(image, rng)
            if self.augment_config is not None:
                image = augment(image, rng, self.augment_config)
            x[j] = prepare_image(image, self.contract)
            y[j] = label
        return x, y

    def on_epoch_end(self) -> None:
        self.epoch += 1
        self._reshuffle()
