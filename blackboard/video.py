"""Videos: sample frames, follow faces across frames, one verdict per face track and per video.

A face track is a chain of boxes in consecutive sampled frames that overlap (IoU); its verdict
is the mean p_fake over the track's frames against the mean threshold. A video is fake when any
track is fake, with p = the largest track p.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Iterator

import cv2
import numpy as np

VIDEO_EXTENSIONS = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v")


def is_video(path: str | os.PathLike[str]) -> bool:
    """True for the video file extensions the CLI samples frames from."""
    return os.fspath(path).lower().endswith(VIDEO_EXTENSIONS)


@dataclass(frozen=True)
class Frame:
    """One sampled frame."""

    index: int  # frame number in the file
    time_s: float  # presentation time in seconds
    rgb: np.ndarray  # RGB uint8 pixels


def sample_frames(path: str | os.PathLike[str], *, fps: float = 1.0, max_frames: int = 120) -> Iterator[Frame]:
    """Yields about ``fps`` frames per second of video, at most ``max_frames``.

    Raises:
        ValueError: the file cannot be opened as a video, or bad arguments.
    """
    if fps <= 0:
        raise ValueError(f"fps must be positive, received {fps}.")
    if max_frames < 1:
        raise ValueError(f"max_frames must be >= 1, received {max_frames}.")
    cap = cv2.VideoCapture(os.fspath(path))
    if not cap.isOpened():
        raise ValueError(f"{path}: OpenCV cannot open it as a video")
    try:
        native = cap.get(cv2.CAP_PROP_FPS)
        native = native if native and native > 0 else 25.0  # some containers do not report it
        step = max(1, int(round(native / fps)))
        index = sampled = 0
        while sampled < max_frames:
            # grab() skips decoding-to-BGR for frames we do not keep.
            if not cap.grab():
                break
            if index % step == 0:
                ok, bgr = cap.retrieve()
                if not ok:
                    break
                yield Frame(index=index, time_s=index / native, rgb=cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
                sampled += 1
            index += 1
    finally:
        cap.release()


def iou(a: tuple[float, float, float, float], b: tuple[float, float, float, float]) -> float:
    """Intersection over union of two (x, y, width, height) boxes."""
    ax2, ay2, bx2, by2 = a[0] + a[2], a[1] + a[3], b[0] + b[2], b[1] + b[3]
    iw = max(0.0, min(ax2, bx2) - max(a[0], b[0]))
    ih = max(0.0, min(ay2, by2) - max(a[1], b[1]))
    inter = iw * ih
    union = a[2] * a[3] + b[2] * b[3] - inter
    return float(inter / union) if union > 0 else 0.0


@dataclass
class Track:
    """One face followed across frames."""

    id: int  # track number in the video, from 0
    box: tuple[float, float, float, float]  # last seen box
    last_frame: int  # sampled-frame number where it was last seen
    faces: list[dict[str, Any]] = field(default_factory=list)  # per-frame face dicts (p_fake, votes, ...)


class FaceTracker:
    """Greedy IoU matching of each frame's faces to live tracks.

    Args:
        min_iou: overlap needed to continue a track.
        max_gap: sampled frames a track may miss before it ends.
    """

    def __init__(self, *, min_iou: float = 0.3, max_gap: int = 2) -> None:
        if not 0.0 < min_iou <= 1.0:
            raise ValueError(f"min_iou must be in (0, 1], received {min_iou}.")
        self.min_iou = min_iou
        self.max_gap = max_gap
        self.tracks: list[Track] = []
        self._step = 0

    def update(self, faces: list[dict[str, Any]]) -> None:
        """Adds one sampled frame's faces (dicts with at least ``box`` as x, y, w, h)."""
        live = [t for t in self.tracks if self._step - t.last_frame <= self.max_gap + 1]
        pairs = sorted(
            ((iou(t.box, f["box"]), ti, fi) for ti, t in enumerate(live) for fi, f in enumerate(faces)),
            reverse=True,
        )
        used_t: set[int] = set()
        used_f: set[int] = set()
        for score, ti, fi in pairs:
            if score < self.min_iou or ti in used_t or fi in used_f:
                continue
            used_t.add(ti)
            used_f.add(fi)
            live[ti].box, live[ti].last_frame = faces[fi]["box"], self._step
            live[ti].faces.append(faces[fi])
        for fi, face in enumerate(faces):
            if fi not in used_f:
                self.tracks.append(Track(id=len(self.tracks), box=face["box"], last_frame=self._step, faces=[face]))
        self._step += 1


def summarize_track(track: Track) -> dict[str, Any]:
    """The track's verdict: mean p_fake over its frames against the mean threshold."""
    p = float(np.mean([f["p_fake"] for f in track.faces]))
    threshold = float(np.mean([f["threshold"] for f in track.faces]))
    agents: dict[str, dict[str, list[float]]] = {}
    for face in track.faces:
        for agent, vote in face["votes"].items():
            slot = agents.setdefault(agent, {"p_fake": [], "weight": []})
            slot["p_fake"].append(vote["p_fake"])
            slot["weight"].append(vote["weight"])
    return {
        "track": track.id,
        "frames": len(track.faces),
        "first_time_s": track.faces[0].get("time_s", 0.0),
        "last_time_s": track.faces[-1].get("time_s", 0.0),
        "p_fake": p,
        "threshold": threshold,
        "verdict": "fake" if p >= threshold else "real",
        "votes": {a: {"p_fake": float(np.mean(v["p_fake"])), "weight": float(np.mean(v["weight"]))}
                  for a, v in agents.items()},
        "degraded": any(f["degraded"] for f in track.faces),
        "aggregation": "mean p_fake over the track's frames",
    }


def summarize_video(tracks: list[dict[str, Any]]) -> dict[str, Any]:
    """Video verdict: fake when any track is fake; p = the largest track p."""
    if not tracks:
        return {"verdict": "no face", "p_fake": None, "rule": "no face found in the sampled frames"}
    worst = max(tracks, key=lambda t: t["p_fake"])
    return {
        "verdict": "fake" if any(t["verdict"] == "fake" for t in tracks) else "real",
        "p_fake": worst["p_fake"],
        "rule": "fake if any face track is fake; p = max track p",
    }
