"""Videos: follow faces across sampled frames, one verdict per face track and one per video.

Frames come from :func:`vision.media.sample_frames`. A face track is a chain of boxes in
sampled frames matched by overlap (IoU) or, when a face moved between samples, by centre
distance relative to the box size; a track survives up to ``max_gap`` frames without its face.

The video verdict rule (:data:`VIDEO_RULE`, the one rule of `classify`, `batch` and the page,
said there in plain words): a track's frames are counted (fake, real, too close to call), and
the majority decides the track, so a clip whose frames are mostly called fake cannot be
answered REAL by an average that dips under the threshold. A track *counts* when it spans at
least ``min(MIN_TRACK_FRAMES, longest track)`` sampled frames, so a face seen once in a long
clip (a detector false positive, a passer-by) cannot decide it. The video is fake when any
counting track is fake, real when every counting track is real, "uncertain" otherwise; "no
face" without tracks. `shown_frame` picks the frame to show from the deciding track by the
same rule, so the picture, the report and the verdict agree.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable

import numpy as np


__all__ = ["iou", "Track", "FaceTracker", "summarize_track", "summarize_video", "shown_frame", "track_video",
           "VIDEO_RULE", "MIN_TRACK_FRAMES"]

# A track shorter than this (in sampled frames) counts only when no track is longer.
MIN_TRACK_FRAMES = 3
UNCERTAIN = "uncertain"
# The reason prefix of a "can't tell" that is only too close to the threshold (blackboard.borderline):
# such a frame still has a meaningful p_fake, unlike one that is not a face.
BORDERLINE = "borderline"
VIDEO_RULE = (f"Each face is followed through the checked frames and its frames are counted: it is FAKE when "
              f"more of them look fake than real, REAL when more look real than fake, and can't tell when "
              f"too many are too close to call. A face seen in fewer than {MIN_TRACK_FRAMES} frames counts "
              f"only if no face is seen longer. The clip is FAKE if any face is FAKE, REAL if every face is "
              f"REAL, and can't tell otherwise. The picture shows a frame of the deciding face that agrees "
              f"with the answer.")


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


def centre_shift(a: tuple[float, float, float, float], b: tuple[float, float, float, float]) -> float:
    """Distance between two boxes' centres in units of their mean side (size-independent)."""
    dx = (a[0] + a[2] / 2) - (b[0] + b[2] / 2)
    dy = (a[1] + a[3] / 2) - (b[1] + b[3] / 2)
    side = (a[2] + a[3] + b[2] + b[3]) / 4.0
    return float(np.hypot(dx, dy) / side) if side > 0 else float("inf")


class FaceTracker:
    """Greedy matching of each frame's faces to live tracks by overlap and centre distance.

    A face continues a track when their boxes overlap by ``min_iou``, or when its centre lies
    within ``max_shift`` box sides of the track's last box (``max_shift`` more per missed frame)
    and the two boxes differ in side by at most ``max_scale`` times: faces move between samples
    taken a second apart, and a detector that misses a frame must not split a person in two.

    Args:
        min_iou: overlap that continues a track whatever the centre distance.
        max_shift: centre distance, in mean box sides, that continues a track.
        max_scale: largest ratio between the sides of two matched boxes.
        max_gap: sampled frames a track may miss before it ends.
    """

    def __init__(self, *, min_iou: float = 0.3, max_shift: float = 0.5, max_scale: float = 2.0,
                 max_gap: int = 3) -> None:
        if not 0.0 < min_iou <= 1.0:
            raise ValueError(f"min_iou must be in (0, 1], received {min_iou}.")
        if max_shift < 0 or max_scale < 1 or max_gap < 0:
            raise ValueError(f"need max_shift >= 0, max_scale >= 1, max_gap >= 0; received {max_shift}, "
                             f"{max_scale}, {max_gap}.")
        self.min_iou = min_iou
        self.max_shift = max_shift
        self.max_scale = max_scale
        self.max_gap = max_gap
        self.tracks: list[Track] = []
        self._step = 0

    def affinity(self, track: Track, box: tuple[float, float, float, float]) -> float:
        """How well a box continues a track: > 0 when it may, higher is better."""
        overlap = iou(track.box, box)
        if overlap >= self.min_iou:
            return 1.0 + overlap
        missed = self._step - track.last_frame - 1
        shift = centre_shift(track.box, box)
        sides = (np.sqrt(track.box[2] * track.box[3]), np.sqrt(box[2] * box[3]))
        scale = max(sides) / max(min(sides), 1e-9)
        allowed = self.max_shift * (1 + missed)
        if shift <= allowed and scale <= self.max_scale:
            return 1.0 - shift / (allowed + 1e-9) if allowed > 0 else 1.0
        return 0.0

    def update(self, faces: list[dict[str, Any]]) -> None:
        """Adds one sampled frame's faces (dicts with at least ``box`` as x, y, w, h)."""
        live = [t for t in self.tracks if self._step - t.last_frame <= self.max_gap + 1]
        pairs = sorted(
            ((self.affinity(t, f["box"]), ti, fi) for ti, t in enumerate(live) for fi, f in enumerate(faces)),
            reverse=True,
        )
        used_t: set[int] = set()
        used_f: set[int] = set()
        for score, ti, fi in pairs:
            if score <= 0 or ti in used_t or fi in used_f:
                continue
            used_t.add(ti)
            used_f.add(fi)
            live[ti].box, live[ti].last_frame = tuple(faces[fi]["box"]), self._step
            live[ti].faces.append(faces[fi])
        for fi, face in enumerate(faces):
            if fi not in used_f:
                self.tracks.append(Track(id=len(self.tracks), box=tuple(face["box"]), last_frame=self._step,
                                         faces=[face]))
        self._step += 1


