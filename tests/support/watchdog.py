"""Clean up after a test process that dies unannounced (SIGKILL, a killed CI job).

Servers started by the tests run in their own sessions so that a Ctrl-C
reaches pytest first; the price is that they would outlive a pytest that is
killed outright. A watchdog shell polls the test process and, once it is
gone, runs a cleanup script. The owner kills the watchdog after its own,
orderly cleanup.
"""

import os
import subprocess


def start_watchdog(cleanup_script: str, *args: str) -> subprocess.Popen[bytes]:
    """Run cleanup_script (sh, with args as $1, $2, ...) once this Python process has exited."""
    script = f'parent=$1; shift; while kill -0 "$parent" 2>/dev/null; do sleep 1; done; {cleanup_script}'
    return subprocess.Popen(
        ["/bin/sh", "-c", script, "gatehouse-test-watchdog", str(os.getpid()), *args],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )


def stop_watchdog(watchdog: subprocess.Popen[bytes] | None) -> None:
    """End a watchdog whose owner has cleaned up by itself."""
    if watchdog is not None and watchdog.poll() is None:
        watchdog.kill()
        watchdog.wait()
