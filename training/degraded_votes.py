"""Votes and context on screenshot-like copies of val faces, for fitting a context controller.

Each image gets ``copies`` degraded copies, each made by :func:`vision.degrade.random_chain`
(one to three re-encodes, resizes, blurs, tone changes) drawn from a generator seeded by
``seed`` and the image's position, so a rerun makes the same pixels. Every copy is used whole,
as a crop sent as given (the file's size after the chain is the face size; its JPEG grid is
the chain's), and keeps the source image's label and group, so group-aware splits never put a
copy and its source on both sides. Results are cached beside the clean votes.

With ``detected=True`` a chain may also place the face in a whole screen (a player or phone
screenshot), and every copy then reaches the agents as serving's face stage would hand it over
(`vision.faces.extract_faces`, mode "auto": a crop-shaped copy used whole, a screen searched and
its face aligned), with that face's own size, box and "detected" flag as context. Those rows
show a controller faces at the sizes people's pictures have them, not only rescaled crops.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
from tqdm import tqdm

from agents.atomic import atomic_write
from agents.bundle import Bundle, load_bundle
from agents.predictor import AgentPredictor
from vision.faces import whole_image_crop
from blackboard.stage_rows import CROP_SIZE
from training.degrade_eval import registry_fingerprint
from training.vote_cache import cache_key, default_cache_dir
from training.votes import read_rgb
from vision import degrade
from vision.context import CONTEXT_NAMES, context_matrix, face_context
from vision.degrade import random_chain

SALT = "degraded-random-chain-v1"
DETECTED_SALT = "detected-random-chain-v1"


def degraded_copy(image: np.ndarray, *, seed: int, index: int, copy: int, compositions: bool = False) -> np.ndarray:
    """The ``copy``-th screenshot-like copy of image number ``index`` (deterministic).

    ``compositions`` lets the chain put the picture in a whole screen (then detect the face again).
    """
    rng = np.random.default_rng([seed, index, copy])
    return random_chain(rng, compositions=compositions)(image)


def served_face(copy: np.ndarray, detector) -> tuple[np.ndarray, tuple, bool] | None:
    """(crop, box, aligned) of the most confident face serving would cut from ``copy`` with
    detection "auto", or None when it finds none."""
    from vision.faces import extract_faces

    faces = extract_faces(copy, detector, mode="auto", all_faces=False, size=CROP_SIZE)
    if not faces:
        return None
    return faces[0].crop, tuple(float(v) for v in faces[0].box), bool(faces[0].aligned)


def _predictors(bundle: Bundle | str | os.PathLike[str] | None,
                batch_size: int) -> tuple[Bundle, list[AgentPredictor]]:
    """The loaded bundle and a predictor per agent, in the bundle's agent order."""
    bundle = bundle if isinstance(bundle, Bundle) else load_bundle(bundle)
    return bundle, [AgentPredictor(bundle, name, batch_size=batch_size) for name in bundle.agent_names]


def _readable_batches(paths: Sequence[str | os.PathLike[str]],
                      per_batch: int) -> Iterator[tuple[int, list[tuple[int, np.ndarray]]]]:
    """``paths`` in batches of ``per_batch``: (paths in the batch, (index, RGB image) of each one
    that reads; an unreadable file is left out, its rows stay NaN)."""
    for start in range(0, len(paths), per_batch):
        indices = range(start, min(start + per_batch, len(paths)))
        images = [(index, read_rgb(paths[index])) for index in indices]
        yield len(indices), [(index, image) for index, image in images if image is not None]


