"""Loops compiled by Numba, for processes that detect many pictures, with NumPy's values to the last bit.

NumPy is slow on arrays whose last axis holds three colour channels (its inner loops run three
values long) and on long chains of small temporaries; a patch cut from an integral image or a
bilinear crop is both. Written as plain loops and compiled, the same arithmetic runs once per
value: a 600 px photo's detection takes ~48 ms instead of ~57 on one core (2026-12-06).

Numba itself takes ~0.55 s to start in a process (its import and its typing tables; the machine
code comes from its disk cache beside the module, or from ``$NUMBA_CACHE_DIR``), which is more
than it saves on one picture (~10 ms). So each loop keeps its vectorised NumPy twin, which gives
the same values, and a process runs the compiled loops only once :func:`use_compiled_loops` was
called: the worker processes of a large local job, the face actors of a Ray job and the service's
detector do (`vision.face_pyramid.load_loops`, while their models load); a cold `fakeface
classify` or a small `batch` keeps NumPy and never imports Numba.

Numba adds no fast-math flags unless asked: a product and a sum are never fused into one rounding,
so a loop written in NumPy's order of operations gives NumPy's values to the last bit
(``tests/unit/vision/test_area.py`` and ``test_mtcnn_boxes.py`` run both ways).
"""

from __future__ import annotations

import functools
from typing import Any, Callable

_IN_USE = [False]  # whether this process runs the compiled loops (forked workers inherit it)


def use_compiled_loops(on: bool = True) -> None:
    """Runs every :func:`compiled` loop of this process compiled from now on (``on``), or its NumPy twin."""
    _IN_USE[0] = bool(on)


def compiled_loops_in_use() -> bool:
    """Whether this process runs the compiled loops (:func:`use_compiled_loops`)."""
    return _IN_USE[0]


def compiled(*, vectorised: Callable[..., Any]) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """A loop, compiled by Numba on its first call in a process that uses the compiled loops (no Python
    objects, the GIL released, NumPy's division: x / 0 is inf or nan, not an exception); elsewhere
    its twin ``vectorised``, which takes the same arguments and gives the same values.

    The returned function's ``dispatcher()`` gives Numba's dispatcher (its ``signatures``: the kinds
    of arguments compiled so far in this process), and ``vectorised`` the twin.
    """

    def decorate(function: Callable[..., Any]) -> Callable[..., Any]:
        # Numba's disk cache is renewed when the module holding ``function`` changes, not when these
        # options do: after changing them, delete the __pycache__/*.nbi and *.nbc files.
        @functools.cache
        def dispatcher() -> Any:
            import numba

            return numba.njit(cache=True, nogil=True, error_model="numpy")(function)

        @functools.wraps(function)
        def call(*args: Any) -> Any:
            return dispatcher()(*args) if _IN_USE[0] else vectorised(*args)

        call.dispatcher = dispatcher  # type: ignore[attr-defined]
        call.vectorised = vectorised  # type: ignore[attr-defined]
        return call

    return decorate
