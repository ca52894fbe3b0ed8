"""Streaming face-crop batches from disk for Keras (`keras.utils.PyDataset`).

Images are read, augmented and prepared per batch, so memory holds one batch per worker,
never the data set. Synthetic fakes (self-blended real faces) are added as extra samples.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable, Sequence

import keras
import numpy as np
from tqdm import tqdm

from agents.atomic import atomic_write, atomic_write_text
from agents.labels import FAKE_INDEX, REAL_INDEX
from agents.preprocessing import Preprocessing, resize_rgb, to_model_input
from training.augment import AugmentConfig, augment
from training.synth import self_blend
from vision.media import read_image


def resized_cache(
    paths: Sequence[str],
    contract: Preprocessing,
    cache_path: str | os.PathLike[str],
    *,
    workers: int = 2,
    verbose: bool = True,
) -> np.ndarray:
    """Every image decoded once and resized to the contract's size, as an (N, H, W, 3) uint8 array.

    Decoding a 224 px JPEG costs more than a small agent's training step, so epochs read this
    array instead of the files. It is the exact first step of the serving contract
    (`resize_rgb`), stored in a `.npy` file (written, then renamed) that later runs, resumed
    runs and other agents with the same input size reuse when it lists the same files.
    """
    return cached_array(paths, contract, cache_path, lambda p: resize_rgb(read_image(p), contract),
                        workers=workers, verbose=verbose)


def _listing(paths: Sequence[str | os.PathLike[str]]) -> str:
    """The ``.paths.txt`` text that vouches for a cached array of ``paths``."""
    return "\n".join(str(p) for p in paths)


def cached_array_of(paths: Sequence[str | os.PathLike[str]], cache_path: str | os.PathLike[str]) -> np.ndarray | None:
    """The array `cached_array` kept in ``cache_path`` for exactly these ``paths`` (memory-mapped),
    or None when there is none (what it would take to make it is then not needed)."""
    cache_path = Path(cache_path)
    list_path = cache_path.with_suffix(".paths.txt")
    if cache_path.is_file() and list_path.is_file() and list_path.read_text() == _listing(paths):
        return np.load(cache_path, mmap_mode="r")
    return None


def cached_array(
    paths: Sequence[str],
    contract: Preprocessing,
    cache_path: str | os.PathLike[str],
    make: Callable[[str], np.ndarray],
    *,
    workers: int = 2,
    verbose: bool = True,
    what: str = "",
) -> np.ndarray:
    """``make(path)`` for every path, as one (N, H, W, 3) uint8 array kept in ``cache_path``.

    The array is reused while its ``.paths.txt`` listing names the same files in the same order;
    the listing is written last, so it only ever vouches for a complete array.
    """
    cache_path = Path(cache_path)
    cached = cached_array_of(paths, cache_path)
    if cached is not None:
        return cached
    out = np.empty((len(paths), contract.height, contract.width, 3), dtype=np.uint8)

    def one(i: int) -> None:
        out[i] = make(str(paths[i]))

    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        list(tqdm(pool.map(one, range(len(paths))), total=len(paths), disable=not verbose, unit="img",
                  desc=f"decoding {what + ' ' if what else ''}{len(paths)} images to {contract.height}x{contract.width}"))
    cache_path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(cache_path, lambda tmp: np.save(tmp, out))
    atomic_write_text(cache_path.with_suffix(".paths.txt"), _listing(paths))  # last: it vouches for the array
    return out


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
        cache: optional `resized_cache` of `paths` (same order); read instead of the files.
        cut_cache: optional `training.pipeline_crops.cut_cache` of `paths` (same order): each
            face cut as serving cuts a detected face.
        cut_share: probability that a sample is read from `cut_cache` instead (train only).
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
        cache: np.ndarray | None = None,
        cut_cache: np.ndarray | None = None,
        cut_share: float = 0.0,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        if len(paths) != len(labels):
            raise ValueError(f"paths and labels differ in length: {len(paths)} vs {len(labels)}.")
        if batch_size < 1:
            raise ValueError(f"batch_size must be positive, received {batch_size}.")
        if synth_ratio < 0:
            raise ValueError(f"synth_ratio must be >= 0, received {synth_ratio}.")
        if cache is not None and len(cache) != len(paths):
            raise ValueError(f"cache holds {len(cache)} images for {len(paths)} paths.")
        if not 0.0 <= cut_share <= 1.0:
            raise ValueError(f"cut_share must be in [0, 1], received {cut_share}.")
        if cut_share and (cut_cache is None or len(cut_cache) != len(paths)):
            raise ValueError(f"cut_share {cut_share} needs a cut_cache of {len(paths)} images, "
                             f"received {None if cut_cache is None else len(cut_cache)}.")
        self.cut_cache = cut_cache if cut_share else None
        self.cut_share = float(cut_share)
        self.cache = cache
        self.index_of = {str(p): i for i, p in enumerate(paths)}
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
            if self.cut_cache is not None and rng.random() < self.cut_share:
                image = np.array(self.cut_cache[self.index_of[path]])  # the serving framing
            elif self.cache is not None:
                image = np.array(self.cache[self.index_of[path]])
            else:
                # The same decoding and resizing as serving and batch jobs.
                image = resize_rgb(read_image(path), self.contract)
            if synthetic:
                image = self_blend(image, rng)
            if self.augment_config is not None:
                image = augment(image, rng, self.augment_config)
            x[j] = to_model_input(image, self.contract)
            y[j] = label
        return x, y

    def on_epoch_end(self) -> None:
        self.epoch += 1
        self._reshuffle()

    def set_epoch(self, epoch: int) -> None:
        """Puts the sequence at the start of `epoch` (a resumed run keeps the same data order)."""
        self.epoch = int(epoch)
        self.order = np.arange(len(self.items))
        self._reshuffle()
