"""The one vote cache: per-image results of the shared stages, kept so a rerun runs no agent.

`fakeface evaluate` (`training.evaluate_pipeline`) and `fakeface fit-controller`
(`training.votes`) keep what the stages gave each image (every agent's vote, the face stage's
status, reason and context) in one ``.npz`` per group of images, in one folder
(``~/.cache/fakeface/votes``, ``$FAKEFACE_CACHE`` or a command's ``--cache-dir``). A file's name
is a hash of what the results depend on (:func:`cache_key`): the agents' models and the files,
plus a salt naming how the faces were cut out.
"""

from __future__ import annotations

import hashlib
import os
import warnings
from pathlib import Path
from typing import Sequence

import numpy as np

from agents.atomic import atomic_write
from agents.bundle import Bundle

CACHE_ENV = "FAKEFACE_CACHE"  # overrides the cache root (default ~/.cache/fakeface)


def default_cache_dir() -> Path:
    """Where vote caches live unless told otherwise."""
    root = os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "fakeface"
    return Path(root) / "votes"


def cache_key(bundle: Bundle, agents: Sequence[str], paths: Sequence[Path], *, salt: str = "") -> str:
    """Hash of what the votes depend on: each agent's model sha, input contract, temperature and bias
    (not the whole manifest, so saving a controller into the bundle keeps the cache valid), and
    every file's path, size and mtime; ``salt`` names anything else they depend on (how faces
    are cut out)."""
    h = hashlib.sha256(salt.encode())
    for name in agents:
        info = bundle.agent(name)
        bias = f"\0{info.bias!r}" if info.bias else ""  # only when set: older caches stay valid
        h.update(f"{name}\0{info.sha256}\0{info.preprocessing.to_dict()}\0{info.temperature!r}{bias}\n".encode())
    for path in paths:
        try:
            st = os.stat(path)
            h.update(f"{os.fspath(path)}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
        except OSError:
            h.update(f"{os.fspath(path)}\0missing\n".encode())
    return h.hexdigest()[:24]


def cache_file(folder: Path, key: str) -> Path:
    """The cache file of one group of images (:func:`cache_key`) in ``folder``."""
    return Path(folder) / f"eval-{key}.npz"


def load_scored(path: Path, *, agents: Sequence[str], n: int) -> dict[str, np.ndarray] | None:
    """A group's cached per-image results (see :func:`save_scored`), or None when absent or stale."""
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as cached:
            data = {k: cached[k] for k in cached.files}
    except (OSError, ValueError) as err:
        warnings.warn(f"Ignoring an unreadable vote cache {path}: {err}", stacklevel=2)
        return None
    if list(data.get("agents", [])) != list(agents) or len(data.get("votes", [])) != n:
        return None
    return data


def save_scored(path: Path, *, agents: Sequence[str], votes: np.ndarray, status: Sequence[str],
                reason: Sequence[str], context: np.ndarray, paths: Sequence[str]) -> None:
    """Caches a group's per-image results: votes (N, A), face status and reason, context (N, K)."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, lambda tmp: np.savez(
            tmp, agents=np.array(list(agents)), votes=np.asarray(votes, dtype=np.float64),
            status=np.array(list(status), dtype=str), reason=np.array(list(reason), dtype=str),
            context=np.asarray(context, dtype=np.float64), paths=np.array(list(paths), dtype=str)))
    except OSError as err:
        warnings.warn(f"Could not write the vote cache {path}: {err}", stacklevel=2)
