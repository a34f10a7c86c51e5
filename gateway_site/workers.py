"""Extra PostgreSQL worker processes of one gateway node.

Python runs one core per process, so a node can fork workers that share the
PostgreSQL port (SO_REUSEPORT: the kernel spreads new connections). Each
worker is a node in its own right: its own loop, upstream pool and recording
flusher, the same database. Like separate nodes, workers signal each other
only through the channel layer, which is why more than one needs REDIS_URL.
The parent keeps the web app and one PostgreSQL listener of its own.
"""

import asyncio
import contextlib
import gc
import logging
import os
import signal
import time

from django.db import connections

from gateway_site.node import GatewayNode

logger = logging.getLogger(__name__)

PARENT_CHECK_SECONDS = 1.0
STOP_SIGNALS = {signal.SIGTERM, signal.SIGINT}
STOP_TIMEOUT_SECONDS = 15.0


def fork_pg_workers(workers: int, pg_address: tuple[str, int]) -> list[int]:
    """Fork the node's PostgreSQL-only workers 1..workers-1; returns their pids.

    Call before any event loop or thread starts: only the forking thread survives a fork.
    Stop signals stay blocked, in the parent and in each worker, until that process
    has its handlers: a SIGTERM during start-up then means a clean stop, not a kill.
    Call `accept_stop_signals()` once they are in place.
    """
    signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    connections.close_all()  # a forked child must not share the parent's database sockets
    pids = []
    for index in range(1, workers):
        pid = os.fork()
        if pid == 0:
            _run_worker_and_exit(index, workers, pg_address)
        pids.append(pid)
    return pids


def _run_worker_and_exit(index: int, workers: int, pg_address: tuple[str, int]) -> None:
    code = 0
    try:
        import uvloop

        uvloop.run(_serve(index, workers, pg_address))
    except BaseException:
        logger.exception("PostgreSQL worker %d failed", index)
        code = 1
    finally:
        logging.shutdown()
        os._exit(code)


async def _serve(index: int, workers: int, pg_address: tuple[str, int]) -> None:
    node = GatewayNode(pg_address, workers)
    await node.start()
    gc.freeze()
    gc.set_threshold(50_000, 20, 100)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in STOP_SIGNALS:
        loop.add_signal_handler(signum, stop.set)
    accept_stop_signals()
    parent = os.getppid()
    logger.info("PostgreSQL worker %d (pid %d) serving", index, os.getpid())
    while not stop.is_set():
        try:
            await asyncio.wait_for(stop.wait(), PARENT_CHECK_SECONDS)
        except TimeoutError:
            if os.getppid() != parent:  # the parent died (kill -9): do not serve on as an orphan
                logger.warning("PostgreSQL worker %d lost its parent; stopping", index)
                break
    await node.stop()


def accept_stop_signals() -> None:
    """Deliver SIGTERM and SIGINT again (see fork_pg_workers)."""
    signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)


def stop_pg_workers(pids: list[int]) -> None:
    """SIGTERM every worker and reap it; SIGKILL what has not exited in time."""
    for pid in pids:
        _signal(pid, signal.SIGTERM)
    deadline = time.monotonic() + STOP_TIMEOUT_SECONDS
    waiting = set(pids)
    while waiting and time.monotonic() < deadline:
        for pid in list(waiting):
            if _reaped(pid):
                waiting.discard(pid)
        time.sleep(0.05)
    for pid in waiting:
        logger.error("PostgreSQL worker %d did not stop in time; killing it", pid)
        _signal(pid, signal.SIGKILL)
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, 0)


def _reaped(pid: int) -> bool:
    try:
        return os.waitpid(pid, os.WNOHANG)[0] != 0
    except ChildProcessError:
        return True


def _signal(pid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signum)