def collect_degraded(bundle: Bundle | str | os.PathLike[str] | None, image_paths: Sequence[str | os.PathLike[str]],
                     *, copies: int = 1, seed: int = 0, batch_size: int = 64, progress: bool = True,
                     cache_dir: str | os.PathLike[str] | None = None,
                     use_cache: bool = True, detected: bool = False) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Votes and context of ``copies`` degraded copies of every image.

    Args:
        bundle: a loaded bundle, a bundle directory, or None for the shipped default.
        image_paths: face-crop image files.
        copies: degraded copies per image.
        seed: seeds every chain (with the image's position and the copy number).
        batch_size: images predicted together.
        progress: show a tqdm bar.
        cache_dir: folder of the .npz cache (default the vote cache's).
        use_cache: read and write the cache.
        detected: chains may compose a screen, and each copy's face is found as serving finds
            it (see the module's docstring).

    Returns:
        (votes (N * copies, A) in bundle agent order, context (N * copies, len(CONTEXT_NAMES)),
        source (N * copies,) index of each copy's image). Rows of unreadable images, and with
        ``detected`` copies in which no face is found, are NaN.
    """
    if copies < 1:
        raise ValueError(f"copies must be >= 1, received {copies}.")
    bundle, predictors = _predictors(bundle, batch_size)
    agents = bundle.agent_names
    paths = [Path(p) for p in image_paths]
    source = np.repeat(np.arange(len(paths)), copies)
    cache_file = None
    if use_cache:
        folder = Path(cache_dir) if cache_dir is not None else default_cache_dir()
        # The registry's code is in the key: a change to how copies are made makes new votes.
        salt = f"{DETECTED_SALT if detected else SALT}-{copies}-{seed}-{registry_fingerprint(degrade)}"
        key = cache_key(bundle, agents, paths, salt=salt)
        cache_file = folder / f"degraded-{key}.npz"
        if cache_file.is_file():
            with np.load(cache_file, allow_pickle=False) as cached:
                if list(cached["agents"]) == agents and list(cached["context_names"]) == list(CONTEXT_NAMES):
                    return np.asarray(cached["votes"]), np.asarray(cached["context"]), source
    votes = np.full((len(source), len(agents)), np.nan)
    context = np.full((len(source), len(CONTEXT_NAMES)), np.nan)
    detector = None
    if detected:
        from vision.face_detector import FaceDetector

        detector = FaceDetector()  # serving's settings
    bar = tqdm(total=len(paths), desc="degraded votes", unit="img", disable=not progress)
    for batch_len, images in _readable_batches(paths, max(1, batch_size // copies)):
        crops, rows = [], []
        for index, image in images:
            for c in range(copies):
                copy = degraded_copy(image, seed=seed, index=index, copy=c, compositions=detected)
                if detected:
                    face = served_face(copy, detector)
                    if face is None:
                        continue  # serving would answer "no face": no votes to learn from
                    crop, box, aligned = face
                else:
                    whole = whole_image_crop(copy, size=CROP_SIZE)
                    crop, box, aligned = whole.crop, whole.box, False
                row = index * copies + c
                context[row] = context_matrix([face_context(crop, box=box, source=copy, detected=aligned)],
                                              CONTEXT_NAMES)[0]
                crops.append(crop)
                rows.append(row)
        if crops:
            for col, predictor in enumerate(predictors):
                votes[rows, col] = predictor.predict_p_fake(crops)
        bar.update(batch_len)
    bar.close()
    if cache_file is not None:
        try:
            cache_file.parent.mkdir(parents=True, exist_ok=True)
            atomic_write(cache_file, lambda tmp: np.savez(tmp, votes=votes, context=context, agents=np.array(agents),
                                                          context_names=np.array(CONTEXT_NAMES)))
        except OSError:
            pass  # a failure to cache is not a failure to vote
    return votes, context, source


def collect_copy_votes(bundle: Bundle | str | os.PathLike[str] | None, image_paths: Sequence[str | os.PathLike[str]],
                       names: Sequence[str], *, batch_size: int = 64) -> np.ndarray:
    """(C, N, A) votes on the degraded-copy check's copies (``blackboard.fragile``) of each image's
    crop, to fit the check's margin; NaN for unreadable images. Not cached: replay rows are few."""
    from blackboard.fragile import make_copies

    _, predictors = _predictors(bundle, batch_size)
    out = np.full((len(names), len(image_paths), len(predictors)), np.nan)
    for _, images in _readable_batches(image_paths, max(1, batch_size // len(names))):
        if not images:
            continue
        rows = [index for index, _ in images]
        crops = [whole_image_crop(image, size=CROP_SIZE).crop for _, image in images]
        copies = make_copies(crops, names)  # copy-major
        for col, predictor in enumerate(predictors):
            p = predictor.predict_p_fake(copies).reshape(len(names), len(crops))
            out[:, rows, col] = p
    return out
