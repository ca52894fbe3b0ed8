"""The dataset builder end to end: real MTCNN on a real video, real files, real splits."""

from __future__ import annotations

import json
import os
import shutil

import cv2
import numpy as np
import pandas as pd
import pytest

from training.dataset import BuildConfig, build_dataset, check_splits, make_splits, read_manifest
from training.dataset_cli import main as dataset_main
from training.video import sample_frames


def write_png(path, image) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))


def write_video(path, face_rgb, count: int = 8) -> None:
    """An mp4 of the astronaut, each frame shifted a few pixels and JPEG re-encoded: near-duplicates."""
    path.parent.mkdir(parents=True, exist_ok=True)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 8.0, (512, 512))
    assert writer.isOpened()
    for i in range(count):
        frame = np.roll(face_rgb, shift=(i % 3, 2 * (i % 4)), axis=(0, 1))
        ok, jpeg = cv2.imencode(".jpg", cv2.cvtColor(frame, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 70 + 3 * i])
        writer.write(cv2.imdecode(jpeg, cv2.IMREAD_COLOR))
    writer.release()


def noise_images(root, groups: int, seed: int = 0) -> pd.DataFrame:
    """One real and one fake 64x64 image per group, listed in a CSV manifest with groups."""
    rng = np.random.default_rng(seed)
    rows = []
    for g in range(groups):
        for label in ("real", "fake"):
            rel = f"{label}/g{g:02d}_{label}.png"
            write_png(root / rel, rng.integers(0, 256, (64, 64, 3), dtype=np.uint8))
            rows.append({"path": rel, "label": label, "group": f"scene{g:02d}"})
    manifest = pd.DataFrame(rows)
    manifest.to_csv(root / "list.csv", index=False)
    return manifest


@pytest.fixture(scope="module")
def media_build(tmp_path_factory, face_rgb):
    """One build with detection: a near-duplicate video, a photo, a corrupt and an empty file."""
    root = tmp_path_factory.mktemp("media")
    write_video(root / "fake" / "clip.mp4", face_rgb)
    write_png(root / "real" / "astronaut.png", face_rgb)
    (root / "real" / "corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0 definitely not a jpeg" * 4)
    (root / "real" / "empty.png").write_bytes(b"")
    out = tmp_path_factory.mktemp("built") / "ds"
    config = BuildConfig(frames=6, val=0.0, test=0.0)
    summary = build_dataset([root], out, config, show_progress=False)
    return root, out, config, summary


def test_video_near_duplicates_are_dropped(media_build):
    _, out, _, summary = media_build
    manifest = read_manifest(out / "manifest.csv")
    video_rows = manifest[manifest["source"].str.endswith("clip.mp4")]
    assert summary.frames_sampled == 6
    # Six shifted, re-encoded copies of one picture: one kept, the rest near-duplicates.
    assert 1 <= len(video_rows) <= 2
    assert summary.duplicates_dropped == 6 - len(video_rows)
    assert set(video_rows["group"]) == {video_rows["group"].iloc[0]} and "clip.mp4" in video_rows["group"].iloc[0]
    assert (video_rows["frame"] >= 0).all() and (video_rows["label"] == "fake").all()
    saved = json.loads((out / "summary.json").read_text())
    assert saved["duplicates_dropped"] == summary.duplicates_dropped


def test_crops_are_aligned_faces_on_disk(media_build):
    _, out, _, _ = media_build
    manifest = read_manifest(out / "manifest.csv")
    assert list(manifest.columns[:8]) == ["path", "label", "group", "split", "source", "frame", "confidence", "hash"]
    photo = manifest[manifest["source"].str.endswith("astronaut.png")]
    assert len(photo) == 1 and photo["confidence"].iloc[0] > 0.9 and photo["frame"].iloc[0] == -1
    for path in manifest["path"]:
        assert os.path.isabs(path)
        crop = cv2.imread(path)
        assert crop is not None and crop.shape == (224, 224, 3)
    # No temporary files left behind by the atomic writes.
    assert not [p for p in out.rglob("*.tmp")]


