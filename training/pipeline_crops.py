"""Training copies of a face cut the way serving cuts it: MTCNN landmarks, then alignment.

The data sets hold face crops made by someone else's detector and margin. A face that a person
sends inside a photo or a screenshot reaches the agents differently: `vision.face_detector`
finds its five landmarks and `vision.alignment.align_face` warps it onto the template. Measured
on 117 dfdc-test faces with the shipped bundle, the same faces cut the serving way instead of
used whole lose 0.12 ensemble AUC (0.816 → 0.698) and move p_fake by 0.10 (median): agents that
only ever saw the data set's framing read the change of framing as evidence.

With ``TrainConfig.aligned_copies`` the forensic agent's first degraded copies are cut this way: the
landmarks are found once on the clean image (cached in ``OUT.work/cache/landmarks-<tag>/``, the
tag a digest of the detector's default settings, `detector_settings_tag`), the
degradation chain runs on the whole image (as a screenshot degrades the frame before anyone
crops it), and the copy is aligned from the landmarks scaled to the degraded image's size.
An image in which the detector finds no face keeps its whole-image copy, as
`vision.faces.extract_faces` uses such an image whole.
"""

from __future__ import annotations

import dataclasses
import hashlib
import inspect
import json
import os
from pathlib import Path
from typing import Sequence

import numpy as np
from tqdm import tqdm

from agents.preprocessing import Preprocessing, resize_rgb
from training.shards import read_shards, write_shard
from vision.alignment import align_face
from vision.media import read_image

# Images per landmark shard: an interruption loses at most one shard of detections.
SHARD_SIZE = 256


def pipeline_crop(image: np.ndarray, landmarks: np.ndarray | None, source_shape: Sequence[int]) -> np.ndarray:
    """The face of ``image`` aligned as serving aligns it, or ``image`` itself when no face was found.

    Args:
        image: RGB uint8 image, possibly a resized (degraded) copy of the image the landmarks
            were found in.
        landmarks: (5, 2) landmarks found in the source image, or None / NaN when none were.
        source_shape: (height, width, ...) of the image the landmarks were found in.
    """
    if landmarks is None or not np.all(np.isfinite(landmarks)):
        return image
    height, width = int(source_shape[0]), int(source_shape[1])
    if height < 1 or width < 1:
        raise ValueError(f"source_shape must have a positive height and width, received {tuple(source_shape)}.")
    scale = np.array([image.shape[1] / width, image.shape[0] / height], dtype=np.float64)
    return align_face(image, np.asarray(landmarks, dtype=np.float64) * scale)


def detector_settings_tag() -> str:
    """A short digest of the settings ``FaceDetector()`` finds faces with (its defaults).

    What serving's detector found is cached (landmarks here, the forensic agent's composed
    screens in `training.forensic_cache`); the tag in their names makes a change of the
    detector's defaults find faces again rather than read what the old settings found.
    """
    import vision.face_detector as fd

    defaults = {name: p.default for name, p in inspect.signature(fd.FaceDetector.__init__).parameters.items()
                if p.default is not inspect.Parameter.empty}
    settings = {**defaults, "first_pass": defaults.get("first_pass") or fd.FIRST_PASS,
                "gate": dataclasses.asdict(fd.FaceGate()), "box_share": fd.BOX_SHARE,
                "verify": (fd.VERIFY_SIZE, fd.VERIFY_MIN_FACE)}
    return hashlib.sha1(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()[:8]


class LandmarkCache:
    """The most confident face's landmarks per image file, found once and kept in ``.npz`` shards.

    Args:
        directory: where the shards live (shared by every run with the same work directory).
    """

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.directory = Path(directory)
        self._index: dict[str, tuple[np.ndarray, tuple[int, int]]] = {}
        for shard_paths, arrays in read_shards(self.directory):
            if "landmarks" not in arrays or "shapes" not in arrays:
                continue  # not a landmark shard: ignored, found again
            for path, points, shape in zip(shard_paths, arrays["landmarks"], arrays["shapes"]):
                self._index[path] = (points, (int(shape[0]), int(shape[1])))

    @classmethod
    def for_work_dir(cls, work_dir: str | os.PathLike[str]) -> "LandmarkCache":
        """The landmark cache of a training work directory, for the detector's present settings."""
        return cls(Path(work_dir) / "cache" / f"landmarks-{detector_settings_tag()}")

    def __len__(self) -> int:
        return len(self._index)

    def _write_shard(self, paths: list[str], points: np.ndarray, shapes: np.ndarray) -> None:
        write_shard(self.directory, paths, landmarks=points, shapes=shapes)

    def landmarks(self, paths: Sequence[str], *, verbose: bool = True
                  ) -> dict[str, tuple[np.ndarray, tuple[int, int]]]:
        """``{path: ((5, 2) landmarks or NaNs, (height, width))}``, detecting the missing ones.

        The detector (MTCNN, loaded only when something is missing) runs with serving's
        settings, so the landmarks are the ones serving would find on the clean image.
        """
        paths = list(dict.fromkeys(str(p) for p in paths))
        missing = [p for p in paths if p not in self._index]
        if missing:
            from vision.face_detector import FaceDetector

            detector = FaceDetector()
            for start in tqdm(range(0, len(missing), SHARD_SIZE), disable=not verbose, unit="shard",
                              desc=f"landmarks ({len(paths) - len(missing)} cached, {len(missing)} to find)"):
                chunk = missing[start:start + SHARD_SIZE]
                points = np.full((len(chunk), 5, 2), np.nan, dtype=np.float32)
                shapes = np.zeros((len(chunk), 2), dtype=np.int32)
                for i, path in enumerate(chunk):
                    image = read_image(path)
                    shapes[i] = image.shape[:2]
                    faces = detector.detect(image)
                    if faces and faces[0].landmarks is not None:
                        points[i] = np.asarray(faces[0].landmarks, dtype=np.float32)
                self._write_shard(chunk, points, shapes)
                self._index.update((p, (pt, (int(s[0]), int(s[1])))) for p, pt, s in zip(chunk, points, shapes))
        return {p: self._index[p] for p in paths}


def cut_cache(
    paths: Sequence[str],
    contract: Preprocessing,
    cache_path: str | os.PathLike[str],
    landmarks: LandmarkCache,
    *,
    verbose: bool = True,
) -> np.ndarray:
    """Every image cut as serving cuts its face, resized to the contract's size: (N, H, W, 3) uint8.

    The counterpart of `training.data.resized_cache` for the serving framing: a CNN that trains
    on both sees the framing change between a data set's crop and a detected face as what it is,
    not as evidence. Images without a found face stay whole (as serving uses them). Stored like
    `resized_cache` (a `.npy` written then renamed, with the listing that vouches for it).
    """
    from training.data import cached_array, cached_array_of  # here: training.data imports Keras

    kept = cached_array_of(paths, cache_path)
    if kept is not None:
        return kept  # a complete cache: no landmarks to find (a reused or resumed work folder)
    found = landmarks.landmarks(paths, verbose=verbose)

    def one(path: str) -> np.ndarray:
        points, shape = found[str(path)]
        return resize_rgb(pipeline_crop(read_image(path), points, shape), contract)

    return cached_array(paths, contract, cache_path, one, verbose=verbose, what="serving cuts of")
