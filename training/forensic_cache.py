"""The forensic agent's features per training image, through the serving path, cached on disk.

Each image (or a seeded screenshot-like copy of it: degraded whole, cut as serving cuts a
detected face, or composed into a whole screen whose face serving's detector finds) is decoded,
brought to the agent's contract and turned into its features exactly as serving does
(`agents.forensic_features.image_features`), then kept in ``.npz`` shards keyed by path and copy,
so an interrupted extraction resumes and other runs on the same files reuse it.
"""

from __future__ import annotations

import hashlib
import os
import threading
import zlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from tqdm import tqdm

from agents.forensic_features import FEATURE_VERSION, N_FEATURES, image_features
from agents.preprocessing import Preprocessing, prepare_image
from vision import degrade
from vision.degrade import random_chain
from vision.media import read_image
from training.degrade_eval import registry_fingerprint
from training.pipeline_crops import detector_settings_tag, pipeline_crop
from training.shards import read_shards, write_shard

# Images per cache shard: the work lost to an interruption is at most one shard per worker.
SHARD_SIZE = 512


# The copy number whose seed draws an image's composed-screen copy (apart from the plain copies').
DETECTED_COPY = 1000


def crop_features(path: str | os.PathLike[str], contract: Preprocessing, degrade_seed: int | None = None,
                  landmarks: tuple[np.ndarray, tuple[int, int]] | None = None, detector: Any = None) -> np.ndarray:
    """Features of one image file through the serving path (decode, contract, features).

    With ``degrade_seed``, the decoded image first goes through the random degradation chain
    that seed draws (`vision.degrade.random_chain`), as a screenshot of it would. With
    ``landmarks`` (found in the clean image, and its height and width), the face is then cut as
    serving cuts a detected face (`training.pipeline_crops.pipeline_crop`). With ``detector``
    the chain always composes a whole screen and the face is found in it as serving finds it
    (all features NaN when none is found).
    """
    if detector is not None and degrade_seed is None:
        raise ValueError("A composed-screen copy (a detector given) needs its degrade_seed, received None: "
                         "unseeded, its pixels would differ in every run while the cache keeps the first.")
    image = read_image(path)
    if detector is not None:
        from training.degraded_votes import served_face  # imports the bundle code only when needed

        screen = random_chain(np.random.default_rng(degrade_seed), compositions=True, composed_share=1.0)(image)
        face = served_face(screen, detector)
        if face is None:
            return np.full(N_FEATURES, np.nan, dtype=np.float32)
        return image_features(prepare_image(face[0], contract))
    if degrade_seed is not None:
        image = random_chain(np.random.default_rng(degrade_seed))(image)
    if landmarks is not None:
        image = pipeline_crop(image, landmarks[0], landmarks[1])
    return image_features(prepare_image(image, contract))


def degrade_seed(path: str, copy: int, seed: int) -> int:
    """A stable seed for the ``copy``-th degraded version of ``path`` (the same in every run).

    Only the file's last three path parts (e.g. ``dfdc/real/x.jpg``) count, so every checkout
    that resolves a manifest's relative paths from elsewhere draws the same copies.
    """
    name = "/".join(Path(os.path.normpath(str(path))).parts[-3:])
    return zlib.crc32(f"{seed}:{copy}:{name}".encode()) & 0x7FFFFFFF


def chain_tag() -> str:
    """A digest of the degradation chains' code (`vision.degrade`): what a seeded copy's pixels
    depend on besides its seed, so a change to a transform computes its copies' features again."""
    return hashlib.sha256(registry_fingerprint(degrade).encode()).hexdigest()[:8]


def cache_key(path: str, seed: int | None, aligned: bool = False, detected: bool = False, *,
              detector_tag: str | None = None, chain: str | None = None) -> str:
    """The feature cache's key of an image file, or of one degraded (aligned, or composed and
    detected) version of it. A degraded copy's key names the chains' code (``chain``, by default
    :func:`chain_tag`); a detected copy's also the detector's settings (what it found depends on
    them: ``detector_tag``, by default `training.pipeline_crops.detector_settings_tag`)."""
    key = str(path) if seed is None else f"{path}::degraded-{seed}-{chain or chain_tag()}"
    if detected:
        return f"{key}::detected-{detector_tag or detector_settings_tag()}"
    return f"{key}::aligned" if aligned else key


