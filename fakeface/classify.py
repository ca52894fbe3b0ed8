"""`fakeface classify PATH...`: verdicts for images, screenshots and videos.

Without ``--server`` the ensemble runs in this process on the default bundle (``--bundle`` to
choose), so one screenshot needs one command and no server. With ``--server HOST:PORT`` the
files go to a running `fakeface serve`. Every face gets a row; videos get one row per face track
(mean p_fake over the track's frames) and one for the whole video.

Exit codes: 0 all files classified, 2 bad input (usage, missing file, not an image/video),
1 service failure (server unreachable, credentials refused, models not loadable).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

import numpy as np

from fakeface.rpc.fakeface.v1 import detector_pb2 as pb
from fakeface.rpc_convert import verdict_name
from fakeface.service_calls import DEFAULT_MESSAGE_BYTES
from vision.face_args import add_detect_arg, add_fps_arg

TOKEN_ENV = "FAKEFACE_TOKEN"
# A frame sent to a server: what fits its default gRPC message with the request around it.
FRAME_BYTES = DEFAULT_MESSAGE_BYTES - 64 * 1024


def build_parser(prog: str = "fakeface classify") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description=__doc__.splitlines()[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("paths", nargs="+", metavar="PATH", help="images (JPEG/PNG/WebP/HEIC/AVIF/BMP) or videos (mp4/avi/mov/mkv)")
    parser.add_argument("--server", metavar="HOST:PORT", default=None, help="use a running `fakeface serve`")
    parser.add_argument("--bundle", default=None, help="bundle for in-process mode (None: the shipped bundle)")
    parser.add_argument("--ray-address", default=None,
                        help="in-process mode: run the Ray Serve ensemble on this cluster (default: $RAY_ADDRESS, "
                             "else the models run in this process without Ray)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.add_argument("--annotate", metavar="OUT.png", default=None,
                        help="write the image with boxes and verdicts (several inputs: OUT-<n>-<name>.png)")
    parser.add_argument("--heatmaps", action="store_true", help="add each agent's heat map to --annotate (or why it shows none)")
    parser.add_argument("--token", default=None, help=f"bearer token for --server (None: ${TOKEN_ENV})")
    parser.add_argument("--tls-ca", default=None, help="PEM certificate to trust for a TLS --server")
    add_detect_arg(parser)
    add_fps_arg(parser)
    parser.add_argument("--max-frames", type=int, default=60, help="most frames sampled per video")
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds per server call")
    return parser


# --------------------------------------------------------------------------- results


def face_to_dict(face: pb.Face, *, time_s: float | None = None) -> dict[str, Any]:
    """A plain view of one face answer (heatmaps kept as PNG bytes, dropped from JSON later; the
    reasons agents' maps were withheld kept as text, ``heatmap_notes``)."""
    out = {
        "index": int(face.index),
        "box": (face.box.x, face.box.y, face.box.width, face.box.height),
        "verdict": verdict_name(face.label),
        "p_fake": float(face.p_fake),
        "threshold": float(face.threshold),
        "votes": {v.agent: {"p_fake": float(v.p_fake), "weight": float(v.weight), "latency_ms": float(v.latency_ms),
                            "context_shift": float(v.context_shift)} for v in face.votes},
        "context": {k: float(v) for k, v in sorted(face.context.items())},  # the condition the controller saw
        "reason": face.uncertain_reason,  # why the verdict is "uncertain"; "" otherwise
        "ood_score": float(face.ood_score) if face.HasField("ood_score") else None,
        "degraded": bool(face.degraded),
        "missing_agents": list(face.missing_agents),
        "detector_confidence": float(face.detector_confidence),
        "heatmaps": {h.agent: h.png for h in face.heatmaps if h.png},
        "heatmap_notes": {h.agent: h.withheld for h in face.heatmaps if h.withheld},
    }
    if time_s is not None:
        out["time_s"] = time_s
    return out


def response_meta(resp: pb.ClassifyResponse) -> dict[str, Any]:
    """Request id, versions and timings of one answer (shared by the CLI's JSON and the web page)."""
    return {
        "request_id": resp.request_id,
        "bundle_version": resp.bundle_version,
        "controller_version": resp.controller_version,
        "timings_ms": {k: round(v, 2) for k, v in resp.timings_ms.items()},
    }


class Runner:
    """Classifies files with a backend: a `DetectorClient` or a `LocalDetector`."""

    def __init__(self, backend: Any, args: argparse.Namespace) -> None:
        from fakeface.client import DetectorClient

        self.backend = backend
        self.args = args
        self.remote = isinstance(backend, DetectorClient)

    def image(self, path: Path) -> tuple[dict[str, Any], Any]:
        """Result dict and the decoded RGB image (for --annotate)."""
        from vision.media import read_image

        # A server decodes the bytes itself; here pixels are needed in-process or to annotate.
        rgb = read_image(path) if not self.remote or self.args.annotate else None
        want = bool(self.args.heatmaps)
        if self.remote:
            resp = self.backend.classify(path.read_bytes(), detect=self.args.detect, heatmaps=want,
                                         source=path.name, timeout_s=self.args.timeout)
        else:
            resp = self.backend.classify_rgb(rgb, detect=self.args.detect, heatmaps=want, source=path.name,
                                             timeout_s=self.args.timeout)
        result = {"file": str(path), "kind": "image", **response_meta(resp),
                  "faces": [face_to_dict(f) for f in resp.faces], "no_face_reason": resp.no_face_reason}
        return result, rgb

    def _frame_answers(self, path: Path):
        """(frame, response) pairs for the sampled frames, streamed when remote."""
        from vision.media import encode_frame
        from vision.media import sample_frames

        frames = sample_frames(path, fps=self.args.fps, max_frames=self.args.max_frames)
        want = bool(self.args.heatmaps)
        if not self.remote:
            for frame in frames:
                yield frame, self.backend.classify_rgb(frame.rgb, detect=self.args.detect, heatmaps=want,
                                                       source=f"{path.name}@{frame.index}",
                                                       timeout_s=self.args.timeout)
            return
        pending: dict[int, Any] = {}

        def requests():
            for seq, frame in enumerate(frames):
                pending[seq] = frame
                # PNG keeps the frame's pixels exactly as decoded (no second lossy pass) when it
                # fits a server's default message limit; a 4K frame goes as JPEG q95 instead.
                yield self.backend.request(encode_frame(frame.rgb, FRAME_BYTES), detect=self.args.detect, heatmaps=want,
                                           source=f"{path.name}@{frame.index}", sequence_id=seq)

        for resp in self.backend.classify_stream(requests(), timeout_s=self.args.timeout * self.args.max_frames):
            frame = pending.pop(resp.sequence_id)
            if resp.error_code:
                print(f"fakeface classify: {path} frame {frame.index}: {resp.error_message}", file=sys.stderr)
                continue
            yield frame, resp

    def video(self, path: Path) -> tuple[dict[str, Any], Any]:
        """Result dict (tracks + video verdict) and the frame the verdict's own rule shows
        (`vision.video.shown_frame`), so the picture agrees with the answer."""
        from vision.video import FaceTracker, shown_frame, summarize_track, summarize_video
        import cv2

        tracker = FaceTracker()
        kept: dict[int, tuple[bytes, list[dict[str, Any]]]] = {}  # sample -> (JPEG copy, its faces)
        sampled = 0
        meta: dict[str, Any] = {}
        shape: tuple[int, ...] = ()
        for frame, resp in self._frame_answers(path):
            meta, shape = response_meta(resp), frame.rgb.shape
            faces = [{**face_to_dict(f, time_s=frame.time_s), "sample": sampled, "request_id": resp.request_id}
                     for f in resp.faces if f.label != pb.LABEL_UNSPECIFIED]
            tracker.update(faces)
            if self.args.annotate and faces:
                # A JPEG copy (~0.3 MB for 1080p) rather than the pixels: 60 raw frames would be 0.4 GB.
                kept[sampled] = (cv2.imencode(".jpg", frame.rgb[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, 95])[1].tobytes(),
                                 faces)
            sampled += 1
        if sampled == 0:
            from vision.media import ImageError

            raise ImageError(f"{path}: no frame could be read from the video")
        tracks = [summarize_track(t) for t in tracker.tracks]
        meta.pop("request_id", None)
        meta.pop("timings_ms", None)
        result = {"file": str(path), "kind": "video", **meta, "frames_sampled": sampled, "fps": self.args.fps,
                  "tracks": tracks, **summarize_video(tracks)}
        if not tracks and shape:  # how large a face must be to be found, as an image's answer says
            from vision.face_detector import smallest_face_note

            result["reason"] += f" ({smallest_face_note(shape, 'frame')})"
        position = shown_frame(tracks, result)
        picture, faces = None, []
        if position is not None:
            face = next(t for t in tracker.tracks if t.id == result["deciding_track"]).faces[position]
            result["shown"] = {"track": result["deciding_track"], "time_s": face.get("time_s", 0.0),
                               "p_fake": face["p_fake"], "label": tracks[result["deciding_track"]]["timeline"][position]["label"],
                               "request_id": face["request_id"]}
            if face["sample"] in kept:
                data, faces = kept[face["sample"]]
                picture = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)[:, :, ::-1].copy()
        result["_annotate_faces"] = faces
        return result, picture


