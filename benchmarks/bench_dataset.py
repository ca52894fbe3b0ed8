"""Dataset builder throughput: face crops per second from video, and a --no-detect manifest build.

Usage:
    python benchmarks/bench_dataset.py [--videos DIR] [--dfdc DIR] [--fps 10] [--dfdc-limit N]

Prints and saves JSON to benchmarks/results/dataset.json. Goal: >= 20 face crops/s per core
from video. Needs /work/shared/data (never committed); not a test.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from blackboard.faces import align_face  # noqa: E402
from training.dataset import BuildConfig, build_dataset  # noqa: E402
from training.dataset_work import open_detector  # noqa: E402
from training.video import sample_frames  # noqa: E402

GOAL_CROPS_PER_CORE_S = 20.0


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


def bench_video_build(videos_dir: Path, fps: float, config: BuildConfig) -> dict:
    """The whole builder on videos: crops (kept + near-duplicates) per wall and CPU second."""
    with tempfile.TemporaryDirectory() as tmp:
        wall, cpu = time.perf_counter(), time.process_time()
        summary = build_dataset([videos_dir], Path(tmp) / "ds", config, show_progress=False)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    extracted = summary.crops + summary.duplicates_dropped
    cores = cores_used()
    per_core = extracted / cpu if cpu > 0 else 0.0
    return {
        "videos": summary.sources,
        "fps_sampled": fps,
        "frames_sampled": summary.frames_sampled,
        "face_crops_extracted": extracted,
        "crops_kept": summary.crops,
        "duplicates_dropped": summary.duplicates_dropped,
        "wall_s": round(wall, 2),
        "cpu_s": round(cpu, 2),
        "cores_available": cores,
        "crops_per_s_wall": round(extracted / wall, 2),
        "crops_per_cpu_s": round(per_core, 2),
        "goal_crops_per_core_s": GOAL_CROPS_PER_CORE_S,
        "goal_met": per_core >= GOAL_CROPS_PER_CORE_S,
    }


def bench_manifest(dfdc: Path, limit: int | None) -> dict:
    """A --no-detect build of DFDC crops (optionally the first `limit` rows of its metadata.csv)."""
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
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--videos", default="/work/shared/data/videos")
    parser.add_argument("--dfdc", default="/work/shared/data/dfdc")
    parser.add_argument("--fps", type=float, default=10.0, help="frames sampled per second of video")
    parser.add_argument("--dfdc-limit", type=int, default=None, help="only the first N DFDC images")
    parser.add_argument("--out", default=str(Path(__file__).resolve().parent / "results" / "dataset.json"))
    args = parser.parse_args(argv)
    videos_dir = Path(args.videos)
    videos = sorted(p for p in videos_dir.rglob("*") if p.suffix.lower() in (".mp4", ".avi", ".mov", ".mkv"))
    if not videos:
        print(f"bench_dataset: no videos under {videos_dir}; pass --videos DIR", file=sys.stderr)
        return 2
    config = BuildConfig(fps=args.fps, val=0.0, test=0.0)
    result = {
        "machine": {"cores_available": cores_used(), "load_avg_1m": round(os.getloadavg()[0], 2)},
        "video_stages": bench_video_stages(videos, args.fps, config),
        "video_build": bench_video_build(videos_dir, args.fps, config),
        "dfdc_no_detect": bench_manifest(Path(args.dfdc), args.dfdc_limit),
    }
    result["machine"]["load_avg_1m_end"] = round(os.getloadavg()[0], 2)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(result, indent=2))
    os.replace(tmp, out)
    print(json.dumps(result, indent=2))
    if not result["video_build"]["goal_met"]:
        print(f"note: below the goal of {GOAL_CROPS_PER_CORE_S} crops/s per core; MTCNN detection dominates "
              "(see video_stages)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    np.seterr(all="ignore")
    raise SystemExit(main())
