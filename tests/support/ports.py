"""Loopback ports for test servers: pick a free one, wait until one accepts connections."""

import socket
import time
from collections.abc import Callable


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port on host that nothing listens on right now (the caller should bind it soon)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        return probe.getsockname()[1]


def wait_for_port(
    host: str,
    port: int,
    timeout: float,
    still_starting: Callable[[], bool] = lambda: True,
) -> bool:
    """Wait until host:port accepts TCP; False on timeout or once still_starting() says give up."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not still_starting():
            return False
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return True
        except OSError:
            time.sleep(0.05)
    return False
