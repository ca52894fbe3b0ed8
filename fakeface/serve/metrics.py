"""Prometheus metrics of the detector service, in a registry of their own per server."""

from __future__ import annotations


class ServerMetrics:
    """The service's counters, histograms and gauges (several servers may share a process)."""

    def __init__(self) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.registry = CollectorRegistry()
        self.requests = Counter(
            "fakeface_requests", "RPCs by method and status code.", ["method", "code"], registry=self.registry
        )
        self.latency = Histogram(
            "fakeface_request_latency_seconds", "RPC latency by method.", ["method"], registry=self.registry,
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
        )
        self.agent_latency = Histogram(
            "fakeface_agent_latency_seconds", "Per-face agent latency.", ["agent"], registry=self.registry,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
        )
        self.in_flight = Gauge("fakeface_in_flight", "RPCs being handled now.", registry=self.registry)
        self.pixels_in_flight = Gauge(
            "fakeface_pixels_in_flight", "Decoded image pixels admitted and not yet answered.", registry=self.registry
        )
        self.refused = Counter(
            "fakeface_refused", "Calls refused before the models ran, by reason.", ["reason"], registry=self.registry
        )
        self.degraded = Counter(
            "fakeface_degraded_decisions", "Face decisions made with some agent missing.", registry=self.registry
        )
        self.component_up = Gauge(
            "fakeface_component_up", "1 when the detector or an agent answered its last health probe.",
            ["component"], registry=self.registry,
        )
        self.faces = Counter("fakeface_faces", "Faces classified, by label.", ["label"], registry=self.registry)

    def serve_http(self, port: int, host: str = "127.0.0.1") -> None:
        """Exposes ``/metrics`` on ``host:port`` (a daemon thread)."""
        from prometheus_client import start_http_server

        start_http_server(port, addr=host.strip("[]"), registry=self.registry)