def test_bad_files_are_rejected_with_reasons(media_build):
    _, out, _, summary = media_build
    rejects = pd.read_csv(out / "rejects.csv")
    reasons = dict(zip(rejects["source"].map(os.path.basename), rejects["reason"]))
    assert "corrupt.jpg" in reasons and "not a decodable image" in reasons["corrupt.jpg"]
    assert "empty.png" in reasons and "empty input" in reasons["empty.png"]
    assert summary.rejects == len(rejects) == 2
    assert summary.rejects_by_reason == {"unreadable": 2}


def test_rerun_skips_finished_sources(media_build):
    root, out, config, first = media_build
    copy = out.parent / "rerun"
    shutil.copytree(out, copy)
    before = {p.name: p.stat().st_mtime_ns for p in (copy / "crops").rglob("*.jpg")}
    # A new image arrives between runs: only it is processed.
    write_png(root / "real" / "late" / "blank.png", np.full((600, 200, 3), 128, np.uint8))
    try:
        second = build_dataset([root], copy, config, show_progress=False)
    finally:
        (root / "real" / "late" / "blank.png").unlink()
    assert second.sources_resumed == first.sources
    assert second.sources == first.sources + 1
    assert second.crops == first.crops
    after = {p.name: p.stat().st_mtime_ns for p in (copy / "crops").rglob("*.jpg")}
    assert after == before  # nothing re-written
    rejects = pd.read_csv(copy / "rejects.csv")
    assert rejects["reason"][rejects["source"].str.endswith("blank.png")].iloc[0] == "no face"
    with pytest.raises(ValueError, match="other crop settings"):
        build_dataset([root], copy, BuildConfig(frames=6, margin=0.5), show_progress=False)


def test_groups_never_straddle_splits_and_seed_reproduces(tmp_path):
    noise_images(tmp_path / "data", groups=24)
    config = BuildConfig(detect=False, min_face=32, val=0.2, test=0.2, seed=3)
    first = build_dataset([tmp_path / "data" / "list.csv"], tmp_path / "a", config, show_progress=False)
    again = build_dataset([tmp_path / "data" / "list.csv"], tmp_path / "b", config, show_progress=False)
    other = build_dataset([tmp_path / "data" / "list.csv"], tmp_path / "c",
                          BuildConfig(detect=False, min_face=32, val=0.2, test=0.2, seed=4), show_progress=False)
    a, b, c = (read_manifest(tmp_path / d / "manifest.csv") for d in "abc")
    assert first.crops == 48 and first.groups == 24
    for df in (a, b, c):
        assert (df.groupby("group")["split"].nunique() == 1).all()
        # Stratified: each split holds both labels (each group has one real and one fake).
        assert set(df["split"]) == {"train", "val", "test"}
        assert (df.groupby("split")["label"].nunique() == 2).all()
    key = ["source", "split"]
    assert a[key].sort_values("source").values.tolist() == b[key].sort_values("source").values.tolist()
    assert a[key].sort_values("source").values.tolist() != c[key].sort_values("source").values.tolist()
    assert again.by_split == first.by_split and first.by_split["train"] > first.by_split["val"] > 0


def test_folder_metadata_groups_are_used(tmp_path):
    root = tmp_path / "dfdc_like"
    rng = np.random.default_rng(1)
    for name in ("real/a.jpg", "fake/b.jpg", "real/c.jpg", "fake/d.jpg"):
        write_png(root / name, rng.integers(0, 256, (224, 224, 3), dtype=np.uint8))
    (root / "metadata.csv").write_text("path,label,group,original_width\nreal/a.jpg,real,ga,100\n"
                                       "fake/b.jpg,fake,ga,100\nreal/c.jpg,real,gc,90\nfake/d.jpg,fake,gc,90\n")
    build_dataset([root], tmp_path / "out", BuildConfig(detect=False), show_progress=False)
    df = read_manifest(tmp_path / "out" / "manifest.csv")
    groups = dict(zip(df["source"].map(os.path.basename), df["group"]))
    assert groups == {"a.jpg": "ga", "b.jpg": "ga", "c.jpg": "gc", "d.jpg": "gc"}


