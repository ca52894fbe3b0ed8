"""Finding the dataset builder's sources: labelled folders and CSV manifests.

A source is one image or video file with its label and (when known) its group. Folders are laid
out ``real/`` and ``fake/`` at any depth; a ``metadata.csv`` with ``path`` and ``group`` columns
in the folder gives the groups (DFDC's layout: a fake and the real video it was made from share
a group, so they must land in the same split). CSV manifests list ``path,label[,group]``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from agents.labels import CLASSES
from vision.media import media_kind

METADATA_NAME = "metadata.csv"


@dataclass(frozen=True)
class Source:
    """One input file to turn into face crops."""

    path: str  # absolute path of the image or video
    label: str  # "real" or "fake"
    group: str  # split group: the CSV's group, else the video, else the file itself
    kind: str  # "image" or "video"


@dataclass(frozen=True)
class Reject:
    """An input that gave no crop, and why."""

    source: str  # the file (or CSV row) concerned
    reason: str  # one line a person can act on


def _folder_label(path: Path, root: Path) -> str | None:
    """The nearest enclosing folder named real/fake, between the file and the input root."""
    parts = [root.name, *path.relative_to(root).parts[:-1]]
    for part in reversed(parts):
        if part.lower() in CLASSES:
            return part.lower()
    return None


def _read_csv(path: Path) -> pd.DataFrame:
    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path}: cannot read CSV manifest ({exc}); expected columns path,label[,group]") from exc
    frame.columns = [str(c).strip().lower() for c in frame.columns]
    return frame


def metadata_groups(folder: Path) -> dict[str, str]:
    """resolved path -> group from a folder's metadata.csv, when it has path and group columns."""
    meta = folder / METADATA_NAME
    if not meta.is_file():
        return {}
    frame = _read_csv(meta)
    if "path" not in frame.columns or "group" not in frame.columns:
        return {}
    return {
        str((folder / p).resolve()): g.strip()
        for p, g in zip(frame["path"], frame["group"])
        if p.strip() and g.strip()
    }


def _default_group(path: Path, root: Path) -> str:
    # Without a group column every file is its own group; a video's frames share the video's.
    try:
        return str(path.relative_to(root.parent))
    except ValueError:
        return str(path)


def sources_from_folder(root: Path) -> tuple[list[Source], list[Reject]]:
    """Every image/video under ``root`` labelled by its real/ or fake/ folder."""
    root = root.resolve()
    groups = metadata_groups(root)
    sources: list[Source] = []
    rejects: list[Reject] = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted(filenames):
            path = Path(dirpath) / name
            if path.parent == root and name == METADATA_NAME:
                continue
            kind = media_kind(path)
            if kind is None:
                if not name.startswith("."):
                    rejects.append(Reject(str(path), f"not an image or video (extension {path.suffix or 'none'!r})"))
                continue
            label = _folder_label(path, root)
            if label is None:
                rejects.append(Reject(str(path), "no label: the file is not inside a real/ or fake/ folder"))
                continue
            group = groups.get(str(path)) or _default_group(path, root)
            sources.append(Source(path=str(path), label=label, group=group, kind=kind))
    return sources, rejects


def sources_from_csv(csv_path: Path) -> tuple[list[Source], list[Reject]]:
    """Rows ``path,label[,group]`` of a CSV manifest; paths relative to the CSV's folder or absolute."""
    csv_path = csv_path.resolve()
    frame = _read_csv(csv_path)
    missing = [c for c in ("path", "label") if c not in frame.columns]
    if missing:
        raise ValueError(
            f"{csv_path}: CSV manifest lacks column(s) {missing}; received columns {list(frame.columns)}, "
            "expected path,label[,group]"
        )
    has_group = "group" in frame.columns
    sources: list[Source] = []
    rejects: list[Reject] = []
    for row_number, row in enumerate(frame.itertuples(index=False), start=2):
        where = f"{csv_path}:{row_number}"
        raw_path = str(row.path).strip()
        label = str(row.label).strip().lower()
        if not raw_path:
            rejects.append(Reject(where, "empty path in CSV manifest"))
            continue
        path = Path(raw_path) if os.path.isabs(raw_path) else csv_path.parent / raw_path
        path = path.resolve()
        if label not in CLASSES:
            rejects.append(Reject(where, f"bad label: {row.label!r}, expected one of {CLASSES}"))
            continue
        kind = media_kind(path)
        if kind is None:
            rejects.append(Reject(str(path), f"not an image or video (extension {path.suffix or 'none'!r})"))
            continue
        if not path.is_file():
            rejects.append(Reject(str(path), f"missing file (listed in {where})"))
            continue
        group = str(row.group).strip() if has_group else ""
        sources.append(Source(path=str(path), label=label, group=group or _default_group(path, csv_path.parent),
                              kind=kind))
    return sources, rejects


def discover_sources(inputs: list[str | os.PathLike[str]]) -> tuple[list[Source], list[Reject]]:
    """All sources from a mix of folders and CSV manifests, each file once, sorted by path.

    Raises:
        ValueError: an input that does not exist or is neither a folder nor a .csv file.
    """
    sources: list[Source] = []
    rejects: list[Reject] = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            found, bad = sources_from_folder(path)
        elif path.is_file() and path.suffix.lower() == ".csv":
            found, bad = sources_from_csv(path)
        elif path.exists():
            raise ValueError(f"{path}: an input must be a folder with real/ and fake/ or a CSV manifest")
        else:
            raise ValueError(f"{path}: input does not exist")
        sources.extend(found)
        rejects.extend(bad)
    unique: dict[str, Source] = {}
    for source in sources:
        unique.setdefault(source.path, source)  # the first input that names a file wins
    return sorted(unique.values(), key=lambda s: s.path), rejects
