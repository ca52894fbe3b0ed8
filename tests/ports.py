"""Whether a loopback port is free, for the tests that check which ports a server or Ray took."""

from __future__ import annotations

import socket


def bindable(port: int) -> bool:
    """True when nothing listens on ``port`` of 127.0.0.1 (a bind there succeeds)."""
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True