def test_make_splits_fractions_and_leak_check():
    rows = [{"label": "real" if i % 3 else "fake", "group": f"g{i // 2}"} for i in range(600)]
    df = make_splits(pd.DataFrame(rows), val=0.15, test=0.15, seed=0)
    share = df["split"].value_counts(normalize=True)
    assert 0.1 < share["test"] < 0.2 and 0.1 < share["val"] < 0.2
    leaked = df.copy()
    leaked.loc[0, "split"] = "test" if leaked.loc[1, "split"] != "test" else "val"
    with pytest.raises(ValueError, match="straddle"):
        check_splits(leaked)
    with pytest.raises(ValueError, match="val and test"):
        make_splits(pd.DataFrame(rows), val=0.6, test=0.5)


def test_read_manifest_errors_name_the_file(tmp_path):
    with pytest.raises(ValueError, match="missing.csv: manifest not found"):
        read_manifest(tmp_path / "missing.csv")
    bad = tmp_path / "bad.csv"
    bad.write_text("path,label\nx.jpg,real\n")
    with pytest.raises(ValueError, match=r"bad.csv: manifest lacks column\(s\) \['group', 'split'\]"):
        read_manifest(bad)


def test_manifest_paths_are_normalised_so_two_checkouts_share_their_caches(tmp_path):
    rows = "path,label,group,split\n../../../data/real/a.jpg,real,g1,train\n/abs/./x/../b.jpg,fake,g2,val\n"
    for checkout in ("main", "a-longer-clone-name"):
        manifest = tmp_path / checkout / "benchmarks" / "splits" / "m.csv"
        manifest.parent.mkdir(parents=True)
        manifest.write_text(rows)
        assert list(read_manifest(manifest)["path"]) == [str(tmp_path.resolve() / "data" / "real" / "a.jpg"), "/abs/b.jpg"]


def test_cli_builds_and_reports_bad_input(tmp_path, capsys):
    noise_images(tmp_path / "data", groups=3)
    code = dataset_main(["build", "--manifest-in", str(tmp_path / "data" / "list.csv"), "--no-detect",
                         "--min-face", "32", "--out", str(tmp_path / "out"), "--quiet"])
    assert code == 0
    assert "dataset: 6 crops from 6 sources" in capsys.readouterr().out
    assert dataset_main(["build", str(tmp_path / "nowhere"), "--out", str(tmp_path / "o2")]) == 2
    err = capsys.readouterr().err
    assert "nowhere: input does not exist" in err and "Traceback" not in err
    assert dataset_main(["build", str(tmp_path / "data"), "--out", str(tmp_path / "o3"), "--val", "0.7",
                         "--test", "0.5"]) == 2
    assert "val and test" in capsys.readouterr().err


def test_csv_rows_with_bad_label_or_missing_file_are_rejected(tmp_path):
    noise_images(tmp_path / "data", groups=2)
    listing = tmp_path / "data" / "list.csv"
    listing.write_text(listing.read_text() + "real/gone.png,real,scene09\nreal/g00_real.png,maybe,scene00\n")
    summary = build_dataset([listing], tmp_path / "out", BuildConfig(detect=False, min_face=32), show_progress=False)
    assert summary.crops == 4
    rejects = pd.read_csv(tmp_path / "out" / "rejects.csv")
    assert summary.rejects_by_reason == {"missing file": 1, "bad label": 1}
    assert rejects["reason"].str.contains("maybe").any()


# --------------------------------------------------------------------------- keyframes + following


