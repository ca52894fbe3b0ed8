"""Inputs of a batch job: which files to classify, and how to turn one of them into RGB frames.

A batch input is a folder (searched recursively for images and videos), a manifest CSV with a
``path`` column, or a list file with one path per line. The list is resolved to absolute paths,
de-duplicated (first occurrence wins) and kept in a stable order, because the shard plan of a
resumable run is built from it and must come out the same on every run.
"""

from __future__ import annotations

import csv
import io
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

from vision import media
# The one extension list (vision.media), as sets for membership tests.
IMAGE_EXTENSIONS = frozenset(media.IMAGE_EXTENSIONS)
VIDEO_EXTENSIONS = frozenset(media.VIDEO_EXTENSIONS)


class InputError(ValueError):
    """The --input argument cannot be turned into a list of files."""


class UnreadableInput(ValueError):
    """One input file cannot be decoded (it goes to the rejects file, the job goes on)."""


@dataclass(frozen=True)
class InputList:
    """The resolved inputs of a job."""

    paths: tuple[str, ...]  # absolute paths, stable order, no duplicates
    skipped: int  # files in a folder input that are neither images nor videos
    duplicates: int  # repeated entries dropped from a manifest or list file


is_video = media.is_video


def _dedupe(paths: list[str]) -> tuple[tuple[str, ...], int]:
    seen: dict[str, None] = {}
    for p in paths:
        seen.setdefault(p, None)
    return tuple(seen), len(paths) - len(seen)


def _from_folder(folder: Path) -> InputList:
    media, skipped = [], 0
    for root, dirs, files in os.walk(folder):
        dirs.sort()  # walk order must not depend on the file system
        for name in sorted(files):
            if name.startswith("."):
                continue
            suffix = Path(name).suffix.lower()
            if suffix in IMAGE_EXTENSIONS or suffix in VIDEO_EXTENSIONS:
                media.append(os.path.abspath(os.path.join(root, name)))
            else:
                skipped += 1
    return InputList(paths=tuple(media), skipped=skipped, duplicates=0)


def _resolve(entry: str, base: Path) -> str:
    path = Path(entry).expanduser()
    return os.path.abspath(path if path.is_absolute() else base / path)


def _read_text(path: Path, what: str) -> str:
    """The file's text; "utf-8-sig" also reads the byte-order mark that Excel's "CSV UTF-8" writes."""
    try:
        return path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as err:
        raise InputError(
            f"{path} is not a UTF-8 {what} ({err.reason} at byte {err.start}); save it as UTF-8, or pass "
            "a folder, a manifest CSV or a text file with one path per line."
        ) from err
    except OSError as err:
        raise InputError(f"--input {path} cannot be read ({err.strerror}); check its permissions.") from err


def _from_manifest(path: Path) -> InputList:
    reader = csv.DictReader(io.StringIO(_read_text(path, "CSV"), newline=""))
    if reader.fieldnames is None or "path" not in reader.fieldnames:
        raise InputError(
            f"{path} is a CSV without a 'path' column (columns: {reader.fieldnames}); "
            "add a 'path' header or pass a folder or a list file with one path per line."
        )
    entries = [row["path"].strip() for row in reader if (row.get("path") or "").strip()]
    paths, dups = _dedupe([_resolve(e, path.parent) for e in entries])
    return InputList(paths=paths, skipped=0, duplicates=dups)


def _from_list(path: Path) -> InputList:
    lines = _read_text(path, "text list of paths").splitlines()
    entries = [ln.strip() for ln in lines if ln.strip() and not ln.lstrip().startswith("#")]
    paths, dups = _dedupe([_resolve(e, path.parent) for e in entries])
    return InputList(paths=paths, skipped=0, duplicates=dups)


def list_inputs(source: str | os.PathLike[str]) -> InputList:
    """Resolves ``--input`` to the files to classify.

    Args:
        source: a folder, a ``.csv`` manifest with a ``path`` column (relative paths are taken
            relative to the manifest's folder) or a list file (one path per line, ``#`` comments).

    Raises:
        InputError: the source does not exist, has no usable column, or lists nothing.
    """
    src = Path(source).expanduser()
    if not src.exists():
        raise InputError(f"--input {source} does not exist; pass a folder, a manifest CSV or a list file.")
    if src.is_dir():
        found = _from_folder(src)
    elif src.suffix.lower() == ".csv":
        found = _from_manifest(src)
    else:
        found = _from_list(src)
    if not found.paths:
        raise InputError(
            f"--input {source} holds no images or videos (extensions: "
            f"{', '.join(sorted(IMAGE_EXTENSIONS | VIDEO_EXTENSIONS))})."
        )
    return found


def video_frames(path: str, *, fps: float) -> Iterator[tuple[int, float, np.ndarray]]:
    """Samples a video at about ``fps`` frames per second (`vision.media.sample_frames`).

    Yields:
        (frame number in the file, time in seconds, RGB uint8 frame).

    Raises:
        UnreadableInput: the container cannot be opened or holds no decodable frame.
    """
    if fps <= 0:
        raise ValueError(f"fps must be positive, received {fps}.")
    try:
        for frame in media.sample_frames(path, fps=fps):
            yield frame.index, frame.time_s, frame.rgb
    except media.VideoError as err:
        raise UnreadableInput(str(err)) from err
