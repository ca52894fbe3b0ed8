"""Every agent's calibrated p_fake for a list of face-crop images (the controller's training data).

``fakeface fit-controller`` and evaluation both need the (N, A) vote matrix of a manifest split.
Computing it runs three CNNs over every image, so the result is cached in an ``.npz`` keyed by
the agents' models (sha256, preprocessing, temperature) and the files (path, size, modification time): a second run
on the same split and bundle reads the cache instead of predicting again.
"""

from __future__ import annotations

import hashlib
import os
import warnings
from pathlib import Path
from typing import Sequence

import numpy as np
from tqdm import tqdm

from agents.atomic import atomic_write
from agents.bundle import Bundle, load_bundle
from agents.labels import label_to_index
from agents.predictor import AgentPredictor
from vision.faces import whole_image_crop
from vision.media import ImageError, read_image
from blackboard.stage_rows import CROP_SIZE
from training.dataset import read_manifest
from vision.context import check_names, context_matrix, face_context

CACHE_ENV = "FAKEFACE_CACHE"  # overrides the cache root (default ~/.cache/fakeface)
CROP_SALT = "whole-crop-224"  # in the cache key: votes of images cropped as the face stage does


def default_cache_dir() -> Path:
    """Where vote caches live unless told otherwise."""
    root = os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "fakeface"
    return Path(root) / "votes"


def read_manifest_split(manifest: str | os.PathLike[str], split: str, *,
                        with_groups: bool = False) -> tuple[list[Path], np.ndarray] | tuple[list[Path], np.ndarray, np.ndarray]:
    """Image paths and 0/1 labels (and, with ``with_groups``, source groups) of one manifest split.

    Raises:
        ValueError: the manifest is missing or malformed (see read_manifest), or the split is empty.
    """
    frame = read_manifest(manifest)
    rows = frame[frame["split"].astype(str) == split]
    if rows.empty:
        splits = sorted(frame["split"].astype(str).unique())
        raise ValueError(f"Manifest {manifest} has no rows in split {split!r}; its splits are {splits}.")
    labels = np.array([label_to_index(v) for v in rows["label"]], dtype=int)
    paths = [Path(p) for p in rows["path"]]
    if with_groups:
        return paths, labels, rows["group"].astype(str).to_numpy()
    return paths, labels


def collect_context(image_paths: Sequence[str | os.PathLike[str]], names: Sequence[str]) -> np.ndarray:
    """(N, K) context (``vision.context``) of each face-crop image, as the service sees a crop
    sent as given: the file's own size and JPEG grid, the 224 px crop's pixels. NaN rows when unreadable."""
    out = np.full((len(image_paths), len(names)), np.nan, dtype=np.float64)
    if not names:
        return out
    check_names(names)
    for i, path in enumerate(image_paths):
        image = read_rgb(path)
        if image is not None:
            out[i] = image_context(image, names)
    return out


def image_context(image: np.ndarray, names: Sequence[str]) -> np.ndarray:
    """(K,) named context of one face-crop image used whole (see :func:`read_crop`)."""
    crop = whole_image_crop(image, size=CROP_SIZE)
    return context_matrix([face_context(crop.crop, box=crop.box, source=image)], names)[0]


def read_rgb(path: str | os.PathLike[str]) -> np.ndarray | None:
    """An image file as RGB uint8 (the serving decoder), or None when it cannot be decoded."""
    try:
        return read_image(path)
    except ImageError:
        return None


def read_crop(path: str | os.PathLike[str]) -> np.ndarray | None:
    """A face-crop image file as the batch/evaluate face stage hands it to the agents: decoded,
    then used whole at 224 x 224 (`vision.faces.whole_image_crop`); None when undecodable.

    So a controller is fitted on the pixels it will be served (an image of another size is
    resized to the crop first, then by each agent's contract, exactly as at serving time).
    """
    image = read_rgb(path)
    return None if image is None else whole_image_crop(image, size=CROP_SIZE).crop