# --------------------------------------------------------------------------- output


def _vote_text(votes: dict[str, dict[str, float]], agent: str) -> str:
    v = votes.get(agent)
    return "-" if v is None else f"{v['p_fake']:.2f}/w{v['weight']:.2f}"


def table_rows(results: list[dict[str, Any]]) -> tuple[list[str], list[list[str]]]:
    """Header and rows: one per face (images), per face track and per video, per failed file."""
    agents = sorted({a for r in results for f in r.get("faces", []) + r.get("tracks", []) for a in f["votes"]})
    header = ["file", "face", "verdict", "p_fake", "thr", *[f"{a} p/w" for a in agents], "degraded"]
    rows = []
    for r in results:
        name = os.path.basename(r["file"])
        if "error" in r:
            rows.append([name, "-", "error", "", "", *["" for _ in agents], r["error"]])
        elif r["kind"] == "image" and not r["faces"]:
            rows.append([name, "-", "no face", "", "", *["" for _ in agents], r["no_face_reason"]])
        elif r["kind"] == "image":
            for f in r["faces"]:
                rows.append([name, f"#{f['index']}", f["verdict"], f"{f['p_fake']:.3f}", f"{f['threshold']:.2f}",
                             *[_vote_text(f["votes"], a) for a in agents],
                             "; ".join(filter(None, [("yes: " + ",".join(f["missing_agents"])) if f["degraded"]
                                                     else "", f.get("reason", "")]))])
        else:
            for t in r["tracks"]:
                rows.append([name, f"track {t['track']} ({t['frames']} fr)", t["verdict"], f"{t['p_fake']:.3f}",
                             f"{t['threshold']:.2f}", *[_vote_text(t["votes"], a) for a in agents],
                             "; ".join(filter(None, ["yes" if t["degraded"] else "", t.get("reason", "")]))])
            p = r["p_fake"]
            rows.append([name, "video", r["verdict"], "" if p is None else f"{p:.3f}", "", *["" for _ in agents],
                         "; ".join(filter(None, [f"{r['frames_sampled']} frames", r.get("reason", "")]))])
    return header, rows


