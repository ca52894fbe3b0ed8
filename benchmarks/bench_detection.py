"""Face detection on whole videos, before and after the face gate and the light correction.

Usage:
    python benchmarks/bench_detection.py [--videos ../shared/data/videos/fake] [--every 10]
        [--out benchmarks/results/detection.json]

Every ``--every``-th frame of each video is run through two detectors: "before" (MTCNN with
only the confidence and size thresholds, as shipped before the gate: no light correction, no
retry, no landmark geometry, no second look) and "after" (the default `FaceDetector`). For each
it reports the share of frames where the video's real face is found, the boxes returned, the
boxes that are not the real face, and seconds per frame. The real face's region in each shipped
DFDC video was marked by hand (REFERENCE below); a box counts as that face when its centre lies
in the region.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from harness import REPO, bench_parser, setup, stamp, write_json

setup(tf_log_level="3")

# Hand-marked region (x0, y0, x1, y1, in 1920x1080 pixels) holding the face's centre over the
# whole clip, for the two videos in ../shared/data/videos/fake.
REFERENCE = {
    "abofeumbvv.mp4": (870, 140, 1030, 320),
    "abqwwspghj.mp4": (760, 60, 1060, 340),
}


def _is_reference(box, region) -> bool:
    x, y, w, h = box
    cx, cy = x + w / 2, y + h / 2
    return region[0] <= cx <= region[2] and region[1] <= cy <= region[3]


def measure(detector, frames, region) -> dict:
    """Counts for one detector over one video's frames."""
    found = boxes = spurious = 0
    spurious_at: list[int] = []
    start = time.perf_counter()
    for frame in frames:
        faces = detector.detect(frame.rgb)
        boxes += len(faces)
        real = [f for f in faces if region is None or _is_reference(f.box, region)]
        found += bool(real)
        if len(faces) > len(real):
            spurious += len(faces) - len(real)
            spurious_at.append(frame.index)
    seconds = time.perf_counter() - start
    return {
        "frames": len(frames),
        "frames_with_face": found,
        "share_with_face": round(found / max(len(frames), 1), 4),
        "boxes": boxes,
        "spurious_boxes": spurious,
        "spurious_frames": spurious_at,
        "s_per_frame": round(seconds / max(len(frames), 1), 3),
    }


def main() -> None:
    import cv2

    from vision.face_detector import FaceDetector, FaceGate
    from vision.media import sample_frames

    parser = bench_parser(__doc__, out="detection.json")
    parser.add_argument("--videos", default=str(REPO.parent / "shared/data/videos/fake"),
                        help="folder of videos (default: ../shared/data/videos/fake)")
    parser.add_argument("--every", type=int, default=10, help="use every N-th frame (default 10)")
    args = parser.parse_args()
    detectors = {
        "before": FaceDetector(enhance=False, retry=False,
                               gate=FaceGate(geometry=False, verify=False)),
        "after": FaceDetector(),
    }
    videos = sorted(p for p in Path(args.videos).iterdir() if p.suffix.lower() in (".mp4", ".mov", ".avi", ".webm"))
    result: dict = {
        **stamp(),
        "every_nth_frame": args.every,
        "videos": {},
    }
    for video in videos:
        info = cv2.VideoCapture(str(video))
        native = info.get(cv2.CAP_PROP_FPS) or 25.0
        info.release()
        frames = list(sample_frames(video, fps=native / args.every))
        luma = [float(cv2.cvtColor(f.rgb, cv2.COLOR_RGB2GRAY).mean()) for f in frames]
        region = REFERENCE.get(video.name)
        entry = {"mean_brightness": round(sum(luma) / len(luma), 1)}
        for name, detector in detectors.items():
            entry[name] = measure(detector, frames, region)
        result["videos"][video.name] = entry
        print(video.name, json.dumps(entry))
    write_json(args.out, result)


if __name__ == "__main__":
    main()