def cache_key(bundle: Bundle, agents: Sequence[str], paths: Sequence[Path], *, salt: str = "") -> str:
    """Hash of what the votes depend on: each agent's model sha, input contract and temperature
    (not the whole manifest, so saving a controller into the bundle keeps the cache valid), and
    every file's path, size and mtime; ``salt`` names anything else they depend on (how faces
    are cut out)."""
    h = hashlib.sha256(salt.encode())
    for name in agents:
        info = bundle.agent(name)
        h.update(f"{name}\0{info.sha256}\0{info.preprocessing.to_dict()}\0{info.temperature!r}\n".encode())
    for path in paths:
        try:
            st = os.stat(path)
            h.update(f"{os.fspath(path)}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
        except OSError:
            h.update(f"{os.fspath(path)}\0missing\n".encode())
    return h.hexdigest()[:24]


def collect_votes(
    bundle: Bundle | str | os.PathLike[str] | None,
    image_paths: Sequence[str | os.PathLike[str]],
    *,
    batch_size: int = 64,
    progress: bool = True,
    agents: Sequence[str] | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    use_cache: bool = True,
) -> np.ndarray:
    """Calibrated p_fake of every agent for every image.

    Args:
        bundle: a loaded bundle, a bundle directory, or None for the shipped default.
        image_paths: face-crop image files (any size: each is used whole, as `read_crop` says).
        batch_size: images read and predicted together.
        progress: show a tqdm bar.
        agents: subset/order of agents (default: all of the bundle's, in bundle order).
        cache_dir: folder for the .npz cache (default :func:`default_cache_dir`).
        use_cache: read and write the cache.

    Returns:
        float64 array (N, A), columns in ``agents`` order; rows of unreadable images are NaN
        (a warning names them), so callers can drop them.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, received {batch_size}.")
    bundle = bundle if isinstance(bundle, Bundle) else load_bundle(bundle)
    agents = list(agents) if agents is not None else bundle.agent_names
    for name in agents:
        bundle.agent(name)  # raises naming the bundle's agents when unknown
    paths = [Path(p) for p in image_paths]
    cache_file = None
    if use_cache:
        folder = Path(cache_dir) if cache_dir is not None else default_cache_dir()
        cache_file = folder / f"votes-{cache_key(bundle, agents, paths, salt=CROP_SALT)}.npz"
        if cache_file.is_file():
            with np.load(cache_file, allow_pickle=False) as cached:
                if list(cached["agents"]) == agents and len(cached["votes"]) == len(paths):
                    return np.asarray(cached["votes"], dtype=np.float64)
    votes = np.full((len(paths), len(agents)), np.nan, dtype=np.float64)
    predictors = [AgentPredictor(bundle, name, batch_size=batch_size) for name in agents]
    unreadable: list[str] = []
    bar = tqdm(total=len(paths), desc="votes", unit="img", disable=not progress)
    for start in range(0, len(paths), batch_size):
        chunk = paths[start:start + batch_size]
        images, rows = [], []
        for offset, path in enumerate(chunk):
            image = read_crop(path)
            if image is None:
                unreadable.append(os.fspath(path))
                continue
            images.append(image)
            rows.append(start + offset)
        if images:
            for col, predictor in enumerate(predictors):
                votes[rows, col] = predictor.predict_p_fake(images)
        bar.update(len(chunk))
    bar.close()
    if unreadable:
        shown = ", ".join(unreadable[:3]) + (" ..." if len(unreadable) > 3 else "")
        warnings.warn(f"{len(unreadable)} image(s) could not be read and got no votes: {shown}", stacklevel=2)
    if cache_file is not None:
        _save_cache(cache_file, votes=votes, agents=agents, paths=paths, bundle_version=bundle.version)
    return votes


def _save_cache(path: Path, *, votes: np.ndarray, agents: list[str], paths: list[Path], bundle_version: str) -> None:
    """Writes the cache atomically; a failure to cache is not a failure to vote."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, lambda tmp: np.savez(tmp, votes=votes, agents=np.array(agents),
                                                paths=np.array([os.fspath(p) for p in paths]),
                                                bundle_version=np.array(bundle_version)))
    except OSError as err:
        warnings.warn(f"Could not write the vote cache {path}: {err}", stacklevel=3)


def load_scored(path: Path, *, agents: Sequence[str], n: int) -> dict[str, np.ndarray] | None:
    """An evaluation's cached per-image results (see :func:`save_scored`), or None when absent or stale."""
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
    """Caches an evaluation's per-image results: votes (N, A), face status and reason, context (N, K)."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, lambda tmp: np.savez(
            tmp, agents=np.array(list(agents)), votes=np.asarray(votes, dtype=np.float64),
            status=np.array(list(status), dtype=str), reason=np.array(list(reason), dtype=str),
            context=np.asarray(context, dtype=np.float64), paths=np.array(list(paths), dtype=str)))
    except OSError as err:
        warnings.warn(f"Could not write the vote cache {path}: {err}", stacklevel=2)
