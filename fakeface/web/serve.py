"""Runs the page's app with uvicorn on a background thread of the detector's own process."""

from __future__ import annotations

import logging
import socket
import threading
import time
from typing import Any

log = logging.getLogger("fakeface.web")


class WebServer:
    """A uvicorn server on a daemon thread; `start` binds and waits until it accepts connections.

    Args:
        app: the ASGI app (`create_app`).
        host: address to bind.
        port: port to bind; 0 picks a free one.
        tls_cert: PEM certificate chain; with ``tls_key`` the page is served over HTTPS.
        tls_key: PEM private key.
        limit_concurrency: connections handled at once; more are answered 503.
    """

    def __init__(self, app: Any, host: str = "127.0.0.1", port: int = 8080, *, tls_cert: str | None = None,
                 tls_key: str | None = None, limit_concurrency: int | None = None) -> None:
        import uvicorn

        self.host = host
        self.tls = tls_cert is not None
        # log_config=None keeps the process's logging (JSON lines) as it is.
        self._config = uvicorn.Config(app, host=host, port=port, log_config=None, access_log=False,
                                      ssl_certfile=tls_cert, ssl_keyfile=tls_key, lifespan="off",
                                      limit_concurrency=limit_concurrency, server_header=False)
        self._server = uvicorn.Server(self._config)
        self._thread: threading.Thread | None = None
        self.port = 0

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{'https' if self.tls else 'http'}://{host}:{self.port}/"

    def start(self, timeout_s: float = 30.0) -> "WebServer":
        """Starts serving; returns once the socket is bound.

        Raises:
            OSError: the address cannot be bound (port in use, no such address) or the server
                did not start within ``timeout_s``.
        """
        # Bound here, on the caller's thread, so a busy port is an OSError for the caller to report.
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        try:
            sock = socket.create_server((self.host.strip("[]"), self._config.port), family=family)
        except OSError as err:
            raise OSError(err.errno, f"cannot serve the web page on {self.host}:{self._config.port}: "
                                     f"{err.strerror} (is the port in use?)") from err
        self.port = int(sock.getsockname()[1])
        # uvicorn installs signal handlers only on the main thread, so the CLI's own stay in charge.
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [sock]}, name="fakeface-web",
                                        daemon=True)
        self._thread.start()
        end = time.monotonic() + timeout_s
        while not self._server.started:
            if not self._thread.is_alive():
                sock.close()
                raise OSError(f"the web page on {self.url} stopped while starting; see the log")
            if time.monotonic() > end:
                self.stop()
                raise OSError(f"the web page did not start on {self.url} within {timeout_s:.0f} s")
            time.sleep(0.02)
        log.info("web page serving", extra={"fields": {"url": self.url}})
        return self

    def stop(self, timeout_s: float = 5.0) -> None:
        """Stops accepting, lets open requests finish for up to ``timeout_s``, then returns."""
        self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout_s)
            if self._thread.is_alive():
                self._server.force_exit = True
                self._thread.join(1.0)


def warn_if_exposed(host: str, *, tls: bool, auth: bool) -> bool:
    """Logs a warning (and returns True) when the page is bound beyond loopback without TLS and a token."""
    from fakeface.serve.server import is_loopback

    if is_loopback(host) or (tls and auth):
        return False
    log.warning(
        "the web page is bound to a non-loopback address without TLS and a token: anyone on the network can "
        "use it and read its answers; pass --tls-cert/--tls-key and --token",
        extra={"fields": {"host": host, "tls": tls, "auth": auth}},
    )
    return True
