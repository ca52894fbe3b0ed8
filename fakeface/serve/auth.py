"""Bearer-token authentication (the gRPC interceptor, and the check the web page shares), and the
loopback test for bind warnings."""

from __future__ import annotations

import hmac
import ipaddress
import logging
from typing import Any, Callable, Sequence

import grpc

log = logging.getLogger("fakeface.server")

# Methods that stay open without a token: load balancers and orchestrators probe health.
OPEN_METHOD_PREFIXES = ("/grpc.health.v1.Health/",)


def refusing_handler(handler: grpc.RpcMethodHandler, code: grpc.StatusCode, message: str,
                     on_refuse: Callable[[grpc.ServicerContext], None] | None = None) -> grpc.RpcMethodHandler:
    """A handler of the same shape as ``handler`` that ends every call with ``code``.

    Args:
        handler: the handler whose streaming shape and (de)serializers to keep.
        code: the status to end with.
        message: the status details.
        on_refuse: called with the call's context first (logging).
    """

    def refuse(request_or_iterator: Any, context: grpc.ServicerContext) -> None:
        if on_refuse is not None:
            on_refuse(context)
        context.abort(code, message)

    def refuse_stream(request_or_iterator: Any, context: grpc.ServicerContext):
        if on_refuse is not None:
            on_refuse(context)
        context.abort(code, message)
        yield  # pragma: no cover - makes this a generator, abort raises first

    kwargs = {
        "request_deserializer": handler.request_deserializer,
        "response_serializer": handler.response_serializer,
    }
    if handler.request_streaming and handler.response_streaming:
        return grpc.stream_stream_rpc_method_handler(refuse_stream, **kwargs)
    if handler.request_streaming:
        return grpc.stream_unary_rpc_method_handler(refuse, **kwargs)
    if handler.response_streaming:
        return grpc.unary_stream_rpc_method_handler(refuse_stream, **kwargs)
    return grpc.unary_unary_rpc_method_handler(refuse, **kwargs)


class BearerTokens:
    """The accepted bearer tokens, and the check of an ``Authorization`` value against them.

    Args:
        tokens: accepted tokens (compared in constant time).
    """

    def __init__(self, tokens: Sequence[str]) -> None:
        if not tokens:
            raise ValueError("BearerTokens needs at least one token.")
        self._tokens = [t.encode() for t in tokens]

    def accepts(self, authorization: str | bytes | None) -> bool:
        """True when ``authorization`` is ``Bearer <an accepted token>`` (the scheme in any case)."""
        text = authorization.decode() if isinstance(authorization, bytes) else str(authorization or "")
        scheme, _, token = text.partition(" ")
        if scheme.lower() != "bearer":
            return False
        given = token.strip().encode()
        # Check every token so timing does not reveal which one nearly matched.
        return any([hmac.compare_digest(given, t) for t in self._tokens])


class BearerTokenInterceptor(grpc.ServerInterceptor):
    """Requires ``authorization: Bearer <token>`` metadata on every method except health checks.

    Args:
        tokens: accepted tokens (compared in constant time).
        metrics: a `ServerMetrics`; refusals count as UNAUTHENTICATED requests.
    """

    def __init__(self, tokens: Sequence[str], metrics: Any = None) -> None:
        if not tokens:
            raise ValueError("BearerTokenInterceptor needs at least one token.")
        self._tokens = BearerTokens(tokens)
        self._metrics = metrics

    def _valid(self, metadata: Sequence[tuple[str, Any]] | None) -> bool:
        for key, value in metadata or ():
            if key.lower() == "authorization":
                return self._tokens.accepts(value)
        return False

    def intercept_service(self, continuation, handler_call_details):
        method = handler_call_details.method
        if method.startswith(OPEN_METHOD_PREFIXES) or self._valid(handler_call_details.invocation_metadata):
            return continuation(handler_call_details)
        handler = continuation(handler_call_details)
        if handler is None:
            return None
        short = method.rsplit("/", 1)[-1]
        if self._metrics is not None:
            self._metrics.requests.labels(method=short, code="UNAUTHENTICATED").inc()

        def note(context: grpc.ServicerContext) -> None:
            log.warning("refused", extra={"fields": {"method": short, "code": "UNAUTHENTICATED", "peer": context.peer(),
                                                     "reason": "missing or invalid bearer token"}})

        return refusing_handler(handler, grpc.StatusCode.UNAUTHENTICATED,
                                "missing or invalid bearer token (send `authorization: Bearer <token>`)", note)


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and loopback IPv4/IPv6 addresses (brackets allowed)."""
    host = host.strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
