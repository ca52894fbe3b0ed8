"""Caches kept as ``.npz`` shards in one folder, which runs side by side read and extend.

`make bundle` trains two agents at once on one work folder, and a run can be killed in the
middle of a write. So a shard is written under a hidden temporary name and renamed
(`agents.atomic.atomic_write`, which also syncs it to disk); a reader takes only finished names,
never another writer's hidden one; and a finished shard it cannot read (left by an older
writer that was killed, or cut short by a full disk) is skipped with a warning, so its entries
are computed again instead of the run failing on every resume.
"""

from __future__ import annotations

import hashlib
import os
import warnings
import zipfile
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

from agents.atomic import atomic_write


def shard_key(paths: Sequence[str]) -> str:
    """The shard's file stem: a hash of the paths it holds, so rewriting the same paths replaces it."""
    return hashlib.sha1("\n".join(paths).encode()).hexdigest()[:16]


def write_shard(directory: str | os.PathLike[str], paths: Sequence[str], **arrays: np.ndarray) -> Path:
    """Writes ``paths`` and ``arrays`` (one row per path) as ``directory/<shard_key>.npz``, atomically.

    Args:
        directory: the cache folder (made when missing).
        paths: the image files the rows belong to.
        **arrays: the cached values, each with ``len(paths)`` rows.

    Returns:
        The shard written.
    """
    paths = [str(p) for p in paths]
    for name, array in arrays.items():
        if len(array) != len(paths):
            raise ValueError(f"{name} has {len(array)} rows for {len(paths)} paths.")

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as handle:  # a handle: np.savez never renames what it is given
            np.savez(handle, paths=np.asarray(paths, dtype=str), **arrays)

    return atomic_write(Path(directory) / f"{shard_key(paths)}.npz", write, parents=True)


def read_shards(directory: str | os.PathLike[str]) -> Iterator[tuple[list[str], dict[str, np.ndarray]]]:
    """``(paths, arrays)`` of each finished shard in ``directory``, in name order.

    Hidden names (another writer's temporary files) are never read; a shard that cannot be read
    is skipped with a warning naming it.
    """
    directory = Path(directory)
    if not directory.is_dir():
        return
    for shard in sorted(directory.glob("*.npz")):
        if shard.name.startswith("."):
            continue
        try:
            with np.load(shard, allow_pickle=False) as data:
                arrays = {name: data[name] for name in data.files}
            paths = arrays.pop("paths").tolist()
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as exc:
            warnings.warn(f"skipping unreadable cache shard {shard} ({type(exc).__name__}: {exc}); its entries "
                          "will be computed again", RuntimeWarning, stacklevel=2)
            continue
        yield paths, arrays
