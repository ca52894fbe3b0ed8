"""Bearer-token interceptor and the loopback test behind the server's exposure warning."""

from __future__ import annotations

from types import SimpleNamespace

import grpc
import pytest

from fakeface.serve.auth import OPEN_METHOD_PREFIXES, BearerTokenInterceptor, is_loopback
from fakeface.serve.metrics import ServerMetrics


def _details(method: str, metadata=()):
    return SimpleNamespace(method=method, invocation_metadata=tuple(metadata))


def _handler():
    return grpc.unary_unary_rpc_method_handler(lambda request, context: "answered")


class _Context:
    def __init__(self):
        self.code = None

    def abort(self, code, message):
        self.code = code
        raise RuntimeError(message)

    def peer(self):
        return "ipv4:127.0.0.1:1"


@pytest.mark.parametrize("metadata, allowed", [
    ((("authorization", "Bearer s3cret"),), True),
    ((("Authorization", b"bearer s3cret"),), True),
    ((("authorization", "Bearer wrong"),), False),
    ((("authorization", "Basic s3cret"),), False),
    ((), False),
])
def test_only_a_valid_bearer_token_reaches_the_method(metadata, allowed):
    metrics = ServerMetrics()
    interceptor = BearerTokenInterceptor(["other", "s3cret"], metrics=metrics)
    handler = interceptor.intercept_service(lambda d: _handler(), _details("/fakeface.v1.Detector/Classify", metadata))
    context = _Context()
    if allowed:
        assert handler.unary_unary(None, context) == "answered"
    else:
        with pytest.raises(RuntimeError, match="bearer token"):
            handler.unary_unary(None, context)
        assert context.code == grpc.StatusCode.UNAUTHENTICATED
        assert metrics.registry.get_sample_value(
            "fakeface_requests_total", {"method": "Classify", "code": "UNAUTHENTICATED"}) == 1


def test_health_checks_stay_open_without_a_token():
    interceptor = BearerTokenInterceptor(["s3cret"])
    method = OPEN_METHOD_PREFIXES[0] + "Check"
    handler = interceptor.intercept_service(lambda d: _handler(), _details(method))
    assert handler.unary_unary(None, _Context()) == "answered"


def test_an_interceptor_needs_a_token():
    with pytest.raises(ValueError, match="at least one token"):
        BearerTokenInterceptor([])


@pytest.mark.parametrize("host, loopback", [
    ("127.0.0.1", True), ("localhost", True), ("[::1]", True), ("::1", True), ("127.3.2.1", True),
    ("0.0.0.0", False), ("::", False), ("192.168.1.4", False), ("example.org", False),
])
def test_is_loopback(host, loopback):
    assert is_loopback(host) is loopback


@pytest.mark.parametrize("header, accepted", [
    ("Bearer s3cret", True), (b"bearer s3cret", True), ("BEARER  s3cret ", True),
    ("Bearer s3cre", False), ("Basic s3cret", False), ("s3cret", False), ("", False), (None, False),
])
def test_bearer_tokens_accept_only_a_listed_token_under_the_bearer_scheme(header, accepted):
    from fakeface.serve.auth import BearerTokens

    assert BearerTokens(["other", "s3cret"]).accepts(header) is accepted
