"""Every agent's calibrated p_fake for a list of face-crop images (the controller's training data).

`fakeface fit-controller` needs the (N, A) vote matrix of a manifest split. Its images go through
the stages every other path runs, so "image -> face -> votes" is written once: the face stage
(`blackboard.face_stage`, each image used whole as one 224 px crop: ``detect="off"``, as the
manifests `fakeface dataset` writes hold face crops) and then every agent
(`blackboard.agent_stages`). They run in this process (`blackboard.local_stages`, as a small
`fakeface batch` job does), or on Ray Data when a cluster is named (``--ray-address``, or
``$RAY_ADDRESS`` inside a Ray Job). Either way the blocks are consecutive chunks of
``batch_size`` images, so each agent's forward passes hold the same faces whichever runs them.

The results are kept in the one vote cache (`training.vote_cache`, as `fakeface evaluate` keeps
its own): a second run on the same split and bundle reads the cache instead of predicting again.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
import pandas as pd
from tqdm import tqdm

from agents.bundle import Bundle, load_bundle
from agents.labels import label_to_index
from blackboard.stage_rows import CROP_SIZE, OK, REJECTED, context_column
from training.dataset import read_manifest
from training.vote_cache import cache_file, cache_key, default_cache_dir, load_scored, save_scored
from vision.context import CONTEXT_NAMES, check_names, context_matrix, face_context
from vision.faces import whole_image_crop
from vision.media import ImageError, read_image

# Every image of a fitting manifest is a face crop: used whole, never searched for faces.
FIT_DETECT = "off"
# In the cache key: how these votes were made (the stages, whole crops of CROP_SIZE, one per image).
CACHE_SALT = f"fit-stages-v1\0detect={FIT_DETECT}\0crop={CROP_SIZE}\0{','.join(CONTEXT_NAMES)}"


def split_rows(frame: pd.DataFrame, split: str, *, where: str) -> pd.DataFrame:
    """The rows of one split of a manifest frame; ValueError naming the splits it has (``where``:
    the manifest, as the message names it) when that one has no rows."""
    rows = frame[frame["split"].astype(str) == split]
    if rows.empty:
        splits = sorted(frame["split"].astype(str).unique())
        raise ValueError(f"{where} has no rows in split {split!r}; its splits are {splits}.")
    return rows


def read_manifest_split(manifest: str | os.PathLike[str], split: str, *,
                        with_groups: bool = False) -> tuple[list[Path], np.ndarray] | tuple[list[Path], np.ndarray, np.ndarray]:
    """Image paths and 0/1 labels (and, with ``with_groups``, source groups) of one manifest split.

    Raises:
        ValueError: the manifest is missing or malformed (see read_manifest), or the split is empty.
    """
    rows = split_rows(read_manifest(manifest), split, where=f"Manifest {manifest}")
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


def stage_votes(bundle: Bundle, paths: Sequence[Path], agents: Sequence[str], *, batch_size: int,
                progress: bool = False, ray_address: str | None = None) -> pd.DataFrame:
    """Runs the face and agent stages over ``paths``, one whole-image crop each.

    Args:
        bundle: the loaded bundle whose agents vote.
        paths: image files.
        agents: the agents to run, in column order.
        batch_size: images per block, and per forward pass of each agent.
        progress: show a tqdm bar.
        ray_address: a Ray cluster to run on ("local": a new local Ray); None runs in this process
            unless ``$RAY_ADDRESS`` names one.

    Returns:
        One row per path, in order: ``status`` (`blackboard.stage_rows`), ``reason``, the face
        stage's ``ctx_*`` context and ``{agent}_p_fake`` (NaN unless the status is OK).
    """
    items = [{"source": os.fspath(p), "input_index": i, "shard": 0} for i, p in enumerate(paths)]
    keep = ("input_index", "status", "reason", *map(context_column, CONTEXT_NAMES),
            *(f"{a}_p_fake" for a in agents))
    on_ray = bool(ray_address or os.environ.get("RAY_ADDRESS"))
    run = _on_ray if on_ray else _in_process
    parts = []
    with tqdm(total=len(items), desc="votes", unit="img", disable=not progress) as bar:
        for part in run(items, bundle=bundle, agents=tuple(agents), batch_size=batch_size, keep=keep,
                        ray_address=ray_address):
            parts.append(part[list(keep)])
            bar.update(len(part))
    rows = pd.concat(parts, ignore_index=True).drop_duplicates("input_index").set_index("input_index").sort_index()
    if len(rows) != len(items):
        raise RuntimeError(f"{len(items) - len(rows)} of {len(items)} images came back from the stages without a row.")
    return rows.reset_index(drop=True)


def _in_process(items: list[dict[str, Any]], *, bundle: Bundle, agents: tuple[str, ...], batch_size: int,
                keep: tuple[str, ...], ray_address: str | None) -> Iterator[pd.DataFrame]:
    """The stages in this process (`blackboard.local_stages`), one block of ``batch_size`` after another."""
    from blackboard.local_stages import local_cpus, run_stages
    from blackboard.stage_plan import plan_stages

    plan = plan_stages(local_cpus(), bundle=str(bundle.path), agents=agents, detect=FIT_DETECT, all_faces=False,
                       batch_size=batch_size, max_agent_sets=1, keep=keep)
    yield from run_stages(items, plan, block_size=batch_size)


def _on_ray(items: list[dict[str, Any]], *, bundle: Bundle, agents: tuple[str, ...], batch_size: int,
            keep: tuple[str, ...], ray_address: str | None) -> Iterator[pd.DataFrame]:
    """The stages on Ray Data (`blackboard.stage_plan`), the blocks cut as :func:`_in_process` cuts them."""
    import ray
    import ray.data

    from blackboard.ray_runtime import init_ray
    from blackboard.stage_plan import add_stages, node_cpus, plan_stages, ray_data_output

    own_ray = init_ray(ray_address)  # loopback-only and token-authenticated when local
    try:
        ray_data_output(False)  # our one bar, not Ray Data's
        # One DataFrame per block: the blocks hold the same consecutive images as in process.
        blocks = [pd.DataFrame(items[i:i + batch_size]) for i in range(0, len(items), batch_size)]
        plan = plan_stages(node_cpus(), bundle=str(bundle.path), agents=agents, detect=FIT_DETECT,
                           all_faces=False, batch_size=batch_size, max_agent_sets=len(blocks), keep=keep)
        ds = add_stages(ray.data.from_pandas(blocks), plan)
        yield from ds.iter_batches(batch_size=None, batch_format="pandas")
    finally:
        if own_ray:
            ray.shutdown()


def collect_votes(
    bundle: Bundle | str | os.PathLike[str] | None,
    image_paths: Sequence[str | os.PathLike[str]],
    *,
    batch_size: int = 64,
    progress: bool = True,
    agents: Sequence[str] | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    use_cache: bool = True,
    ray_address: str | None = None,
) -> np.ndarray:
    """Calibrated p_fake of every agent for every image, from the shared stages (:func:`stage_votes`).

    Args:
        bundle: a loaded bundle, a bundle directory, or None for the shipped default.
        image_paths: face-crop image files (any size: each is used whole, as `read_crop` says).
        batch_size: images read and predicted together.
        progress: show a tqdm bar.
        agents: subset/order of agents (default: all of the bundle's, in bundle order).
        cache_dir: folder of the vote cache (default `training.vote_cache.default_cache_dir`).
        use_cache: read and write the cache.
        ray_address: run the stages on this Ray cluster (see :func:`stage_votes`).

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
    file = None
    if use_cache:
        folder = Path(cache_dir) if cache_dir is not None else default_cache_dir()
        file = cache_file(folder, cache_key(bundle, agents, paths, salt=CACHE_SALT))
        cached = load_scored(file, agents=agents, n=len(paths))
        if cached is not None:
            return np.where((cached["status"] == OK)[:, None], np.asarray(cached["votes"], dtype=np.float64), np.nan)
    rows = stage_votes(bundle, paths, agents, batch_size=batch_size, progress=progress, ray_address=ray_address)
    status = rows["status"].to_numpy(dtype=str)
    votes = np.where((status == OK)[:, None], rows[[f"{a}_p_fake" for a in agents]].to_numpy(np.float64), np.nan)
    unreadable = [os.fspath(paths[i]) for i in np.flatnonzero(status == REJECTED)]
    if unreadable:
        shown = ", ".join(unreadable[:3]) + (" ..." if len(unreadable) > 3 else "")
        warnings.warn(f"{len(unreadable)} image(s) could not be read and got no votes: {shown}", stacklevel=2)
    if file is not None:
        save_scored(file, agents=agents, votes=votes, status=status.tolist(), reason=rows["reason"].astype(str).tolist(),
                    context=rows[[context_column(n) for n in CONTEXT_NAMES]].to_numpy(np.float64),
                    paths=[os.fspath(p) for p in paths])
    return votes
