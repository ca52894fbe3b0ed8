"""What the page's API takes in and lets out: who is asking, bounded JSON bodies, refusals as
HTTP statuses, and messages without server paths.

A visitor becomes the service's `Caller` (their address is their rate-limit key), and their
``Authorization`` header is checked against the gRPC server's tokens. JSON bodies are read with
a byte cap and parsed by pydantic (its Rust parser stops nesting at a fixed depth instead of
overflowing Python's stack, which answered 500 on a body nested 1 000 deep) into a model with
typed, bounded fields; every failure is a `WebRefusal` with a short reason, and so is every
`ServiceRefusal` (its status mapped to HTTP here, at the page's edge). `scrub_paths` takes
file-system paths out of any text meant for the person at the page: error texts from OpenCV and
the video reader name the server's temporary files.
"""

from __future__ import annotations

import re
from typing import Any, Callable, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from fakeface.serve.auth import BearerTokens
from fakeface.serve.ratelimit import client_key
from fakeface.service import DetectorService
from fakeface.service_calls import Caller, ServiceRefusal, Status

MAX_JSON_BYTES = 4096  # a feedback body is ~80 bytes
_M = TypeVar("_M", bound=BaseModel)
# An absolute POSIX path of two or more parts (/tmp/fakeface-web-x/clip.mp4), or a Windows one.
_PATH = re.compile(r"(?<![\w.:/])(?:/[\w.+@%-]+){2,}/?|\b[A-Za-z]:\\[^\s'\"]+")
# The service's statuses as HTTP statuses (anything else: 500).
HTTP_STATUS = {
    Status.INVALID_ARGUMENT: 400,
    Status.FAILED_PRECONDITION: 409,
    Status.RESOURCE_EXHAUSTED: 413,
    Status.UNAVAILABLE: 503,
    Status.DEADLINE_EXCEEDED: 504,
}


class WebRefusal(Exception):
    """A request the page must refuse, with a message meant for the person using it.

    Args:
        status: HTTP status code of the answer.
        message: one or two plain sentences: what was wrong and what to do.
        code: the canonical status name (as a gRPC client would see it), when there is one.
    """

    def __init__(self, status: int, message: str, *, code: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code


def web_refusal(err: ServiceRefusal) -> WebRefusal:
    """The page's answer to a refusal of the service: its message under the mapped HTTP status."""
    return WebRefusal(HTTP_STATUS.get(err.status, 500), err.message, code=err.status.value)


def http_peer(host: str | None) -> str:
    """An HTTP client's address in gRPC's peer form (``ipv4:HOST:0`` / ``ipv6:[HOST]:0``), so the
    log and the rate limit read it as they read a gRPC client's."""
    if not host:
        return "web:local"
    return f"ipv6:[{host}]:0" if ":" in host else f"ipv4:{host}:0"


def caller_of(request) -> Caller:
    """The service's view of a visitor: their address, which is also their rate-limit key."""
    peer = http_peer(request.client.host if request.client else None)
    return Caller(peer=peer, client=client_key(peer, ()))


def token_checker(service: DetectorService) -> Callable[[str, str], bool] | None:
    """A check of ``Authorization`` headers against the gRPC server's tokens, or None (no auth).

    A refused check counts as an UNAUTHENTICATED request of the route, as the interceptor counts
    a refused gRPC call.
    """
    tokens = tuple(service.config.tokens or ())
    if not tokens:
        return None
    accepted = BearerTokens(tokens)

    def check(header: str, route: str) -> bool:
        if accepted.accepts(header):
            return True
        service.metrics.requests.labels(method=route, code="UNAUTHENTICATED").inc()
        return False

    return check


class FeedbackBody(BaseModel):
    """``POST /api/feedback``: the answer's request id and the person's label."""

    # strict: a number is not a request id (it would otherwise be turned into one).
    model_config = ConfigDict(strict=True, extra="ignore")

    request_id: str = Field(min_length=1, max_length=128)
    label: str = Field(min_length=1, max_length=16)
    face_index: int | None = Field(None, ge=0, le=1_000_000)  # the face the label is for; None: the picture


def scrub_paths(text: str, replacements: dict[str, str] | None = None) -> str:
    """``text`` with known paths replaced by their display names and any other absolute path by ``<path>``."""
    for path, shown in sorted((replacements or {}).items(), key=lambda kv: -len(kv[0])):
        if path:
            text = text.replace(path, shown)
    return _PATH.sub("<path>", text)


def _reason(err: ValidationError) -> str:
    """One line for the first problem pydantic found (its messages never echo the input)."""
    first = err.errors(include_url=False, include_input=False)[0]
    where = ".".join(str(part) for part in first.get("loc", ())) or "body"
    return f"{where}: {first.get('msg', 'invalid')}"


async def read_capped(request: Any, max_bytes: int, too_big: WebRefusal) -> bytes:
    """The request body, read as it streams in; ``too_big`` is raised as soon as it passes
    ``max_bytes``, whatever Content-Length claimed."""
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > max_bytes:
            raise too_big
        chunks.append(chunk)
    return b"".join(chunks)


async def read_json(request, model: type[_M], *, max_bytes: int = MAX_JSON_BYTES, example: str = "") -> _M:
    """Reads a request's JSON body into ``model``, refusing big, deep, malformed or mistyped bodies.

    Args:
        request: the Starlette request.
        model: the pydantic model of the body.
        max_bytes: the largest body read; bigger -> 413.
        example: a body that would be accepted, quoted in the 400 message.

    Raises:
        WebRefusal: 413 (too big) or 400 (not JSON, nested too deep, wrong type, field too long).
    """
    too_big = WebRefusal(413, f"This request body is larger than {max_bytes} bytes, the most this call takes.",
                         code="RESOURCE_EXHAUSTED")
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > max_bytes:
        raise too_big
    body = await read_capped(request, max_bytes, too_big)
    try:
        return model.model_validate_json(body)
    except ValidationError as err:
        hint = f" Send {example}." if example else ""
        raise WebRefusal(400, f"Bad JSON body ({_reason(err)}).{hint}", code="INVALID_ARGUMENT") from None