def _frame_label(face: dict[str, Any]) -> str:
    """A frame's answer for one face: "fake", "real", "borderline" or "uncertain" (not judgeable)."""
    verdict = face.get("verdict")
    if verdict == UNCERTAIN:
        return BORDERLINE if str(face.get("reason", "")).startswith(BORDERLINE) else UNCERTAIN
    if verdict in ("fake", "real"):
        return str(verdict)
    return "fake" if face["p_fake"] >= face["threshold"] else "real"


def summarize_track(track: Track) -> dict[str, Any]:
    """The track's verdict by :data:`VIDEO_RULE`: its frames' answers are counted.

    FAKE when more frames are called fake than real and at least as many as are borderline;
    REAL likewise; otherwise "uncertain" (borderline). Frames that cannot be judged (too small,
    not a face) count for the track's length only; a track of such frames only is "uncertain"
    with their most common reason. ``p_fake`` is the mean over the judged frames (borderline
    ones included), shown on the page's scale; ``timeline`` lists every frame's p_fake.
    """
    labels = [_frame_label(f) for f in track.faces]
    judged = [f for f, label in zip(track.faces, labels) if label != UNCERTAIN]
    scored = judged or track.faces
    p = float(np.mean([f["p_fake"] for f in scored]))
    threshold = float(np.mean([f["threshold"] for f in scored]))
    agents: dict[str, dict[str, list[float]]] = {}
    for face in scored:
        for agent, vote in face["votes"].items():
            slot = agents.setdefault(agent, {"p_fake": [], "weight": []})
            slot["p_fake"].append(vote["p_fake"])
            slot["weight"].append(vote.get("weight", float("nan")))
    n_fake, n_real, n_border = labels.count("fake"), labels.count("real"), labels.count(BORDERLINE)
    if not judged:
        reasons = [f.get("reason", "") for f in track.faces]
        verdict, reason = UNCERTAIN, max(set(reasons), key=reasons.count) if reasons else ""
    elif n_fake > n_real and n_fake >= n_border:
        verdict, reason = "fake", ""
    elif n_real > n_fake and n_real >= n_border:
        verdict, reason = "real", ""
    else:
        verdict = UNCERTAIN
        reason = (f"borderline: of its {len(judged)} judged frames, {n_fake} look fake, {n_real} look real and "
                  f"{n_border} are too close to the threshold to call")
    return {
        "track": track.id,
        "frames": len(track.faces),
        "frames_fake": n_fake,
        "frames_real": n_real,
        "frames_borderline": n_border,
        "first_time_s": track.faces[0].get("time_s", 0.0),
        "last_time_s": track.faces[-1].get("time_s", 0.0),
        "p_fake": p,
        "threshold": threshold,
        "verdict": verdict,
        "reason": reason,
        "votes": {a: {"p_fake": float(np.mean(v["p_fake"])), "weight": float(np.mean(v["weight"]))}
                  for a, v in agents.items()},
        "degraded": any(f.get("degraded", False) for f in track.faces),
        "aggregation": "frames counted: fake, real or too close to call; p_fake = mean over the judged frames",
        "timeline": [{"time_s": float(f.get("time_s", 0.0)), "p_fake": float(f["p_fake"]), "label": label}
                     for f, label in zip(track.faces, labels)],
    }


