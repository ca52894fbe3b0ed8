"""Two ways to ask the detector: a gRPC client, or the ensemble in this process.

Both return the same `ClassifyResponse` message, so everything downstream (tables, JSON,
annotated images, video tracks) has one code path whether or not a server is involved.
"""

from __future__ import annotations

import abc
import contextlib
import os
import threading
import time
from typing import Any, Iterable, Iterator

import grpc
import numpy as np

from fakeface.rpc.fakeface.v1 import detector_pb2 as pb
from fakeface.rpc.fakeface.v1 import detector_pb2_grpc as pb_grpc
from fakeface.rpc_convert import DETECT_ENUMS, FEEDBACK_LABELS, classify_request

# Answers with heatmaps for many faces can be large; the server enforces its own limit.
MAX_RECEIVE_BYTES = 64 * 1024 * 1024
# How long a failed stream waits for the request it is making (a video frame) before returning.
STREAM_STOP_WAIT_S = 10.0


class ClientError(RuntimeError):
    """A failure to show the user as one line; ``exit_code`` 2 = bad input, 1 = service failure."""

    def __init__(self, message: str, *, exit_code: int = 1) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def explain_rpc_error(err: grpc.RpcError, target: str) -> ClientError:
    """Turns a gRPC failure into a user-facing message."""
    # Errors raised by calls are also `grpc.Call`s (code + details); others carry only a message.
    code = err.code() if isinstance(err, grpc.Call) else None
    details = err.details() if isinstance(err, grpc.Call) else str(err)
    if code == grpc.StatusCode.UNAVAILABLE and ("loading" in (details or "") or "shutting down" in (details or "")):
        return ClientError(f"server at {target} is not serving right now: {details}")
    if code == grpc.StatusCode.UNAVAILABLE:
        return ClientError(f"cannot reach server at {target}: is `fakeface serve` running? ({details})")
    if code == grpc.StatusCode.UNAUTHENTICATED:
        return ClientError(f"server at {target} refused the credentials: pass --token or set FAKEFACE_TOKEN ({details})")
    if code == grpc.StatusCode.INVALID_ARGUMENT:
        return ClientError(f"server rejected the input: {details}", exit_code=2)
    if code == grpc.StatusCode.RESOURCE_EXHAUSTED and "larger than max" in (details or ""):
        # gRPC's own refusal, before the server reads the request: say what to do about it.
        return ClientError(f"server at {target} refused the file: it is over the server's message limit ({details}); "
                           "send a JPEG or a smaller screenshot, or start the server with a larger --max-message-mb",
                           exit_code=2)
    if code == grpc.StatusCode.DEADLINE_EXCEEDED:
        return ClientError(f"server at {target} did not answer in time: {details}; raise --timeout")
    name = code.name if code is not None else "error"
    return ClientError(f"server at {target} answered {name}: {details}")


class _StoppableRequests:
    """A request iterator gRPC reads on its own thread, which can be told to stop between items."""

    def __init__(self, requests: Iterable[pb.ClassifyRequest]) -> None:
        self._it = iter(requests)
        self._stopped = threading.Event()
        self._busy = threading.Lock()  # held while the next request is being made

    def __iter__(self) -> "_StoppableRequests":
        return self

    def __next__(self) -> pb.ClassifyRequest:
        with self._busy:
            if self._stopped.is_set():
                raise StopIteration
            return next(self._it)

    def stop(self) -> None:
        self._stopped.set()

    def wait_idle(self, timeout_s: float) -> None:
        """Waits until no request is being made (at most ``timeout_s``)."""
        if self._busy.acquire(timeout=timeout_s):
            self._busy.release()


class _Closing(contextlib.AbstractContextManager):
    """``with`` support: entering gives the detector itself, leaving the block calls :meth:`close`."""

    def __exit__(self, *exc: Any) -> None:
        self.close()

    @abc.abstractmethod
    def close(self) -> None:
        """Releases what the detector holds (its channel, or the models and workers)."""


