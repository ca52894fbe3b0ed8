"""Media (extension lists, frame sampling), face tracks and the one video verdict rule."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest

from vision import media
from vision.video import (
    MIN_TRACK_FRAMES,
    VIDEO_RULE,
    FaceTracker,
    shown_frame,
    summarize_video,
    track_video,
)


def face(box, p=0.2, threshold=0.5, verdict=None, reason=""):
    out = {"box": box, "p_fake": p, "threshold": threshold, "degraded": False,
           "votes": {"a": {"p_fake": p, "weight": 1.0}}}
    if verdict:
        out.update(verdict=verdict, reason=reason)
    return out


@pytest.fixture(scope="module")
def tiny_video(tmp_path_factory):
    """A 2 s, 10 fps, 64x48 MJPEG AVI whose frames are numbered by brightness."""
    path = tmp_path_factory.mktemp("video") / "clip.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (64, 48))
    assert writer.isOpened()
    for i in range(20):
        writer.write(np.full((48, 64, 3), 10 * i, np.uint8))
    writer.release()
    return path


# --------------------------------------------------------------------------- media


def test_one_extension_list_for_every_command():
    from vision.inputs import is_video as batch_is_video
    from training.dataset_sources import media_kind as dataset_kind
    from vision.media import is_video as classify_is_video

    for ext in media.VIDEO_EXTENSIONS:
        name = f"clip{ext.upper()}"
        assert classify_is_video(name) and batch_is_video(name) and dataset_kind(Path(name)) == "video"
    assert dataset_kind(Path("a.webm")) == "video"  # `dataset build` used to ignore .webm
    for ext in media.IMAGE_EXTENSIONS:
        assert media.media_kind(f"x{ext}") == "image" and not media.is_video(f"x{ext}")
    assert media.media_kind("notes.txt") is None


def test_sample_frames_by_rate_count_and_cap(tiny_video):
    frames = list(media.sample_frames(tiny_video, fps=2.0))
    assert [f.index for f in frames] == [0, 5, 10, 15]
    assert frames[1].time_s == pytest.approx(0.5) and frames[0].rgb.shape == (48, 64, 3)
    assert frames[2].rgb.mean() > frames[1].rgb.mean()  # real decoded pixels, in order
    assert [f.index for f in media.sample_frames(tiny_video, frames=2)] == [5, 15]
    assert len(list(media.sample_frames(tiny_video, fps=10.0, max_frames=3))) == 3


def test_training_sampler_is_the_media_sampler(tiny_video):
    from vision.inputs import video_frames
    from training.video import sample_frames as dataset_frames

    ours = [(f.index, f.time_s) for f in media.sample_frames(tiny_video, fps=2.0)]
    assert [(i, t) for i, t, _ in video_frames(str(tiny_video), fps=2.0)] == ours
    assert [i for i, _ in dataset_frames(tiny_video, fps=2.0)] == [i for i, _ in ours]


def test_unreadable_video_is_a_video_error(tmp_path):
    from vision.inputs import UnreadableInput, video_frames

    bad = tmp_path / "broken.mp4"
    bad.write_bytes(b"not a video at all" * 10)
    with pytest.raises(media.VideoError, match="broken.mp4"):
        list(media.sample_frames(bad))
    with pytest.raises(UnreadableInput):
        list(video_frames(str(bad), fps=1.0))
    with pytest.raises(ValueError, match="not both"):
        media.frame_indices(media.VideoInfo(10, 10.0, 4, 4), fps=1.0, frames=2)


# --------------------------------------------------------------------------- tracks


def test_a_moving_face_with_missed_frames_stays_one_track():
    # The face drifts 40 px (0.4 box sides) per sampled frame and is missed twice in a row.
    boxes = [(100 + 40 * i, 100, 100, 120) for i in range(8)]
    frames = [[face(b)] if i not in (2, 3) else [] for i, b in enumerate(boxes)]
    tracks, video = track_video(frames)
    assert len(tracks) == 1 and tracks[0]["frames"] == 6
    # The old IoU-only tracker (no centre distance) splits it.
    old = FaceTracker(min_iou=0.3, max_shift=0.0, max_gap=2)
    for faces in frames:
        old.update(faces)
    assert len(old.tracks) > 1


def test_two_people_stay_two_tracks():
    frames = [[face((100, 100, 100, 120), p=0.1), face((600, 100, 100, 120), p=0.9)] for _ in range(4)]
    tracks, video = track_video(frames)
    assert sorted(t["frames"] for t in tracks) == [4, 4]
    assert video["verdict"] == "fake" and video["p_fake"] == pytest.approx(0.9)


def test_a_box_of_another_size_far_away_starts_a_new_track():
    tracker = FaceTracker()
    tracker.update([face((100, 100, 100, 100))])
    tracker.update([face((150, 100, 30, 30))])  # near but a third of the size: not the same face
    assert len(tracker.tracks) == 2


# --------------------------------------------------------------------------- the one verdict rule


def test_a_one_frame_track_does_not_decide_the_video():
    # A chair-like false positive in one frame, very "fake"; the real face, real, in all 7 frames.
    frames = [[face((800, 90, 160, 210), p=0.2)] for _ in range(7)]
    frames[3].append(face((1178, 521, 51, 66), p=0.7))
    tracks, video = track_video(frames)
    assert len(tracks) == 2
    assert video["verdict"] == "real" and video["p_fake"] == pytest.approx(0.2)
    assert video["tracks_counted"] == [0] and video["rule"] == VIDEO_RULE


def test_short_clips_still_get_a_verdict():
    tracks, video = track_video([[face((10, 10, 80, 80), p=0.8)]])
    assert MIN_TRACK_FRAMES > 1 and video["verdict"] == "fake"
    assert summarize_video([])["verdict"] == "no face"


def test_uncertain_frames_and_tracks():
    frames = [[face((10, 10, 80, 80), p=0.9, verdict="uncertain", reason="too small")] for _ in range(3)]
    tracks, video = track_video(frames)
    assert tracks[0]["verdict"] == "uncertain" and tracks[0]["reason"] == "too small"
    assert video["verdict"] == "uncertain" and video["p_fake"] is None
    # Decided frames of a track outvote its uncertain ones.
    frames[1] = [face((10, 10, 80, 80), p=0.1)]
    tracks, video = track_video(frames)
    assert tracks[0]["verdict"] == "real" and tracks[0]["p_fake"] == pytest.approx(0.1)


def test_batch_and_classify_use_the_same_rule():
    from fakeface.batch_shards import video_verdicts

    per_frame = [[face((800, 90, 160, 210), p=0.3 + 0.01 * i)] for i in range(6)]
    per_frame[2].append(face((1178, 521, 51, 66), p=0.95))
    _, classify = track_video(per_frame)
    rows = []
    for i, faces in enumerate(per_frame):
        for j, f in enumerate(faces):
            x, y, w, h = f["box"]
            rows.append({"source": "/v.mp4", "kind": "frame", "frame": 30 * i, "time_s": float(i), "face_index": j,
                         "box_x": x, "box_y": y, "box_w": w, "box_h": h, "face_confidence": 0.99,
                         "aligned": True, "a_p_fake": f["p_fake"], "p_fake": f["p_fake"],
                         "label": "fake" if f["p_fake"] >= 0.5 else "real", "threshold": 0.5,
                         "degraded": False, "status": "ok", "combiner": "mean", "bundle_version": "x",
                         "node_id": "", "reason": "", "input_index": 0})
    batch = video_verdicts(pd.DataFrame(rows), ["a"]).iloc[0]
    assert classify["verdict"] == batch["label"] == "real"
    assert batch["p_fake"] == pytest.approx(classify["p_fake"])


def test_frames_mostly_called_fake_make_a_fake_clip_whatever_the_mean_says():
    # The clip: 6 of 10 frames just above the threshold, 4 far below; the mean (0.50)
    # is under the threshold (0.51), which used to answer "Whole clip: REAL".
    ps = [0.56, 0.58, 0.57, 0.55, 0.59, 0.56, 0.30, 0.35, 0.40, 0.12]
    frames = [[face((10, 10, 80, 80), p=p, threshold=0.51)] for p in ps]
    tracks, video = track_video(frames)
    assert tracks[0]["p_fake"] < 0.51
    assert video["verdict"] == "fake" and (tracks[0]["frames_fake"], tracks[0]["frames_real"]) == (6, 4)
    assert "6 look fake, 4 look real" in video["explanation"] and video["explanation"].endswith("FAKE.")
    # The frame shown agrees with the verdict: a frame called fake, the typical one of them.
    shown = shown_frame(tracks, video)
    assert tracks[0]["timeline"][shown]["label"] == "fake" and ps[shown] in (0.56, 0.57)
    assert [p["p_fake"] for p in tracks[0]["timeline"]] == ps  # the page's timeline


def test_borderline_frames_make_a_cant_tell_clip_and_show_the_closest_frame():
    border = "borderline: too close to the threshold to call"
    frames = [[face((10, 10, 80, 80), p=p, threshold=0.5, verdict="uncertain", reason=border)]
              for p in (0.52, 0.47, 0.53, 0.49)]
    frames.append([face((10, 10, 80, 80), p=0.8)])
    tracks, video = track_video(frames)
    assert tracks[0]["frames_borderline"] == 4 and video["verdict"] == "uncertain"
    assert video["reason"].startswith("borderline") and video["p_fake"] == pytest.approx(np.mean(
        [0.52, 0.47, 0.53, 0.49, 0.8]))  # borderline frames keep their scores in the mean
    assert tracks[0]["timeline"][shown_frame(tracks, video)]["p_fake"] in (0.49, 0.52)
