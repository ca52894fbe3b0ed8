"""Frame sampling for the dataset builder and its benchmark, over `vision.media`.

The extension list, the sampler and its errors live in :mod:`vision.media`; this module only
adapts the sampler to the builder's ``(frame_index, rgb)`` pairs.
"""

from __future__ import annotations

import os
from typing import Iterator

import numpy as np

from vision import media

__all__ = [
    "sample_frames",
]


def sample_frames(
    path: str | os.PathLike[str], *, fps: float | None = None, frames: int | None = None
) -> Iterator[tuple[int, np.ndarray]]:
    """Yields ``(frame_index, rgb_uint8_frame)`` for the sampled frames of a video.

    Raises:
        VideoError: when the file cannot be opened or yields no frame at all.
    """
    for frame in media.sample_frames(path, fps=fps, frames=frames):
        yield frame.index, frame.rgb