def moving_face_frames(face_rgb, count: int, step: tuple[int, int] = (6, 3), jump_at: int | None = None,
                       blank_at: int | None = None) -> list[tuple[int, np.ndarray]]:
    """The astronaut pasted on a 720x560 grey canvas, moving ``step`` px per frame.

    From frame ``jump_at`` on the picture is moved far away (beyond any search window), and frame
    ``blank_at`` is the empty canvas.
    """
    frames = []
    for i in range(count):
        canvas = np.full((560, 720, 3), 90, np.uint8)
        x, y = 10 + step[0] * i, 10 + step[1] * i
        if jump_at is not None and i >= jump_at:
            x, y = 200, 40
        if i != blank_at:
            canvas[y:y + 400, x:x + 400] = cv2.resize(face_rgb, (400, 400), interpolation=cv2.INTER_AREA)
        frames.append((i, canvas))
    return frames


@pytest.fixture(scope="module")
def detector():
    from training.dataset_work import open_detector

    return open_detector(BuildConfig())


def eye_distances(a, b) -> float:
    """Mean landmark distance between two faces, in eye distances of the first."""
    return float(np.linalg.norm(a.landmarks - b.landmarks, axis=1).mean()
                 / np.linalg.norm(a.landmarks[1] - a.landmarks[0]))


def test_following_finds_the_faces_of_full_detection(detector, face_rgb):
    from vision.face_tracking import FaceFollower, FollowConfig
    from vision.video import iou

    frames = moving_face_frames(face_rgb, 10)
    full = detector.detect_batch([f for _, f in frames])
    follower = FaceFollower(detector, FollowConfig(keyframe_every=5))
    followed = list(follower.follow(frames))
    assert [i for i, _, _ in followed] == list(range(10))
    for (_, _, found), expected in zip(followed, full):
        assert len(found) == len(expected) == 1
        assert iou(found[0].box, expected[0].box) > 0.7
        assert eye_distances(expected[0], found[0]) < 0.1
        assert found[0].confidence >= detector.min_confidence
    # Full detection on frames 0 and 5 only; the eight others were followed.
    assert (follower.stats.full_detections, follower.stats.followed, follower.stats.lost) == (2, 8, 0)


def test_two_faces_are_followed_separately(detector, face_rgb):
    from vision.face_tracking import FaceFollower, FollowConfig
    from vision.video import iou

    small = cv2.resize(face_rgb, (300, 300), interpolation=cv2.INTER_AREA)
    frames = []
    for i in range(6):
        canvas = np.full((420, 820, 3), 90, np.uint8)
        canvas[20 + 4 * i:320 + 4 * i, 10 + 5 * i:310 + 5 * i] = small
        canvas[40:340, 500 - 6 * i:800 - 6 * i] = small[:, ::-1]
        frames.append((i, canvas))
    full = detector.detect_batch([f for _, f in frames])
    follower = FaceFollower(detector, FollowConfig(keyframe_every=6))
    for (_, _, found), expected in zip(follower.follow(frames), full):
        assert len(found) == len(expected) == 2
        for face in expected:
            assert max(iou(face.box, other.box) for other in found) > 0.7
    assert (follower.stats.full_detections, follower.stats.followed, follower.stats.faces_followed) == (1, 5, 10)


def test_keyframe_every_1_is_full_detection_of_every_frame(detector, face_rgb):
    from vision.face_tracking import FaceFollower, FollowConfig

    frames = moving_face_frames(face_rgb, 5)
    follower = FaceFollower(detector, FollowConfig(keyframe_every=1, batch_frames=3))
    got = [faces for _, _, faces in follower.follow(frames)]
    # Batched as the builder always did: frames 0-2, then 3-4.
    expected = detector.detect_batch([f for _, f in frames[:3]]) + detector.detect_batch([f for _, f in frames[3:]])
    assert [[f.box for f in faces] for faces in got] == [[f.box for f in faces] for faces in expected]
    assert all(np.array_equal(a.landmarks, b.landmarks) for x, y in zip(got, expected) for a, b in zip(x, y))
    assert follower.stats.full_detections == 5 and follower.stats.followed == 0


