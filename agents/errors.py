"""Turning a low-level failure into the caller's own error, naming what failed and why.

Loading code across the project reads a file, parses JSON, checks a checksum or looks a name up,
and when that fails raises its own module's error (BundleError, ImageError, StateError, ...)
with the file or place in the message, chained to the original exception. The try/except for
each of those lives here once; callers pass their error type and their words for the thing.
"""

from __future__ import annotations

import hashlib
import json
import os
from contextlib import contextmanager
from typing import Any, Callable, Iterator, Mapping, TypeVar

T = TypeVar("T")
# The caller's error type, or any callable making one from a message.
ErrorFactory = Callable[[str], Exception]
# What `json.loads` raises on bad input: bad syntax, bytes that are not UTF-8, nesting too deep.
JSON_ERRORS = (json.JSONDecodeError, UnicodeDecodeError, RecursionError)


@contextmanager
def raised_as(error: ErrorFactory, prefix: object, *,
              catch: tuple[type[BaseException], ...] = (ValueError,)) -> Iterator[None]:
    """Inside the block, an exception of a ``catch`` type is raised again as ``error``.

    The new message is ``f"{prefix}: {original message}"``, so it says where (a file, a row) or
    what failed and keeps the reason; the original stays chained as its cause.
    """
    try:
        yield
    except catch as err:
        raise error(f"{prefix}: {err}") from err


def read_bytes(path: str | os.PathLike[str], *, error: ErrorFactory, what: str = "file") -> bytes:
    """The whole content of ``path``.

    Raises:
        error: ``"<path>: cannot read <what> (<the system's reason>)."`` when the file is
            missing, unreadable or not a file.
    """
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as err:
        raise error(f"{os.fspath(path)}: cannot read {what} ({err.strerror or err}).") from err


def read_verified(path: str | os.PathLike[str], sha256: str, *, error: ErrorFactory, what: str) -> bytes:
    """The content of ``path``, checked against the hex ``sha256`` recorded when it was stored.

    Raises:
        error: naming the file, when it cannot be read or its content changed since it was stored.
    """
    data = read_bytes(path, error=error, what=what)
    if hashlib.sha256(data).hexdigest() != sha256:
        raise error(f"Checksum mismatch for {os.fspath(path)}: the {what} was modified after it was stored; "
                    "refusing it.")
    return data


def parse_json(data: bytes | str, *, what: str, error: ErrorFactory = ValueError) -> Any:
    """``data`` parsed as JSON.

    Raises:
        error: ``"<what> is not valid JSON: <the parser's reason>"``.
    """
    with raised_as(error, f"{what} is not valid JSON", catch=JSON_ERRORS):
        return json.loads(data)


def lookup(table: Mapping[str, T], name: str, *, what: str) -> T:
    """``table[name]``.

    Raises:
        ValueError: naming ``name`` and every known name, when ``table`` has no entry ``name``.
    """
    try:
        return table[name]
    except KeyError:
        raise ValueError(f"Unknown {what} {name!r}; known: {', '.join(table)}.") from None