class FeatureCache:
    """Forensic features per image path, kept in ``.npz`` shards in one directory.

    Args:
        directory: the cache directory (one per feature version and contract size).
        contract: the preprocessing contract the features are computed under.
    """

    def __init__(self, directory: str | os.PathLike[str], contract: Preprocessing) -> None:
        self.directory = Path(directory)
        self.contract = contract
        self._index: dict[str, np.ndarray] = {}
        for shard_paths, arrays in read_shards(self.directory):
            features = arrays.get("features")
            if features is None or features.shape[1:] != (N_FEATURES,):
                continue  # a shard of other features: ignored, recomputed
            self._index.update(zip(shard_paths, features))

    @classmethod
    def for_work_dir(cls, work_dir: str | os.PathLike[str], contract: Preprocessing) -> "FeatureCache":
        """The cache of a training work directory for this feature version and contract."""
        name = f"forensic-v{FEATURE_VERSION}-{contract.height}x{contract.width}"
        return cls(Path(work_dir) / "cache" / name, contract)

    def __len__(self) -> int:
        return len(self._index)

    def _write_shard(self, paths: Sequence[str], features: np.ndarray) -> None:
        write_shard(self.directory, paths, features=features)

    def features(self, paths: Sequence[str], *, degrade_seeds: Sequence[int | None] | None = None,
                 landmarks: Sequence[tuple[np.ndarray, tuple[int, int]] | None] | None = None,
                 detected: Sequence[bool] | None = None, workers: int = 2, verbose: bool = True) -> np.ndarray:
        """The ``(N, N_FEATURES)`` float32 features of ``paths``, computing and caching missing ones.

        Args:
            paths: image files.
            degrade_seeds: per path, None for the clean image or the seed of its degradation chain.
            landmarks: per path, None to use the image whole, or the clean image's landmarks and
                shape to cut the face as serving does (`training.pipeline_crops`).
            detected: per path, whether its degraded version is a composed screen whose face
                serving's detector finds (features NaN where it finds none).
            workers: threads (OpenCV and FFmpeg release the GIL).
            verbose: show a progress bar.
        """
        paths = [str(p) for p in paths]
        seeds = [None] * len(paths) if degrade_seeds is None else list(degrade_seeds)
        marks = [None] * len(paths) if landmarks is None else list(landmarks)
        found = [False] * len(paths) if detected is None else [bool(d) for d in detected]
        if len(seeds) != len(paths) or len(marks) != len(paths) or len(found) != len(paths):
            raise ValueError(f"{len(seeds)} degrade seeds, {len(marks)} landmarks and {len(found)} detected flags "
                             f"for {len(paths)} paths.")
        unseeded = [p for p, s, d in zip(paths, seeds, found) if d and s is None]
        if unseeded:
            raise ValueError(f"{len(unseeded)} composed-screen copies without a degrade seed (first: {unseeded[0]}); "
                             "each detected copy needs the seed that draws its screen.")
        tag, chain = detector_settings_tag(), chain_tag()
        keys = [cache_key(p, s, m is not None, d, detector_tag=tag, chain=chain)
                for p, s, m, d in zip(paths, seeds, marks, found)]
        todo = {k: (p, s, m, d) for k, p, s, m, d in zip(keys, paths, seeds, marks, found) if k not in self._index}
        missing = list(todo.items())
        local = threading.local()  # one face detector per worker thread, made on first need

        def detector_for(needed: bool) -> Any:
            if not needed:
                return None
            if getattr(local, "detector", None) is None:
                from vision.face_detector import FaceDetector

                local.detector = FaceDetector()  # serving's settings
            return local.detector

        if missing:
            chunks = [missing[i:i + SHARD_SIZE] for i in range(0, len(missing), SHARD_SIZE)]

            def one_chunk(chunk: list[tuple[str, tuple[str, int | None, Any, bool]]]) -> int:
                feats = np.stack([crop_features(p, self.contract, s, m, detector_for(d))
                                  for _, (p, s, m, d) in chunk])
                self._write_shard([k for k, _ in chunk], feats)
                self._index.update(zip((k for k, _ in chunk), feats))
                return len(chunk)

            with ThreadPoolExecutor(max_workers=max(1, workers)) as pool, \
                    tqdm(total=len(missing), disable=not verbose, unit="img",
                         desc=f"forensic features ({len(keys) - len(missing)} cached)") as bar:
                for done in pool.map(one_chunk, chunks):
                    bar.update(done)
        if not keys:
            return np.zeros((0, N_FEATURES), dtype=np.float32)
        return np.stack([self._index[k] for k in keys]).astype(np.float32)