class DetectorClient(_Closing):
    """A thin gRPC client for `fakeface.v1.Detector`.

    Args:
        target: ``host:port`` of a `fakeface serve`.
        token: bearer token, sent as ``authorization`` metadata.
        tls_ca: PEM file of the CA (or self-signed certificate) to trust; turns TLS on.
        tls_server_name: name to verify in the certificate, when it differs from the host.
        timeout_s: default per-call deadline.
    """

    def __init__(
        self,
        target: str,
        *,
        token: str | None = None,
        tls_ca: str | os.PathLike[str] | None = None,
        tls_server_name: str | None = None,
        timeout_s: float = 30.0,
    ) -> None:
        if timeout_s <= 0:
            raise ValueError(f"timeout_s must be positive, received {timeout_s}.")
        self.target = target
        self.timeout_s = float(timeout_s)
        self._metadata = (("authorization", f"Bearer {token}"),) if token else ()
        options = [("grpc.max_receive_message_length", MAX_RECEIVE_BYTES)]
        if tls_ca is not None:
            with open(tls_ca, "rb") as f:
                creds = grpc.ssl_channel_credentials(root_certificates=f.read())
            if tls_server_name:
                options.append(("grpc.ssl_target_name_override", tls_server_name))
            self.channel = grpc.secure_channel(target, creds, options=options)
        else:
            self.channel = grpc.insecure_channel(target, options=options)
        self.stub = pb_grpc.DetectorStub(self.channel)

    def close(self) -> None:
        self.channel.close()

    def _call(self, method, request, timeout_s: float | None):
        try:
            return method(request, timeout=timeout_s or self.timeout_s, metadata=self._metadata)
        except grpc.RpcError as err:
            raise explain_rpc_error(err, self.target) from err

    @staticmethod
    def request(image: bytes, *, detect: str = "auto", heatmaps: bool = False, source: str = "",
                sequence_id: int = 0) -> pb.ClassifyRequest:
        """Builds a ClassifyRequest (validating the detection mode)."""
        return classify_request(image, detect=detect, heatmaps=heatmaps, source=source, sequence_id=sequence_id)

    def classify(self, image: bytes, *, detect: str = "auto", heatmaps: bool = False, source: str = "",
                 timeout_s: float | None = None) -> pb.ClassifyResponse:
        """Classifies one encoded image."""
        return self._call(self.stub.Classify, self.request(image, detect=detect, heatmaps=heatmaps, source=source),
                          timeout_s)

    def classify_stream(self, requests: Iterable[pb.ClassifyRequest], *,
                        timeout_s: float | None = None) -> Iterator[pb.ClassifyResponse]:
        """Streams requests; yields answers in the same order.

        However the stream ends (server down or stopping, an error, the caller giving up), the
        call is cancelled and gRPC's thread reading ``requests`` is done with it before this
        returns, so closing the channel afterwards is safe (it would abort the process otherwise).
        """
        feed = _StoppableRequests(requests)
        call = self.stub.ClassifyStream(feed, timeout=timeout_s, metadata=self._metadata)
        try:
            yield from call
        except grpc.RpcError as err:
            raise explain_rpc_error(err, self.target) from err
        finally:
            feed.stop()
            call.cancel()
            feed.wait_idle(STREAM_STOP_WAIT_S)

    def feedback(self, request_id: str, label: str, *, face_index: int | None = None,
                 timeout_s: float | None = None) -> pb.FeedbackResponse:
        """Sends the true label ("real"/"fake") of an earlier request, or of one of its faces.

        Args:
            request_id: the earlier response's ``request_id``.
            label: "real" or "fake".
            face_index: the face (``Face.index``) the label is for; None: the whole picture.
            timeout_s: the call's deadline.
        """
        enum = FEEDBACK_LABELS.get(str(label).lower())
        if enum is None:
            raise ValueError(f"label must be 'real' or 'fake', received {label!r}.")
        if face_index is not None and (isinstance(face_index, bool) or not isinstance(face_index, int)
                                       or face_index < 0):
            raise ValueError(f"face_index must be a face number (0, 1, ...) or None, received {face_index!r}.")
        request = pb.FeedbackRequest(request_id=request_id, label=enum, face_index=face_index)
        return self._call(self.stub.Feedback, request, timeout_s)

    def model_info(self, *, timeout_s: float | None = None) -> pb.ModelInfo:
        return self._call(self.stub.GetModelInfo, pb.GetModelInfoRequest(), timeout_s)

    def wait_serving(self, timeout_s: float = 60.0) -> None:
        """Polls the health service until SERVING.

        Raises:
            ClientError: not SERVING within ``timeout_s``.
        """
        from grpc_health.v1 import health_pb2, health_pb2_grpc

        stub = health_pb2_grpc.HealthStub(self.channel)
        end = time.monotonic() + timeout_s
        last = "no answer"
        while time.monotonic() < end:
            try:
                status = stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=2.0).status
                if status == health_pb2.HealthCheckResponse.SERVING:
                    return
                last = health_pb2.HealthCheckResponse.ServingStatus.Name(status)
            except grpc.RpcError as err:
                last = err.code().name
            time.sleep(0.1)
        raise ClientError(f"server at {self.target} not SERVING after {timeout_s:.0f} s (last: {last})")