def summarize_video(tracks: list[dict[str, Any]]) -> dict[str, Any]:
    """The video verdict from its track summaries, by :data:`VIDEO_RULE`.

    Returns:
        ``verdict`` ("fake", "real", "uncertain" or "no face"), ``p_fake`` and ``threshold`` of
        the deciding track (None without one), ``deciding_track``, ``tracks_counted`` (their ids),
        ``reason``, ``rule`` (the plain sentence) and ``explanation`` (this clip's case of it).
    """
    if not tracks:
        return {"verdict": "no face", "p_fake": None, "threshold": None, "tracks_counted": [],
                "deciding_track": None, "reason": "no face found in the sampled frames", "rule": VIDEO_RULE,
                "explanation": "No face was found in the checked frames."}
    needed = min(MIN_TRACK_FRAMES, max(t["frames"] for t in tracks))
    counted = [t for t in tracks if t["frames"] >= needed]
    ids = [t["track"] for t in counted]
    fakes = [t for t in counted if t["verdict"] == "fake"]
    reals = [t for t in counted if t["verdict"] == "real"]
    if fakes:
        deciding = max(fakes, key=lambda t: (t["frames_fake"] / max(t["frames"], 1), t["p_fake"]))
        verdict = "fake"
    elif reals and len(reals) == len(counted):
        deciding, verdict = max(reals, key=lambda t: t["p_fake"]), "real"
    else:
        undecided = [t for t in counted if t["verdict"] == UNCERTAIN]
        deciding, verdict = max(undecided, key=lambda t: t["frames"]), UNCERTAIN
    judged = deciding["frames_fake"] + deciding["frames_real"] + deciding["frames_borderline"]
    has_p = judged > 0
    explanation = (f"Face {deciding['track']} was followed through {deciding['frames']} checked frames: "
                   f"{deciding['frames_fake']} look fake, {deciding['frames_real']} look real, "
                   f"{deciding['frames_borderline']} are too close to call")
    explanation += {"fake": ", so the clip is FAKE.", "real": ", so the clip is REAL.",
                    UNCERTAIN: ", so the detector can't tell."}[verdict]
    return {"verdict": verdict, "p_fake": float(deciding["p_fake"]) if has_p else None,
            "threshold": float(deciding["threshold"]) if has_p else None, "tracks_counted": ids,
            "deciding_track": deciding["track"], "reason": deciding["reason"] if verdict == UNCERTAIN else "",
            "rule": VIDEO_RULE, "explanation": explanation}


def shown_frame(tracks: list[dict[str, Any]], video: dict[str, Any]) -> int | None:
    """Which of the deciding track's frames to show (its position in the track), by the same rule.

    The frame agrees with the clip's answer: for FAKE/REAL one of the frames called so, the one
    whose p_fake is nearest the median of those frames (typical, not the extreme); for "can't
    tell", the judged frame nearest the threshold. None without a deciding track.
    """
    if video.get("deciding_track") is None:
        return None
    track = next(t for t in tracks if t["track"] == video["deciding_track"])
    line = track["timeline"]
    want = {"fake": ("fake",), "real": ("real",)}.get(video["verdict"], (BORDERLINE, "fake", "real"))
    options = [i for i, point in enumerate(line) if point["label"] in want] or list(range(len(line)))
    if video["verdict"] in ("fake", "real"):
        middle = float(np.median([line[i]["p_fake"] for i in options]))
        return min(options, key=lambda i: abs(line[i]["p_fake"] - middle))
    return min(options, key=lambda i: abs(line[i]["p_fake"] - track["threshold"]))


def track_video(frames: Iterable[list[dict[str, Any]]], tracker: FaceTracker | None = None
                ) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Tracks faces over a video's sampled frames and applies :data:`VIDEO_RULE`.

    Args:
        frames: per sampled frame, in order, its face dicts (``box``, ``p_fake``, ``threshold``,
            ``votes``, optional ``verdict``/``reason``/``degraded``/``time_s``); [] for a
            frame without a face.
        tracker: a configured tracker (default settings when None).

    Returns:
        The track summaries and the video summary.
    """
    tracker = tracker or FaceTracker()
    for faces in frames:
        tracker.update(list(faces))
    tracks = [summarize_track(t) for t in tracker.tracks]
    return tracks, summarize_video(tracks)
