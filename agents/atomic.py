"""Atomic file writes: readers see the old file or the new one, never half of one.

Every writer in the project goes through `atomic_write`: the content is written to a temporary
file with a unique name in the same folder (so two concurrent runs never share it, and the
rename stays on one file system), flushed to disk, then renamed onto the target.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Callable


def atomic_write(path: str | os.PathLike[str], write: Callable[[Path], object], *, mode: int = 0o644,
                 parents: bool = False) -> Path:
    """Calls ``write(tmp)`` on a unique temporary sibling of ``path``, then renames it onto ``path``.

    The temporary name keeps all of ``path``'s suffixes (``.x.tmp-abc123.weights.h5``), so writers
    that pick a format from the extension (NumPy, Keras, Matplotlib, Parquet) behave as for
    ``path``. The
    folder must exist unless ``parents``. On failure the temporary file is removed and the target is
    untouched.

    Args:
        path: the file to (re)place.
        write: writes the whole content to the path it is given.
        mode: permission bits of the new file (temporary files start private).
        parents: create the file's folder (and the folders above it) when missing.

    Returns:
        ``path`` as a `Path`.
    """
    path = Path(path)
    if parents:
        path.parent.mkdir(parents=True, exist_ok=True)
    suffix = "".join(path.suffixes)  # Keras, for one, insists on ".weights.h5", not ".h5"
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name[: len(path.name) - len(suffix)]}.tmp-",
                                suffix=suffix)
    os.close(fd)
    tmp = Path(name)
    try:
        write(tmp)
        with open(tmp, "rb") as handle:  # durable before it becomes visible
            os.fsync(handle.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes, *, parents: bool = False) -> Path:
    """Writes ``data`` to ``path`` atomically (see `atomic_write`, which also says what ``parents`` does)."""
    return atomic_write(path, lambda tmp: tmp.write_bytes(data), parents=parents)


def atomic_write_text(path: str | os.PathLike[str], text: str, encoding: str = "utf-8", *,
                      parents: bool = False) -> Path:
    """Writes ``text`` to ``path`` atomically (see `atomic_write`, which also says what ``parents`` does)."""
    return atomic_write(path, lambda tmp: tmp.write_text(text, encoding=encoding), parents=parents)
