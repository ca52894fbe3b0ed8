"""The page's edge: visitors as the service's callers, refusals as HTTP statuses, the token check."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from fakeface.serve.metrics import ServerMetrics
from fakeface.service_calls import ServiceRefusal, Status
from fakeface.web.guards import caller_of, token_checker, web_refusal


def _request(host: str | None):
    return SimpleNamespace(client=None if host is None else SimpleNamespace(host=host, port=5555))


@pytest.mark.parametrize("status, http", [
    (Status.INVALID_ARGUMENT, 400), (Status.FAILED_PRECONDITION, 409), (Status.RESOURCE_EXHAUSTED, 413),
    (Status.UNAVAILABLE, 503), (Status.DEADLINE_EXCEEDED, 504), (Status.CANCELLED, 500), (Status.INTERNAL, 500),
])
def test_a_service_refusal_keeps_its_message_under_the_mapped_http_status(status, http):
    refusal = web_refusal(ServiceRefusal(status, "what went wrong"))
    assert (refusal.status, refusal.message, refusal.code) == (http, "what went wrong", status.value)


def test_each_visitor_is_a_caller_of_their_own():
    one, two = caller_of(_request("10.0.0.1")), caller_of(_request("10.0.0.2"))
    assert one.peer == "ipv4:10.0.0.1:0" and caller_of(_request("::1")).peer == "ipv6:[::1]:0"
    assert one.key != two.key and one.key == caller_of(_request("10.0.0.1")).key
    assert caller_of(_request(None)).peer == "web:local"


def test_the_token_check_counts_refusals_like_the_grpc_interceptor():
    metrics = ServerMetrics()
    service = SimpleNamespace(config=SimpleNamespace(tokens=("s3cret",)), metrics=metrics)
    check = token_checker(service)
    assert check("Bearer s3cret", "info") and not check("Bearer nope", "info") and not check("", "classify")
    count = metrics.registry.get_sample_value
    assert count("fakeface_requests_total", {"method": "info", "code": "UNAUTHENTICATED"}) == 1
    assert count("fakeface_requests_total", {"method": "classify", "code": "UNAUTHENTICATED"}) == 1
    assert token_checker(SimpleNamespace(config=SimpleNamespace(tokens=()), metrics=metrics)) is None
