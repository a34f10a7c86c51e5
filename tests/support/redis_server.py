"""A throwaway redis-server on a free loopback port, for tests where two nodes must talk."""

import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.support.ports import free_port, wait_for_port

HOST = "127.0.0.1"


@contextmanager
def running_redis() -> Iterator[str]:
    """Start redis-server without persistence; yield its redis:// URL; stop it afterwards."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise RuntimeError("redis-server is not installed (Debian: apt-get install redis-server)")
    port = free_port(HOST)
    workdir = Path(tempfile.mkdtemp(prefix="gatehouse-redis-"))
    process = subprocess.Popen(
        [binary, "--bind", HOST, "--port", str(port), "--save", "", "--appendonly", "no", "--dir", str(workdir)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        if not wait_for_port(HOST, port, timeout=10, still_starting=lambda: process.poll() is None):
            raise RuntimeError(f"redis-server did not start on port {port}")
        yield f"redis://{HOST}:{port}/0"
    finally:
        process.terminate()
        process.wait(timeout=10)
        shutil.rmtree(workdir, ignore_errors=True)
