"""The detector's web page: drop a screenshot or a clip, see each face's verdict, report mistakes,
take away an evidence report. Served by `fakeface serve` next to the gRPC port (`--http-port`)."""

from blackboard.web.app import WebConfig, create_app
from blackboard.web.serve import WebServer

__all__ = ["WebConfig", "WebServer", "create_app"]
