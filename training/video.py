"""Frame sampling from video files with OpenCV, for the dataset builder and its benchmark.

Frames are read sequentially (``grab`` every frame, ``retrieve`` only the sampled ones): seeking
in H.264 lands on key frames and is slower and less exact than decoding straight through.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Iterator

import cv2
import numpy as np

VIDEO_EXTENSIONS = (".mp4", ".avi", ".mov", ".mkv")


class VideoError(ValueError):
    """A video that cannot be opened or has no decodable frames; the message says which and why."""


@dataclass(frozen=True)
class VideoInfo:
    """What the container says about a video."""

    frame_count: int  # frames according to the container (may be 0 when unknown)
    fps: float  # frames per second according to the container (0 when unknown)
    width: int  # frame width in pixels
    height: int  # frame height in pixels


def probe_video(path: str | os.PathLike[str]) -> VideoInfo:
    """Reads a video's frame count, rate and size without decoding frames.

    Raises:
        VideoError: when OpenCV cannot open the file.
    """
    capture = cv2.VideoCapture(str(path))
    try:
        if not capture.isOpened():
            raise VideoError(f"{path}: cannot open video (unsupported codec or not a video)")
        return VideoInfo(
            frame_count=max(0, int(capture.get(cv2.CAP_PROP_FRAME_COUNT))),
            fps=float(capture.get(cv2.CAP_PROP_FPS) or 0.0),
            width=int(capture.get(cv2.CAP_PROP_FRAME_WIDTH)),
            height=int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT)),
        )
    finally:
        capture.release()


def frame_indices(info: VideoInfo, *, fps: float | None = None, frames: int | None = None) -> list[int] | None:
    """Which frames to keep: at ``fps`` per second, or ``frames`` spread evenly over the video.

    Returns:
        Sorted frame indices, or None for "every ``step``-th frame" when the container does not
        know its length (then :func:`sample_frames` falls back to a step of one second / fps).
    """
    if fps is not None and frames is not None:
        raise ValueError(f"Give fps or frames, not both (received fps={fps}, frames={frames}).")
    if fps is not None and fps <= 0:
        raise ValueError(f"fps must be positive, received {fps}.")
    if frames is not None and frames < 1:
        raise ValueError(f"frames must be at least 1, received {frames}.")
    if info.frame_count <= 0:
        return None
    if frames is not None:
        count = min(frames, info.frame_count)
        # Centre each sample in its slice of the video, so 1 frame is the middle one.
        return sorted({int((i + 0.5) * info.frame_count / count) for i in range(count)})
    rate = fps if fps is not None else 1.0
    step = max(1, int(round((info.fps or 30.0) / rate)))
    return list(range(0, info.frame_count, step))


def sample_frames(
    path: str | os.PathLike[str], *, fps: float | None = None, frames: int | None = None
) -> Iterator[tuple[int, np.ndarray]]:
    """Yields ``(frame_index, rgb_uint8_frame)`` for the sampled frames of a video.

    Raises:
        VideoError: when the file cannot be opened or yields no frame at all.
    """
    info = probe_video(path)
    wanted = frame_indices(info, fps=fps, frames=frames)
    step = max(1, int(round((info.fps or 30.0) / (fps or 1.0))))
    wanted_set = set(wanted) if wanted is not None else None
    last = max(wanted) if wanted else None
    capture = cv2.VideoCapture(str(path))
    yielded = 0
    try:
        if not capture.isOpened():
            raise VideoError(f"{path}: cannot open video (unsupported codec or not a video)")
        index = 0
        while last is None or index <= last:
            if not capture.grab():
                break
            take = index in wanted_set if wanted_set is not None else index % step == 0
            if take:
                ok, bgr = capture.retrieve()
                if ok and bgr is not None:
                    yielded += 1
                    yield index, cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
            index += 1
    finally:
        capture.release()
    if yielded == 0:
        raise VideoError(f"{path}: no decodable frame (empty, truncated or corrupt video)")