def test_a_lost_track_triggers_full_detection(detector, face_rgb):
    from vision.face_tracking import FaceFollower, FollowConfig
    from vision.video import iou

    frames = moving_face_frames(face_rgb, 8, jump_at=3, blank_at=6)
    follower = FaceFollower(detector, FollowConfig(keyframe_every=8))
    got = {i: faces for i, _, faces in follower.follow(frames)}
    # Frame 3: the face jumped out of every search window -> the whole frame is searched again.
    moved = detector.detect(frames[3][1])
    assert len(got[3]) == 1 and iou(got[3][0].box, moved[0].box) > 0.7
    assert len(got[4]) == len(got[5]) == 1  # followed from its new place
    # Frame 6 is empty: lost again, full detection finds nothing, and frame 7 waits for a keyframe.
    assert got[6] == [] and got[7] == []
    assert (follower.stats.full_detections, follower.stats.lost, follower.stats.followed) == (3, 2, 4)


def test_build_with_keyframes_writes_aligned_crops_and_resumes_only_with_the_same_interval(tmp_path, face_rgb,
                                                                                         detector):
    from vision.alignment import align_face

    root = tmp_path / "media"
    write_video(root / "fake" / "clip.mp4", face_rgb, count=8)
    config = BuildConfig(fps=8.0, hash_distance=0, val=0.0, test=0.0, keyframe_every=4)
    summary = build_dataset([root], tmp_path / "ds", config, show_progress=False)
    assert summary.frames_sampled == 8 and summary.crops + summary.duplicates_dropped == 8
    manifest = read_manifest(tmp_path / "ds" / "manifest.csv")
    # A followed frame's crop is aligned from ONet's landmarks by the same align_face as a detected one.
    from vision.face_tracking import FaceFollower, FollowConfig

    followed = {i: (frame, faces) for i, frame, faces in FaceFollower(detector, FollowConfig(keyframe_every=4))
                .follow(sample_frames(root / "fake" / "clip.mp4", fps=8.0))}
    row = manifest[manifest["frame"] == 1].iloc[0]
    crop = cv2.cvtColor(cv2.imread(row["path"]), cv2.COLOR_BGR2RGB)
    frame, faces = followed[1]
    expected = align_face(frame, faces[0].landmarks, size=config.size, margin=config.margin)
    assert np.abs(crop.astype(int) - expected.astype(int)).mean() < 2  # JPEG only
    assert row["confidence"] == round(faces[0].confidence, 4)
    assert json.loads((tmp_path / "ds" / "build_config.json").read_text())["keyframe_every"] == 4
    with pytest.raises(ValueError, match=r"other crop settings \(\['keyframe_every'\]\)"):
        build_dataset([root], tmp_path / "ds", BuildConfig(fps=8.0, hash_distance=0, keyframe_every=1),
                      show_progress=False)


def test_cli_keyframe_flag(tmp_path, capsys):
    from training.dataset_cli import build_parser

    assert build_parser().parse_args(["build", "x", "--out", "o"]).keyframe_every == BuildConfig().keyframe_every
    noise_images(tmp_path / "data", groups=1)
    assert dataset_main(["build", str(tmp_path / "data"), "--out", str(tmp_path / "o"),
                         "--keyframe-every", "0"]) == 2
    err = capsys.readouterr().err
    # One line naming the field and the value received.
    assert err.count("\n") == 1 and "keyframe_every" in err and "received 0." in err


def test_rules_across_build_settings_say_what_they_received():
    with pytest.raises(ValueError, match=r"val \+ test < 1\), received val=0.5, test=0.5"):
        BuildConfig(val=0.5, test=0.5)
    with pytest.raises(ValueError, match=r"Give fps or frames, not both \(received fps=2.0, frames=4\)"):
        BuildConfig(fps=2.0, frames=4)
