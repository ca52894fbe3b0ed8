"""A bundle's file inventory: every file in its directory except the manifest and its signature.

The manifest's ``files`` table maps each relative path (POSIX separators) to its sha256. Loading
compares the table with the directory as it is: a file listed but absent (deleted), a file present
but not listed (added), a changed checksum, a link or anything but a plain file is refused, each
with its own reason. With the manifest signed (`agents.signing`), this pins the whole bundle.
"""

from __future__ import annotations

import hashlib
import os
import threading
import time
from pathlib import Path

from cachetools import LRUCache

from agents.signing import SIGNATURE_FILE

MANIFEST = "manifest.json"
UNLISTED = frozenset({MANIFEST, SIGNATURE_FILE})

# A file's sha256, once read, is kept for this process (and the worker processes it forks) under
# the file's identity, size and change times, which any write changes: loading the shipped bundle
# read its 40 MB twice or three times in each process (~0.1 s a worker process of a local job,
# 1 % of scoring 240 photos). A file changed less than RACY_S before it was read is not kept: a
# file system's times may be as coarse as a clock tick, so a rewrite of the same size within it
# could leave them as they were.
RACY_S = 2.0
_HASHES: LRUCache = LRUCache(maxsize=1024)
_HASHES_LOCK = threading.Lock()  # the stage loaders read bundles from several threads


def _identity(status: os.stat_result) -> tuple[int, ...]:
    return (status.st_dev, status.st_ino, status.st_size, status.st_mtime_ns, status.st_ctime_ns)


def sha256_file(path: str | os.PathLike[str]) -> str:
    """Hex sha256 of a file's bytes (read again unless this process read the file as it is now)."""
    before = _identity(os.stat(path))
    with _HASHES_LOCK:
        known = _HASHES.get(before)
    if known is not None:
        return known
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    digest = h.hexdigest()
    changed = max(before[3], before[4]) / 1e9
    if _identity(os.stat(path)) == before and time.time() - changed > RACY_S:
        with _HASHES_LOCK:
            _HASHES[before] = digest
    return digest


class InventoryError(ValueError):
    """The directory holds something a bundle must not (a link, a device, an unreadable entry)."""


def scan(bundle: str | os.PathLike[str]) -> dict[str, str]:
    """Relative path -> sha256 of every plain file under ``bundle`` but the manifest and signature.

    Raises:
        InventoryError: a symbolic link or a special file (either could point outside the bundle).
    """
    root = Path(bundle)
    out: dict[str, str] = {}
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        here = Path(dirpath)
        for name in sorted(dirnames + filenames):
            path = here / name
            rel = path.relative_to(root).as_posix()
            if path.is_symlink():
                raise InventoryError(f"Bundle {root} holds a symbolic link, {rel}; a bundle holds plain files only.")
            if name in dirnames:
                continue
            if not path.is_file():
                raise InventoryError(f"Bundle {root} holds {rel}, which is not a plain file.")
            if rel not in UNLISTED:
                out[rel] = sha256_file(path)
    return out


def problem(bundle: str | os.PathLike[str], listed: dict[str, str], actual: dict[str, str]) -> str | None:
    """Why the directory's files (``actual``) differ from the manifest's table (``listed``), or None."""
    missing = sorted(set(listed) - set(actual))
    if missing:
        return (f"Bundle {bundle} is incomplete: {', '.join(missing)} listed in its manifest "
                f"{'is' if len(missing) == 1 else 'are'} missing (deleted). Re-copy or rebuild the bundle.")
    extra = sorted(set(actual) - set(listed))
    if extra:
        return (f"Bundle {bundle} holds {', '.join(extra)}, not listed in its manifest (an added file). "
                "Remove it, or rebuild and re-sign the bundle.")
    for rel in sorted(listed):
        if listed[rel] != actual[rel]:
            return (f"Checksum mismatch for {rel} in bundle {bundle}: manifest says {str(listed[rel])[:12]}…, "
                    f"file is {actual[rel][:12]}…. The bundle was modified or damaged; rebuild it with "
                    "`fakeface train` or re-copy it.")
    return None
