"""`fakeface evaluate --degrade`: the evaluated images again, through each named transform.

The transforms are those of the screenshot benchmark (`vision.degrade`: JPEG, rescaling, blur,
gamma, an H.264 round trip, and the two compositions that paste the face into a whole desktop
player or phone screenshot). Degraded copies go through the same Ray Data stages as the clean
images: `DegradeStage` reads and transforms each image and hands the pixels to the face stage.

* A copy of a face crop stays a crop: it is scored whole whatever its size (a 2x upscale of a
  224 px crop is 448 px, which ``--detect auto`` would otherwise send to MTCNN).
* A composition is a whole screen, so its face is detected again (MTCNN), as for a user.
* Each copy's seed is fixed: SHA-256 of the image's path relative to the evaluated folder (or
  the manifest's folder) and the transform name (:func:`seed_for`), so reruns, other machines
  and other subsets give every image the same copy.
"""

from __future__ import annotations

import hashlib
import importlib
import inspect
import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np

CLEAN = ""  # the transform name of the clean rows
CLEAN_LABEL = "clean"  # and how tables name them
ALL = "all"
REGISTRY_MODULE = "vision.degrade"
# Bump when what a transform name means to the pipeline changes (seeds, crop rule), so cached
# votes of degraded copies made the old way are not reused.
SCHEME = "degrade-v1"
_EMPTY = np.zeros((0, 0, 3), dtype=np.uint8)  # "read the file as usual" for the face stage


class DegradeError(ValueError):
    """A bad ``--degrade`` value or a missing transform registry (printed as one line)."""


def load_registry(registry: Any = None) -> Any:
    """The transform registry: ``registry`` when given (tests), else the `vision.degrade` module.

    Raises:
        DegradeError: `vision.degrade` cannot be imported.
    """
    if registry is not None:
        return registry
    try:
        return importlib.import_module(REGISTRY_MODULE)
    except ImportError as err:
        raise DegradeError(f"--degrade needs the transforms of vision/degrade.py, which cannot be imported "
                           f"({err}); update the checkout or leave out --degrade.") from None


def resolve_transforms(spec: str, registry: Any) -> tuple[str, ...]:
    """The transform names asked for by ``--degrade`` ("all" or "NAME[,NAME...]"), in registry order.

    Raises:
        DegradeError: an empty list or an unknown name (the known ones are listed).
    """
    known = list(registry.names())
    asked = [part.strip() for part in spec.split(",") if part.strip()]
    if not asked:
        raise DegradeError(f"--degrade needs '{ALL}' or a comma-separated list of {known}.")
    if ALL in asked:
        return tuple(known)
    unknown = [name for name in asked if name not in known]
    if unknown:
        raise DegradeError(f"--degrade names unknown transform(s) {unknown}; known: {', '.join(known)} (or '{ALL}').")
    return tuple(name for name in known if name in asked)


def seed_for(key: str, name: str) -> int:
    """The seed of one image's copy under transform ``name``: 32 bits of SHA-256(key, name).

    Args:
        key: the image's path relative to the evaluated folder or the manifest's folder, with
            forward slashes (the same on every machine).
        name: the transform name.
    """
    return int.from_bytes(hashlib.sha256(f"{key}\0{name}".encode()).digest()[:4], "big")


def relative_key(path: str, root: Path) -> str:
    """``path`` relative to ``root`` with forward slashes, e.g. a manifest's own relative entry.

    Worked out on the paths as written (``..`` may lead out of ``root``), never through symbolic
    links: data reached through a link (``../shared``) keeps the same key in every checkout.
    """
    return Path(os.path.relpath(os.path.abspath(path), os.path.abspath(root))).as_posix()


def registry_fingerprint(registry: Any) -> str:
    """What the cached votes of degraded copies depend on: the registry's source code (or its name)."""
    try:
        source = inspect.getsource(inspect.getmodule(registry) or registry)
    except (OSError, TypeError):
        source = getattr(registry, "__name__", type(registry).__name__)
    return f"{SCHEME}\0{hashlib.sha256(source.encode()).hexdigest()[:16]}"


def copy_mode(name: str, original: np.ndarray, detect: str, registry: Any) -> str:
    """The face stage's detection mode for one degraded copy.

    Compositions are detected again ("on"); a copy of an image that ``--detect auto`` scores
    whole (a face crop) is scored whole too ("off"), whatever size the transform gave it; other
    copies keep the run's mode.
    """
    from vision.faces import CROP_TRUST_SIDE, looks_like_crop

    if registry.is_composition(name):
        return "on"
    if detect == "off" or (detect == "auto" and looks_like_crop(original, max_side=CROP_TRUST_SIDE)):
        return "off"
    return detect


class DegradeStage:
    """Ray Data stage before the face stage: adds each input's degraded pixels and detection mode.

    Rows with an empty ``transform`` (the clean images) and inputs that cannot be decoded get an
    empty image, so the face stage reads the file itself (and rejects it with its usual reason).

    Args:
        detect: the run's ``--detect`` mode.
        registry: the transform registry (None = `vision.degrade`, imported in the actor).
        threads: CPU threads this actor may use.
    """

    def __init__(self, *, detect: str, registry: Any = None, threads: int = 1) -> None:
        from blackboard.worker_threads import limit_threads

        limit_threads(threads)
        self.detect = detect
        self.registry = load_registry(registry)

    def _copy(self, path: str, name: str, seed: int) -> tuple[np.ndarray, str]:
        import cv2

        from vision.media import ImageError, read_image

        if not name:
            return _EMPTY, ""
        try:
            original = read_image(path)
        except (ImageError, OSError, cv2.error):
            return _EMPTY, ""
        image = np.ascontiguousarray(self.registry.apply(name, original, seed=int(seed)), dtype=np.uint8)
        return image, copy_mode(name, original, self.detect, self.registry)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        copies = [self._copy(str(p), str(n), int(s)) for p, n, s in zip(batch["source"], batch["transform"],
                                                                          batch["seed"])]
        out = dict(batch)
        images = np.empty(len(copies), dtype=object)  # one array per input, of any size
        images[:] = [image for image, _ in copies]
        out["image"] = images
        out["detect"] = np.asarray([mode for _, mode in copies], dtype=object)
        return out


def add_degrade_stage(ds: Any, *, detect: str, registry: Any, cpus: float, threads: int) -> Any:
    """Appends `DegradeStage` (one actor) to a dataset of ``{source, transform, seed, ...}`` rows."""
    from blackboard.stage_plan import add_actor_stage

    return add_actor_stage(ds, DegradeStage, {"detect": detect, "registry": registry, "threads": threads},
                           actors=1, cpus=cpus)


def seeds(paths: Sequence[str], name: str, root: Path) -> list[int]:
    """:func:`seed_for` of every path (0 for the clean rows, which are not transformed)."""
    return [seed_for(relative_key(p, root), name) if name else 0 for p in paths]