class LocalDetector(_Closing):
    """The ensemble in this process, answering like the server does.

    Without a Ray address the detector and agents run in this process (`blackboard.inprocess`):
    no Ray to start, so one image is answered in seconds. With one, the Ray Serve ensemble of
    the service runs on that cluster (`blackboard.ensemble`).

    Args:
        bundle: bundle directory, or None for the shipped default.
        ray_address: Ray cluster to join (None = in this process, without Ray).
        preload_detector: in process, load MTCNN beside the agents rather than on first need.
    """

    def __init__(self, bundle: str | os.PathLike[str] | None = None, *, ray_address: str | None = None,
                 ready_timeout_s: float = 600.0, preload_detector: bool = False) -> None:
        from agents.bundle import load_bundle

        self.bundle = load_bundle(bundle)  # BundleError (a ValueError) with its fix, before anything loads
        if ray_address is None:
            from blackboard.inprocess import InProcessBoard

            self.ensemble = InProcessBoard(self.bundle, preload_detector=preload_detector)
        else:
            from blackboard.ensemble import Ensemble
            from blackboard.config import EnsembleConfig

            self.ensemble = Ensemble(self.bundle, EnsembleConfig(), ray_address=ray_address)
        try:
            ok = self.ensemble.ready(timeout_s=ready_timeout_s)
        except BaseException as err:
            self.ensemble.shutdown()  # nothing stays deployed on the user's cluster
            if isinstance(err, RuntimeError):  # Serve gave up on a replica, with its error
                raise ClientError(f"the models did not load: {err}") from err
            raise
        if ok is False:
            self.ensemble.shutdown()
            raise ClientError(f"the models did not load within {ready_timeout_s:.0f} s")
        self._renderer = None

    def close(self) -> None:
        self.ensemble.shutdown()

    def classify_rgb(self, rgb: np.ndarray, *, detect: str = "auto", heatmaps: bool = False,
                     source: str = "", timeout_s: float = 60.0) -> pb.ClassifyResponse:
        """Classifies a decoded RGB uint8 image.

        Raises:
            ClientError: the agents did not answer within ``timeout_s``.
        """
        from fakeface.rpc_convert import case_to_proto

        if detect not in DETECT_ENUMS:
            raise ValueError(f"detect must be one of {sorted(DETECT_ENUMS)}, received {detect!r}.")
        try:
            case = self.ensemble.classify(rgb, detect=detect, source=source, deadline_s=timeout_s)
        except TimeoutError as err:  # DeadlineExceeded
            raise ClientError(f"the ensemble did not answer within {timeout_s:g} s ({err}); raise --timeout") from err
        maps = None
        if heatmaps and case.faces:
            if self._renderer is None:
                from vision.gradcam import GradCamRenderer

                self._renderer = GradCamRenderer(self.bundle)
            maps = self._renderer.render_png([f.crop for f in case.faces])
        return case_to_proto(case, heatmaps=maps)
