"""Dataset builder throughput: face crops per CPU-second from video, recall of followed faces, --no-detect build.

Usage:
    python benchmarks/bench_dataset.py [--videos DIR] [--dfdc DIR] [--fps 10] [--keyframe-every 1,8]
                                       [--dfdc-limit N] [--no-stages] [--cli]

For each keyframe interval the whole builder runs on the videos; crops (kept + near-duplicates)
are counted per CPU-second of this process and its children (user + system, all threads).
Recall compares the faces found with that interval against full detection on every sampled
frame (a face counts as found when a box overlaps it by IoU >= 0.5). Prints and saves JSON to
benchmarks/results/dataset.json. Goal: >= 20 face crops per CPU-second from video. Needs
../shared/data (never committed); not a test.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from harness import REPO, bench_parser, setup, write_json

setup()

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from vision.alignment import align_face  # noqa: E402
from vision.video import iou  # noqa: E402
from training.dataset import BuildConfig, build_dataset  # noqa: E402
from training.dataset_work import open_detector, open_follower  # noqa: E402
from training.video import sample_frames  # noqa: E402

GOAL_CROPS_PER_CORE_S = 20.0
MATCH_IOU = 0.5  # a followed face matches a fully detected one at this box overlap


def cpu_seconds() -> float:
    """CPU seconds (user + system) of this process and of its finished children so far."""
    times = os.times()
    return times.user + times.system + times.children_user + times.children_system


def cores_used() -> int:
    """CPU cores this process may run on (TensorFlow's thread pools use all of them)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def bench_video_stages(videos: list[Path], fps: float, config: BuildConfig) -> dict:
    """Times decode, detection and alignment separately (CPU seconds, all threads)."""
    detector = open_detector(config)
    decode_cpu = detect_cpu = align_cpu = 0.0
    frames = faces = 0
    for video in videos:
        clock = time.process_time()
        sampled = list(sample_frames(video, fps=fps))
        decode_cpu += time.process_time() - clock
        for start in range(0, len(sampled), config.batch_frames):
            batch = [f for _, f in sampled[start:start + config.batch_frames]]
            clock = time.process_time()
            found = detector.detect_batch(batch)
            detect_cpu += time.process_time() - clock
            clock = time.process_time()
            for image, hits in zip(batch, found):
                for face in hits[:1]:
                    align_face(image, face.landmarks, size=config.size, margin=config.margin)
                    faces += 1
            align_cpu += time.process_time() - clock
        frames += len(sampled)
    return {
        "frames": frames,
        "faces": faces,
        "decode_cpu_s_per_frame": round(decode_cpu / max(frames, 1), 4),
        "detect_cpu_s_per_frame": round(detect_cpu / max(frames, 1), 4),
        "align_cpu_s_per_face": round(align_cpu / max(faces, 1), 5),
    }


def warm_up(video: Path, fps: float, config: BuildConfig) -> None:
    """Untimed: finds the faces of one video as ``config`` would, so that TensorFlow has made its
    kernels for these batch and image shapes (as it has after the first videos of a long build)."""
    follower = open_follower(open_detector(config), config)
    for _ in follower.follow(sample_frames(video, fps=fps)):
        pass


def bench_video_build(videos_dir: Path, fps: float, config: BuildConfig) -> dict:
    """The whole builder on videos: crops (kept + near-duplicates) per wall and CPU second."""
    with tempfile.TemporaryDirectory() as tmp:
        wall, cpu = time.perf_counter(), cpu_seconds()
        summary = build_dataset([videos_dir], Path(tmp) / "ds", config, show_progress=False)
        wall, cpu = time.perf_counter() - wall, cpu_seconds() - cpu
    extracted = summary.crops + summary.duplicates_dropped
    per_cpu = extracted / cpu if cpu > 0 else 0.0
    return {
        "keyframe_every": config.keyframe_every,
        "videos": summary.sources,
        "fps_sampled": fps,
        "frames_sampled": summary.frames_sampled,
        "face_crops_extracted": extracted,
        "crops_kept": summary.crops,
        "duplicates_dropped": summary.duplicates_dropped,
        "wall_s": round(wall, 2),
        "cpu_s": round(cpu, 2),
        "cores_available": cores_used(),
        "crops_per_s_wall": round(extracted / wall, 2),
        "crops_per_cpu_s": round(per_cpu, 2),
        "goal_crops_per_cpu_s": GOAL_CROPS_PER_CORE_S,
        "goal_met": per_cpu >= GOAL_CROPS_PER_CORE_S,
    }


def bench_cli(videos_dir: Path, fps: float, keyframe_every: int) -> dict:
    """`fakeface dataset build` as a new process: CPU of the child, start-up (imports, TensorFlow) included."""
    import subprocess

    with tempfile.TemporaryDirectory() as tmp:
        command = [sys.executable, "-m", "fakeface.cli", "dataset", "build", str(videos_dir), "--out",
                   str(Path(tmp) / "ds"), "--fps", str(fps), "--keyframe-every", str(keyframe_every),
                   "--val", "0", "--test", "0", "--quiet"]
        wall, cpu = time.perf_counter(), cpu_seconds()
        subprocess.run(command, check=True, capture_output=True, cwd=REPO)
        wall, cpu = time.perf_counter() - wall, cpu_seconds() - cpu
        summary = json.loads((Path(tmp) / "ds" / "summary.json").read_text())
    extracted = summary["crops"] + summary["duplicates_dropped"]
    return {"keyframe_every": keyframe_every, "face_crops_extracted": extracted, "wall_s": round(wall, 2),
            "cpu_s": round(cpu, 2), "crops_per_cpu_s": round(extracted / cpu, 2) if cpu > 0 else 0.0}


def _match(reference: list, found: list) -> tuple[int, list[float]]:
    """Greedy IoU matching of one frame's faces; (matched, landmark errors / eye distance)."""
    matched, errors, used = 0, [], set()
    for face in reference:
        scored = [(iou(face.box, other.box), j) for j, other in enumerate(found) if j not in used]
        overlap, j = max(scored, default=(0.0, -1))
        if overlap < MATCH_IOU:
            continue
        matched += 1
        used.add(j)
        eyes = float(np.linalg.norm(face.landmarks[1] - face.landmarks[0]))
        errors.append(float(np.linalg.norm(face.landmarks - found[j].landmarks, axis=1).mean()) / max(eyes, 1.0))
    return matched, errors


def usable_faces(follower, video: Path, fps: float, min_face: int) -> dict[int, list]:
    """Frame index -> the faces the builder could use (at least ``min_face`` px), for one video."""
    return {i: [f for f in faces if min(f.box[2:]) >= min_face]
            for i, _, faces in follower.follow(sample_frames(video, fps=fps))}


def bench_recall(videos: list[Path], fps: float, config: BuildConfig, intervals: list[int]) -> list[dict]:
    """Faces found with each keyframe interval against full detection on every sampled frame.

    Only faces the builder could use count; landmark error is the mean distance of the five
    landmarks from the fully detected ones, in eye distances.
    """
    detector = open_detector(config)
    full = open_follower(detector, replace_keyframes(config, 1))
    reference = {video: usable_faces(full, video, fps, config.min_face) for video in videos}
    results = []
    for keyframe_every in intervals:
        follower = open_follower(detector, replace_keyframes(config, keyframe_every))
        per_video, errors = {}, []
        for video in videos:
            found = usable_faces(follower, video, fps, config.min_face)
            total = hits = extra = 0
            for index, faces in reference[video].items():
                others = found.get(index, [])
                matched, errs = _match(faces, others)
                total, hits, extra = total + len(faces), hits + matched, extra + len(others) - matched
                errors.extend(errs)
            per_video[video.name] = {"faces_full_detection": total, "found": hits,
                                     "recall": round(hits / total, 4) if total else None, "extra": extra}
        total = sum(v["faces_full_detection"] for v in per_video.values())
        hits = sum(v["found"] for v in per_video.values())
        stats = follower.stats
        results.append({
            "keyframe_every": keyframe_every,
            "faces_full_detection": total,
            "faces_found": hits,
            "recall": round(hits / total, 4) if total else None,
            "extra_faces": sum(v["extra"] for v in per_video.values()),
            "landmark_error_eye_dist_mean": round(float(np.mean(errors)), 4) if errors else None,
            "landmark_error_eye_dist_p95": round(float(np.percentile(errors, 95)), 4) if errors else None,
            "frames": stats.frames,
            "full_detections": stats.full_detections,
            "followed_frames": stats.followed,
            "lost_tracks": stats.lost,
            "per_video": per_video,
        })
    return results


def replace_keyframes(config: BuildConfig, keyframe_every: int) -> BuildConfig:
    """``config`` with another keyframe interval."""
    return replace(config, keyframe_every=keyframe_every)


def bench_manifest(dfdc: Path, limit: int | None) -> dict:
    """A --no-detect build of DFDC crops (optionally the first `limit` rows of its metadata.csv)."""
    dfdc = dfdc.resolve()  # the subset CSV lives elsewhere: its paths must not be relative
    with tempfile.TemporaryDirectory() as tmp:
        inputs: list[Path] = [dfdc]
        if limit:
            subset = pd.read_csv(dfdc / "metadata.csv").head(limit)
            subset["path"] = [str(dfdc / p) for p in subset["path"]]
            inputs = [Path(tmp) / "subset.csv"]
            subset.to_csv(inputs[0], index=False)
        wall = time.perf_counter()
        summary = build_dataset(inputs, Path(tmp) / "ds", BuildConfig(detect=False), show_progress=False)
        wall = time.perf_counter() - wall
    return {
        "images": summary.sources,
        "crops": summary.crops,
        "groups": summary.groups,
        "by_split": summary.by_split,
        "wall_s": round(wall, 2),
        "images_per_s": round(summary.sources / wall, 1),
        "rejects": summary.rejects,
    }


def main(argv: list[str] | None = None) -> int:
    parser = bench_parser(__doc__)
    parser.add_argument("--videos", default=str(REPO.parent / "shared/data/videos"))
    parser.add_argument("--dfdc", default=str(REPO.parent / "shared/data/dfdc"))
    parser.add_argument("--fps", type=float, default=10.0, help="frames sampled per second of video")
    parser.add_argument("--keyframe-every", default=f"1,{BuildConfig.keyframe_every}",
                        help="comma-separated keyframe intervals to build with (1 = detect on every frame)")
    parser.add_argument("--dfdc-limit", type=int, default=None, help="only the first N DFDC images")
    parser.add_argument("--no-dfdc", action="store_true", help="skip the --no-detect DFDC build")
    parser.add_argument("--no-stages", action="store_true", help="skip the per-stage timing of full detection")
    parser.add_argument("--cli", action="store_true", help="also time `fakeface dataset build` as a new process")
    parser.add_argument("--cold", action="store_true",
                        help="time each build without first warming TensorFlow up on the first video")
    parser.add_argument("--out", default=str(Path(__file__).resolve().parent / "results" / "dataset.json"))
    args = parser.parse_args(argv)
    videos_dir = Path(args.videos)
    videos = sorted(p for p in videos_dir.rglob("*") if p.suffix.lower() in (".mp4", ".avi", ".mov", ".mkv"))
    if not videos:
        print(f"bench_dataset: no videos under {videos_dir}; pass --videos DIR", file=sys.stderr)
        return 2
    try:
        intervals = [int(k) for k in args.keyframe_every.split(",")]
    except ValueError:
        print(f"bench_dataset: --keyframe-every wants integers like 1,8, received {args.keyframe_every!r}",
              file=sys.stderr)
        return 2
    config = BuildConfig(fps=args.fps, val=0.0, test=0.0)
    result: dict = {"machine": {"cores_available": cores_used(), "load_avg_1m": round(os.getloadavg()[0], 2)},
                    "videos": [str(v) for v in videos]}
    if not args.no_stages:  # also warms TensorFlow up before the timed builds
        result["video_stages"] = bench_video_stages(videos, args.fps, config)
    if not args.cold:
        for k in intervals:
            warm_up(videos[0], args.fps, replace_keyframes(config, k))
    result["warm"] = not args.cold
    result["video_build"] = [bench_video_build(videos_dir, args.fps, replace_keyframes(config, k)) for k in intervals]
    result["recall"] = bench_recall(videos, args.fps, config, [k for k in intervals if k != 1])
    if args.cli:
        result["cli"] = [bench_cli(videos_dir, args.fps, k) for k in intervals]
    if not args.no_dfdc:
        result["dfdc_no_detect"] = bench_manifest(Path(args.dfdc), args.dfdc_limit)
    result["machine"]["load_avg_1m_end"] = round(os.getloadavg()[0], 2)
    write_json(args.out, result, echo=True)
    best = max(result["video_build"], key=lambda r: r["crops_per_cpu_s"])
    if not best["goal_met"]:
        print(f"note: below the goal of {GOAL_CROPS_PER_CORE_S} crops per CPU-second (best "
              f"{best['crops_per_cpu_s']} at --keyframe-every {best['keyframe_every']})", file=sys.stderr)
    return 0


if __name__ == "__main__":
    np.seterr(all="ignore")
    raise SystemExit(main())