def format_table(results: list[dict[str, Any]]) -> str:
    header, rows = table_rows(results)
    widths = [max(len(str(c)) for c in col) for col in zip(header, *rows)]
    lines = ["  ".join(str(c).ljust(w) for c, w in zip(line, widths)).rstrip() for line in [header, *rows]]
    lines.insert(1, "  ".join("-" * w for w in widths))
    notes = []
    if any(r.get("kind") == "video" for r in results):
        from vision.video import VIDEO_RULE

        notes.append(f"videos: {VIDEO_RULE}")
    notes.append("p/w = the agent's p_fake / its share of the verdict's evidence (0: it argued the other way).")
    return "\n".join(lines + [""] + notes)


def json_ready(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Results without private keys or heatmap bytes."""
    out = []
    for r in results:
        r = {k: v for k, v in r.items() if not k.startswith("_")}
        if "faces" in r:
            r["faces"] = [{k: v for k, v in f.items() if k != "heatmaps"} for f in r["faces"]]
        out.append(r)
    return out


# --------------------------------------------------------------------------- main


def _fail(message: str, code: int) -> int:
    print(f"fakeface classify: {message}", file=sys.stderr)
    return code


def precheck(path: Path) -> str | None:
    """Why ``path`` cannot be classified, from its header alone (None when it looks usable)."""
    if not path.is_file():
        return "no such file" if not path.exists() else "not a file"
    from vision.media import is_video

    if is_video(path):
        import cv2

        capture = cv2.VideoCapture(str(path))
        try:
            return None if capture.isOpened() else "not a readable video (the container or codec is not supported)"
        finally:
            capture.release()
    from fakeface.serve.admission import InputLimits, inspect_image
    from vision.media import ImageError

    try:
        inspect_image(path.read_bytes(), InputLimits())
    except OSError as err:
        return f"cannot read file ({err.strerror or err})"
    except ImageError as err:
        return str(err)
    return None


def _make_backend(args: argparse.Namespace, paths: list[Path]):
    from fakeface.client import DetectorClient, LocalDetector
    from vision.faces import will_detect

    if args.server:
        token = args.token or os.environ.get(TOKEN_ENV) or None
        client = DetectorClient(args.server, token=token, tls_ca=args.tls_ca, timeout_s=args.timeout)
        return client
    return LocalDetector(args.bundle, ray_address=args.ray_address or os.environ.get("RAY_ADDRESS") or None,
                         preload_detector=will_detect(paths, args.detect))


def main(argv: list[str]) -> int:
    """Classifies every PATH and prints a table (or JSON); see the module docstring for exit codes."""
    args = build_parser().parse_args(argv)
    if args.heatmaps and not args.annotate:
        return _fail("--heatmaps draws into the annotated image: add --annotate OUT.png.", 2)
    if args.server and args.bundle:
        return _fail("--bundle is for in-process mode; a server classifies with its own bundle.", 2)
    if args.fps <= 0 or args.max_frames < 1 or args.timeout <= 0:
        return _fail(f"--fps, --max-frames and --timeout must be positive; received {args.fps}, "
                     f"{args.max_frames}, {args.timeout}.", 2)
    if args.tls_ca and not os.path.isfile(args.tls_ca):
        return _fail(f"--tls-ca {args.tls_ca}: no such file.", 2)
    if args.annotate:
        from vision.annotate import annotate_path_problem

        reason = annotate_path_problem(args.annotate)
        if reason:
            return _fail(f"--annotate {args.annotate}: {reason}", 2)

    from fakeface.client import ClientError
    from vision.media import ImageError

    paths = [Path(p) for p in args.paths]
    results: list[dict[str, Any]] = [{"file": str(p)} for p in paths]  # filled in input order
    bad_input = False
    todo = []
    for slot, path in enumerate(paths):
        # Every input is checked (cheaply: headers only) before Ray and TensorFlow start.
        reason = precheck(path)
        if reason is not None:
            bad_input = True
            results[slot]["error"] = reason
            print(f"fakeface classify: {path}: {reason}.", file=sys.stderr)
        else:
            todo.append((slot, path))
    backend = None
    try:
        if todo:
            try:
                backend = _make_backend(args, [path for _, path in todo])
            except ClientError as err:
                return _fail(str(err), err.exit_code)
            except ValueError as err:  # BundleError: missing or damaged bundle, with its fix
                return _fail(str(err), 2)
            except OSError as err:
                return _fail(f"cannot start: {err}", 1)
        runner = Runner(backend, args)
        from vision.media import is_video

        for slot, path in todo:
            try:
                result, rgb = runner.video(path) if is_video(path) else runner.image(path)
            except (ImageError, ValueError) as err:
                bad_input = True
                message = str(err) if str(path) in str(err) else f"{path}: {err}"
                results[slot]["error"] = message
                print(f"fakeface classify: {message}", file=sys.stderr)
                continue
            except ClientError as err:
                if err.exit_code == 2:
                    bad_input = True
                    results[slot]["error"] = str(err)
                    print(f"fakeface classify: {path}: {err}", file=sys.stderr)
                    continue
                return _fail(str(err), err.exit_code)
            if args.annotate and rgb is not None:
                from vision.annotate import annotate, annotation_path, write_image

                faces = result.get("_annotate_faces", result.get("faces", []))
                if result["kind"] == "video":
                    faces = [{**f, "index": i} for i, f in enumerate(faces)]
                target = annotation_path(args.annotate, slot, path, len(paths))
                try:
                    result["annotated"] = str(write_image(target, annotate(rgb, faces)))
                except (OSError, ValueError) as err:  # the verdict stands; only its picture is lost
                    bad_input = True
                    result["annotate_error"] = f"{target}: {err}"
                    print(f"fakeface classify: {path}: the annotated image could not be written to {target} "
                          f"({err}); choose another --annotate path.", file=sys.stderr)
            results[slot] = result
    finally:
        if backend is not None:
            backend.close()
    if args.json:
        print(json.dumps(json_ready(results), indent=2, default=str))
    else:
        print(format_table(results))
        for r in results:
            if r.get("annotated"):
                print(f"annotated: {r['annotated']}")
    return 2 if bad_input else 0
