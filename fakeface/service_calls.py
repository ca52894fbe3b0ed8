"""What one call of the `DetectorService` is: who makes it, how it ends, and what its log says.

Both front doors, the gRPC servicer (`fakeface.serve.servicer`) and the page's API
(`fakeface.web.app`), describe their client as a `Caller`. A refusal is a `ServiceRefusal`
carrying a `Status`, named after the canonical status codes so logs and metrics read the same
whichever door a call came through; each door maps it to its own wire status at its edge:

======================  ==================================================================
INVALID_ARGUMENT        bad image (empty, not an image, too many pixels, < 8 px, too
                        elongated, too many JPEG scans), field too long, unknown value
RESOURCE_EXHAUSTED      image over the byte limit, too many calls or decoded pixels in
                        flight, the per-client feedback rate limit
DEADLINE_EXCEEDED       the client's deadline is too short for the agents, or passed
FAILED_PRECONDITION     no feedback log, no heat-map renderer on this server
UNAVAILABLE             models loading or the service stopping (retry)
CANCELLED               the client went away
INTERNAL                anything else (short message; the traceback goes to the log)
======================  ==================================================================
"""

from __future__ import annotations

import enum
import uuid
from dataclasses import dataclass, field
from typing import Any, Callable

from fakeface.serve.ratelimit import client_key

MIB = 1024 * 1024
# The largest request or response a server takes unless configured otherwise (`--max-message-mb`).
DEFAULT_MESSAGE_BYTES = 8 * MIB

# Refusal reasons an edge may word in its own way (the others are logged as they are).
BAD_IMAGE = "bad image"
IMAGE_TOO_LARGE = "image too large"
RATE_LIMITED = "feedback rate limit"


class Status(enum.Enum):
    """How a call ended (the canonical status names; each front door maps them to its wire)."""

    OK = "OK"
    INVALID_ARGUMENT = "INVALID_ARGUMENT"
    RESOURCE_EXHAUSTED = "RESOURCE_EXHAUSTED"
    DEADLINE_EXCEEDED = "DEADLINE_EXCEEDED"
    FAILED_PRECONDITION = "FAILED_PRECONDITION"
    UNAVAILABLE = "UNAVAILABLE"
    CANCELLED = "CANCELLED"
    INTERNAL = "INTERNAL"


class ServiceRefusal(Exception):
    """A call ends with ``status`` and ``message`` (meant for the client; no traceback, no path).

    Args:
        status: how the call ended.
        message: what was wrong and what to do, for the client.
        reason: short cause for the log and for edges that word some refusals their own way
            (`BAD_IMAGE`, `IMAGE_TOO_LARGE`, `RATE_LIMITED`); the message when empty.
    """

    def __init__(self, status: Status, message: str, reason: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.reason = reason or message


class Stopping(Exception):
    """The service is stopping and its grace period is over."""


def _no_deadline() -> float | None:
    return None


def _still_there() -> bool:
    return True


@dataclass(frozen=True)
class Caller:
    """Who makes a call, as its front door knows them.

    Attributes:
        peer: the client's address, for the log line.
        client: the per-client rate-limit key (`fakeface.serve.ratelimit.client_key`: the bearer
            token when one is sent, else the host); empty = the peer's host.
        time_remaining: seconds left of the client's deadline, None when it set none (the
            service's default applies).
        is_active: False once the client has gone away (its answer would be thrown away).
    """

    peer: str = ""
    client: str = ""
    time_remaining: Callable[[], float | None] = _no_deadline
    is_active: Callable[[], bool] = _still_there

    @property
    def key(self) -> str:
        """The rate-limit key: ``client``, else the peer's host."""
        return self.client or client_key(self.peer, ())


@dataclass
class Call:
    """One call in progress, and what its log line says (filled as the call goes)."""

    method: str  # the operation's name ("Classify", "Feedback", ...), as in the metrics
    caller: Caller
    request_id: str = field(default_factory=lambda: uuid.uuid4().hex)  # the service's id for this call
    status: Status = Status.OK  # final status
    reason: str = ""  # why the call was refused, if it was
    detail: str = ""  # the refusal's message when the reason is shorter
    extra: dict[str, Any] | None = None  # method-specific fields (items of a stream, feedback target)

    def item(self) -> "Call":
        """A call of its own for one item of a stream (same method and caller, a new request id)."""
        return Call(method=self.method, caller=self.caller)

    def fields(self, elapsed_s: float) -> dict[str, Any]:
        out = {"method": self.method, "code": self.status.value, "ms": round(elapsed_s * 1000, 2),
               "request_id": self.request_id, "peer": self.caller.peer}
        if self.reason:
            out["reason"] = self.reason
        if self.detail and self.detail != self.reason:
            out["detail"] = self.detail[:200]
        out.update(self.extra or {})
        return out


def request_id_problem(request_id: str, max_chars: int) -> str | None:
    """Why ``request_id`` cannot be the id of an earlier answer, or None when it can."""
    if not request_id:
        return "request_id is empty"
    if len(request_id) > max_chars or not request_id.isprintable():
        return (f"request_id must be at most {max_chars} printable characters (the id of an earlier answer); "
                f"received {len(request_id)} characters")
    return None


def face_index_problem(face_index: int | None, faces: list[dict[str, Any]] | None) -> str | None:
    """Why ``face_index`` cannot name a face of an earlier answer, or None when it can.

    ``faces`` is the answer's faces as the service keeps them (None once the answer is no longer
    held: the index is then stored as given, since nothing is left to check it against).
    """
    if face_index is None:
        return None
    if isinstance(face_index, bool) or not isinstance(face_index, int) or face_index < 0:
        return f"face_index must be a face number of the answer (0, 1, ...), received {face_index!r}"
    if faces is None:
        return None
    held = [int(face["index"]) for face in faces]
    if face_index not in held:
        which = ", ".join(map(str, held)) if held else "none: no face was found in it"
        return f"face_index {face_index} is not a face of that answer (its faces: {which})"
    return None
