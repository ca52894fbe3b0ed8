"""Loops compiled by Numba, for the few places where NumPy's whole-array steps cost more than the arithmetic.

NumPy is slow on arrays whose last axis holds three colour channels (its inner loops run three
values long) and on long chains of small temporaries; a patch cut from an integral image or a
bilinear crop is both. Written as plain loops and compiled, the same arithmetic runs once per
value. Numba is imported, and a loop compiled, on the first call only (a cold `fakeface classify`
that finds no face pays for neither); the machine code is cached on disk beside the module (or in
Numba's user cache where that folder is read-only), so later processes load it in milliseconds.

Numba adds no fast-math flags unless asked: a product and a sum are never fused into one rounding,
so a loop written in NumPy's order of operations gives NumPy's values to the last bit
(`tests/unit/vision/test_area.py`, `tests/unit/vision/test_mtcnn_boxes.py` compare them).
"""

from __future__ import annotations

import functools
from typing import Any, Callable


def compiled(function: Callable[..., Any]) -> Callable[..., Any]:
    """``function``, compiled by Numba (no Python objects, the GIL released, NumPy's division:
    x / 0 is inf or nan, not an exception) when first called with each kind of arguments.

    The returned function's ``dispatcher()`` gives Numba's dispatcher (its ``signatures``: the kinds
    of arguments compiled so far in this process).
    """

    # Numba's disk cache is renewed when the module holding ``function`` changes, not when these
    # options do: after changing them, delete the __pycache__/*.nbi and *.nbc files.
    @functools.cache
    def dispatcher() -> Any:
        import numba

        return numba.njit(cache=True, nogil=True, error_model="numpy")(function)

    @functools.wraps(function)
    def call(*args: Any) -> Any:
        return dispatcher()(*args)

    call.dispatcher = dispatcher  # type: ignore[attr-defined]
    return call
