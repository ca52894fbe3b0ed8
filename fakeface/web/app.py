"""The web page's FastAPI app: one static page and a small JSON API over the `DetectorService`.

Every classification, feedback and model-info call goes to the same service the gRPC server
calls (`fakeface.service`), so the page gets the same decoding, limits, deadlines, metrics,
feedback log and controller safeguards as a gRPC client; its refusals become HTTP statuses in
`fakeface.web.guards`.

Routes (every ``/api`` route but ``/api/health`` needs ``Authorization: Bearer <token>`` when the
server runs with tokens, checked against the gRPC server's own tokens, `BearerTokens`):

==========================  ================================================================
``GET /``                   the page (inline script and style; nothing fetched from elsewhere)
``GET /api/health``         ``{"serving": bool, "auth": bool}``
``GET /api/info``           bundle, controller, threshold, limits and measured accuracy
``POST /api/classify``      body = the file's bytes; an image answers at once, a video
                            answers 202 with a job to poll
``GET /api/jobs/{id}``      a video's progress, then its per-track and clip verdicts
``POST /api/feedback``      ``{"request_id", "label"}``: the service's feedback; keeps the upload
``/api/admin/...``          the operator's controller promotion and rollback (`fakeface.web.admin`)
``GET /api/report/{id}``    the evidence report (one self-contained HTML file)
==========================  ================================================================

Uploads live in memory only (the last ``keep_results`` answers, for the report and feedback);
a video is written to a temporary file while its frames are read and deleted right after. An
upload is written to disk only when the person sends feedback on its answer.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import logging
import os
import shutil
import tempfile
import threading
import types
import uuid
from concurrent import futures
from importlib import resources
from pathlib import Path
from typing import Any

import cv2
from cachetools import LRUCache
from fastapi import Depends, FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from pydantic import ConfigDict, PositiveFloat, PositiveInt
from pydantic.dataclasses import dataclass

from agents.atomic import atomic_write_bytes
from fakeface.rpc_convert import case_to_proto
from fakeface.service import ClassifyOptions, DetectorService
from fakeface.service_calls import BAD_IMAGE, IMAGE_TOO_LARGE, MIB, RATE_LIMITED, Caller, ServiceRefusal
from fakeface.web.admin import add_admin_routes
from fakeface.web.guards import (FeedbackBody, WebRefusal, caller_of, read_capped, read_json, scrub_paths,
                                 token_checker, web_refusal)
from fakeface.web.report import LIMITS, TILE_PX, accuracy_statement, build_report, error_rates, trained_on
from fakeface.web.video import VIDEO_SUFFIX, ServiceBackend, sniff_video
from fakeface.web.views import face_view, png_data_uri, preview_data_uri, response_view

log = logging.getLogger("fakeface.web")
# The page's only sources are itself and data:/blob: URLs it makes (no fonts, scripts or images
# from elsewhere), and nothing may frame it.
CSP = ("default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; img-src 'self' data: blob:; "
       "media-src blob:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'")


@dataclass(frozen=True, config=ConfigDict(extra="forbid"))
class WebConfig:
    """How the page's API runs (the image limits come from the service's `ServerConfig`)."""

    max_video_bytes: PositiveInt = 64 * MIB  # largest video upload; bigger -> 413
    video_fps: PositiveFloat = 1.0  # frames sampled per second of video (as `fakeface classify`)
    video_max_frames: PositiveInt = 60  # most frames sampled per video (60 s at 1 fps)
    video_workers: PositiveInt = 1  # videos classified at the same time; more wait in the queue
    video_queue: PositiveInt = 4  # videos waiting or running; more -> 429
    keep_results: PositiveInt = 16  # recent answers (with their uploads) held in memory for report/feedback
    heatmaps: bool = True  # compute Grad-CAM heatmaps for image answers (the page's toggle shows them)
    upload_dir: str | None = None  # where feedback keeps uploads; None = "feedback-uploads" by the feedback log


def _mib(n: int) -> str:
    return f"{n / MIB:.1f} MiB"


class _Store:
    """The last ``size`` entries by id, least recently used forgotten first (thread-safe)."""

    def __init__(self, size: int) -> None:
        self._items: LRUCache[str, dict[str, Any]] = LRUCache(maxsize=size)
        self._lock = threading.Lock()

    def put(self, key: str, value: dict[str, Any]) -> None:
        with self._lock:
            self._items[key] = value

    def get(self, key: str) -> dict[str, Any] | None:
        with self._lock:
            return self._items.get(key)


def _refusal_response(err: WebRefusal) -> JSONResponse:
    # Scrubbed here, at the edge, whatever raised it: no server path reaches the page.
    return JSONResponse({"error": scrub_paths(err.message), "code": err.code}, status_code=err.status)


def create_app(service: DetectorService, config: WebConfig | None = None) -> FastAPI:
    """The page and its API on a running `DetectorService` (``DetectorServer.service``).

    Args:
        service: the service the gRPC server also calls; every classification, feedback and
            model-info call goes to it, so its limits, metrics, log and safeguards apply.
        config: video limits, memory and heatmap settings.
    """
    config = config or WebConfig()
    check = token_checker(service)
    results = _Store(config.keep_results)
    jobs = _Store(4 * config.video_queue)
    pool = futures.ThreadPoolExecutor(max_workers=config.video_workers, thread_name_prefix="fakeface-web-video")
    queued = threading.BoundedSemaphore(config.video_queue)
    max_image = service.max_image_bytes
    page = resources.files("fakeface.web").joinpath("static/index.html").read_text(encoding="utf-8")

    app = FastAPI(title="fakeface", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.service, app.state.config, app.state.pool = service, config, pool

    @app.exception_handler(WebRefusal)
    async def refused(request: Request, err: WebRefusal) -> JSONResponse:
        return _refusal_response(err)

    @app.exception_handler(ServiceRefusal)
    async def service_refused(request: Request, err: ServiceRefusal) -> JSONResponse:
        return _refusal_response(web_refusal(err))

    def auth(request: Request) -> None:
        if check is not None and not check(request.headers.get("authorization", ""), request.url.path.split("/")[2]):
            raise WebRefusal(401, "This detector needs an access token: type it into the token field at the "
                                  "top of the page.", code="UNAUTHENTICATED")

    @app.get("/", response_class=HTMLResponse)
    def index() -> HTMLResponse:
        return HTMLResponse(page, headers={"Content-Security-Policy": CSP, "X-Content-Type-Options": "nosniff",
                                           "Referrer-Policy": "no-referrer", "Cache-Control": "no-store"})

    @app.get("/api/health")
    def health() -> dict[str, Any]:
        return {"serving": service.accepting.is_set(), "auth": check is not None}

    def model_details(request: Request) -> tuple[Any, dict[str, Any]]:
        """The service's model info, and the ensemble's record in plain JSON types (as gRPC's info_json)."""
        with service.call("GetModelInfo", caller_of(request)):
            got = service.model_info()
        return got, json.loads(json.dumps(got.ensemble.to_dict(), sort_keys=True, default=str))

    @app.get("/api/info", dependencies=[Depends(auth)])
    def info(request: Request) -> dict[str, Any]:
        got, details = model_details(request)
        return {
            "bundle_version": got.ensemble.bundle_version,
            "controller_version": got.ensemble.controller_version,
            "threshold": float(got.ensemble.threshold),
            "agents": [{"name": a.name, "threshold": float(a.threshold),
                        "val_auc": ((details.get("agents") or {}).get(a.name, {}).get("val_metrics") or {}).get("auc")}
                       for a in got.ensemble.agents],
            "accuracy": accuracy_statement(details),
            "error_rates": error_rates(details),  # shown up front, not in a collapsed section
            "trained_on": trained_on(details),
            "borderline": details.get("borderline") or {},
            "controller_context": list((details.get("controller") or {}).get("context") or []),  # what it reads
            "limits": list(LIMITS),
            "max_image_bytes": max_image,
            "max_video_bytes": config.max_video_bytes,
            "video_fps": config.video_fps,
            "video_max_frames": config.video_max_frames,
            "feedback": service.feedback_log is not None,
            "feedback_records": got.feedback_records,
        }

    async def read_body(request: Request) -> bytes:
        cap = max(max_image, config.max_video_bytes)
        declared = request.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > cap:
            raise WebRefusal(413, f"This file is {_mib(int(declared))}; the limit is {_mib(max_image)} for an image "
                                  f"and {_mib(config.max_video_bytes)} for a video.", code="RESOURCE_EXHAUSTED")
        data = await read_capped(request, cap, WebRefusal(
            413, f"This file is larger than {_mib(cap)}, the most this page accepts.", code="RESOURCE_EXHAUSTED"))
        if not data:
            raise WebRefusal(400, "The upload was empty: choose, drop or paste an image or a video.",
                             code="INVALID_ARGUMENT")
        return data

    def record(kind: str, name: str, data: bytes, result: dict[str, Any], keep: bytes, keep_ext: str,
               raw_faces: list[dict[str, Any]], frame: Any = None) -> dict[str, Any]:
        digest = hashlib.sha256(data).hexdigest()
        entry = {"kind": kind, "name": name, "sha256": digest, "size": len(data),
                 "received": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
                 "result": result, "keep": keep, "keep_ext": keep_ext, "raw_faces": raw_faces, "frame": frame}
        result.update(kind=kind, name=name, sha256=digest, size=len(data), received=entry["received"])
        if result.get("request_id"):
            results.put(result["request_id"], entry)
        return entry

    def classify_image(data: bytes, detect: str, name: str, caller: Caller) -> dict[str, Any]:
        from fakeface.classify import face_to_dict

        options = ClassifyOptions(detect=detect, heatmaps=config.heatmaps, source=name)
        try:
            with service.call("Classify", caller) as call:
                answer = service.classify(call, data, options)
        except ServiceRefusal as err:  # the page words these two for a person choosing a file
            if err.reason == IMAGE_TOO_LARGE:
                raise WebRefusal(413, f"This image is {_mib(len(data))}; images are limited to {_mib(max_image)} "
                                      "(the gRPC limit). Send a smaller screenshot, or save it as JPEG.",
                                 code=err.status.value) from err
            if err.reason == BAD_IMAGE:
                raise WebRefusal(415, "This file is neither an image nor a video the detector can read "
                                      f"({err.message}). Send a JPEG, PNG, WebP, HEIC, AVIF or BMP image, or an MP4, WebM, "
                                      "MOV, MKV or AVI clip.", code=err.status.value) from err
            raise
        resp = case_to_proto(answer.case, heatmaps=answer.heatmaps)
        result = response_view(resp)
        raw = [face_to_dict(f) for f in resp.faces]
        preview = preview_data_uri(data)  # a HEIC or TIFF, which the page's <img> may not show
        if preview:
            result["preview"] = preview
        ext = Path(name).suffix.lower() if Path(name).suffix else ".img"
        record("image", name, data, result, data, ext, raw)
        return result

    def run_video(job: dict[str, Any], path: Path, data: bytes, detect: str, name: str, caller: Caller) -> None:
        from fakeface.classify import Runner  # the CLI's video path: tracks and the clip rule
        from vision.media import encode_png

        # Error texts from OpenCV and the reader name the temporary file: the person sees their own file's name.
        shown = {str(path): name or "the clip", str(path.parent): "the upload folder"}
        try:
            cap = cv2.VideoCapture(str(path))
            count, native = cap.get(cv2.CAP_PROP_FRAME_COUNT), cap.get(cv2.CAP_PROP_FPS) or 25.0
            cap.release()
            seconds = count / native if count > 0 else config.video_max_frames / config.video_fps
            job["expected"] = max(1, min(config.video_max_frames, int(seconds * config.video_fps) + 1))
            backend = ServiceBackend(service, caller, on_frame=lambda n: job.__setitem__("done", n))
            args = types.SimpleNamespace(fps=config.video_fps, max_frames=config.video_max_frames, detect=detect,
                                         heatmaps=False, annotate="page", timeout=service.config.default_deadline_s)
            summary, frame = Runner(backend, args).video(path)
            faces = summary.pop("_annotate_faces", [])
            summary.pop("file", None)
            # Feedback on the clip refers to the frame shown, which the clip's own rule chose.
            shown_id = (summary.get("shown") or {}).get("request_id")
            result = {**summary, "request_id": shown_id or backend.top[1] or backend.last_request_id,
                      "frame_faces": [face_view(f, None) for f in faces]}
            png = b"" if frame is None else encode_png(frame)
            if frame is not None:
                result.update(frame=png_data_uri(png), width=int(frame.shape[1]), height=int(frame.shape[0]))
            raw = [{**f, "index": i, "heatmaps": {}} for i, f in enumerate(faces)]
            record("video", name, data, result, png, ".png", raw, frame)
            job.update(state="done", result=result)
        except ServiceRefusal as err:
            job.update(state="error", error=scrub_paths(err.message, shown), status=web_refusal(err).status)
        except ValueError as err:  # ImageError (no frame) or OpenCV cannot open it
            job.update(state="error", error=scrub_paths(f"This clip cannot be read as a video: {err}.", shown),
                       status=415)
        except Exception as err:  # the edge of a background job: report it, keep serving
            log.exception("video job failed")
            job.update(state="error", error=scrub_paths(f"internal error: {type(err).__name__}: {err}", shown),
                       status=500)
        finally:
            path.unlink(missing_ok=True)
            path.parent.rmdir()
            queued.release()

    @app.post("/api/classify", dependencies=[Depends(auth)])
    async def classify(request: Request, detect: str = "auto", name: str = "") -> Response:
        from starlette.concurrency import run_in_threadpool

        # Checked before the upload is read: a wrong switch costs no body.
        service.check_options(ClassifyOptions(detect=detect))
        name = os.path.basename(name)[:200]
        data = await read_body(request)
        container = sniff_video(data[:16])
        if container is None:
            return JSONResponse(await run_in_threadpool(classify_image, data, detect, name, caller_of(request)))
        if len(data) > config.max_video_bytes:
            raise WebRefusal(413, f"This video is {_mib(len(data))}; videos are limited to "
                                  f"{_mib(config.max_video_bytes)}. Cut a shorter clip.", code="RESOURCE_EXHAUSTED")
        if not service.accepting.is_set():
            raise WebRefusal(503, "The detector is loading its models or shutting down; try again shortly.",
                             code="UNAVAILABLE")
        if not queued.acquire(blocking=False):
            raise WebRefusal(429, f"{config.video_queue} videos are already waiting; try again in a minute.",
                             code="RESOURCE_EXHAUSTED")
        folder = None
        try:
            folder = Path(tempfile.mkdtemp(prefix="fakeface-web-"))
            path = folder / f"clip{VIDEO_SUFFIX[container]}"
            path.write_bytes(data)
            job = {"id": uuid.uuid4().hex, "state": "running", "done": 0, "expected": None}
            pool.submit(run_video, job, path, data, detect, name, caller_of(request))
        except (OSError, RuntimeError) as err:  # a full disk, or the pool already shut down
            # run_video releases the slot and removes the clip; it never started, so do it here.
            queued.release()
            if folder is not None:
                shutil.rmtree(folder, ignore_errors=True)
            log.warning("video upload not started", extra={"fields": {"error": f"{type(err).__name__}: {err}"}})
            raise WebRefusal(503, "The server could not store this clip for analysis (no space for it now); "
                                  "try again later or send a screenshot of the frame.", code="UNAVAILABLE") from None
        jobs.put(job["id"], job)
        return JSONResponse({"kind": "video", "job": job["id"]}, status_code=202)

    @app.get("/api/jobs/{job_id}", dependencies=[Depends(auth)])
    def job_status(job_id: str) -> dict[str, Any]:
        job = jobs.get(job_id)
        if job is None:
            raise WebRefusal(404, "This video job is unknown or finished long ago; send the clip again.")
        return dict(job)

    @app.post("/api/feedback", dependencies=[Depends(auth)])
    async def send_feedback(request: Request) -> dict[str, Any]:
        from starlette.concurrency import run_in_threadpool

        # Bounded in size and depth, typed (fakeface.web.guards): a hostile body is a 4xx, never a 500.
        body = await read_json(request, FeedbackBody, example='{"request_id": "...", "label": "real" or "fake", '
                                                             '"face_index": 0 (optional)}')
        request_id, label, face_index = body.request_id, body.label, body.face_index

        def send() -> Any:
            # The visitor's address is their key for the service's per-client rate limit.
            with service.call("Feedback", caller_of(request)) as call:
                return service.feedback(call, request_id, label, face_index)

        try:
            ack = await run_in_threadpool(send)
        except ServiceRefusal as err:
            if err.reason == RATE_LIMITED:  # "too many", not "too large"
                raise WebRefusal(429, "You have sent a lot of feedback in a short time; thank you. Wait a minute "
                                      "before sending more.", code=err.status.value) from err
            raise
        try:
            kept = await run_in_threadpool(keep_upload, request_id) if ack.stored else None
        except OSError as err:  # the feedback is stored; only the upload beside it is lost
            log.warning("feedback upload not kept", extra={"fields": {"error": f"{type(err).__name__}: {err}"}})
            kept = None
        entry = results.get(request_id)
        if ack.stored and entry is not None:  # the report says the answer was disputed, and how
            entry["disputed"] = {"label": label.lower(), "face_index": face_index,
                                 "time": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")}
        # Feedback is evidence: the live controller before and after the call is the same one.
        return {"stored": ack.stored, "applied": ack.applied, "detail": ack.detail, "records": ack.records,
                "controller_version": ack.controller_version,
                "previous_controller_version": ack.controller_version, "upload_kept": kept}

    def keep_upload(request_id: str) -> str | None:
        """Writes the answer's upload next to the feedback log (atomically); its file name."""
        entry = results.get(request_id)
        if entry is None or not entry["keep"]:
            return None
        folder = Path(config.upload_dir) if config.upload_dir else service.feedback_log.path.parent / "feedback-uploads"
        # A unique temporary name (`atomic_write_bytes`): two feedbacks on one answer at once never share it.
        return atomic_write_bytes(folder / f"{request_id}{entry['keep_ext']}", entry["keep"], parents=True).name

    add_admin_routes(app, service, check)

    @app.get("/api/report/{request_id}", dependencies=[Depends(auth)])
    def report(request_id: str, request: Request) -> Response:
        from vision.annotate import annotate, face_crop
        from vision.media import decode_image, encode_png

        entry = results.get(request_id)
        if entry is None:
            raise WebRefusal(404, f"No answer with request id {request_id[:64]!r} is held any more (the page keeps "
                                  f"the last {config.keep_results}); classify the file again.")
        _, details = model_details(request)
        rgb = entry["frame"] if entry["kind"] == "video" else decode_image(entry["keep"])
        png, crops = b"", {}
        if rgb is not None:
            # The maps go beside each face at full size (`build_report`), not in a strip under a
            # picture the report shrinks to its width.
            faces = [{k: v for k, v in f.items() if k != "heatmaps"} for f in entry["raw_faces"]]
            ok, buf = cv2.imencode(".png", annotate(rgb, faces))
            png = buf.tobytes() if ok else b""
            crops = {int(f["index"]): png_data_uri(encode_png(face_crop(rgb, f["box"], side=TILE_PX)))
                     for f in entry["raw_faces"] if f.get("heatmaps")}
        html = build_report(entry, details, png_data_uri(png), face_crops=crops)
        filename = f"fakeface-report-{entry['sha256'][:12]}.html"
        return HTMLResponse(html, headers={"Content-Disposition": f'attachment; filename="{filename}"',
                                           "Cache-Control": "no-store"})

    return app
