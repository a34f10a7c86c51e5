"""Run a whole gateway node: daphne (web, websockets) and the protocol listeners on one loop.

With --workers N, N-1 forked processes serve PostgreSQL clients beside it on the same port.
"""

import asyncio
import gc
import logging

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError

from connections.protocols.compiled import current_names, stale_build_error
from gateway_site.tls import ensure_certificate
from gateway_site.workers import accept_stop_signals, fork_pg_workers, stop_pg_workers
from recordings.actions import mark_interrupted_sessions

logger = logging.getLogger("gatehouse.rungateway")


def parse_address(value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise CommandError(f"expected HOST:PORT, got {value!r}")
    return host.strip("[]") or "127.0.0.1", int(port)


def check_compiled_modules() -> None:
    """Refuse to run compiled code built from other sources than this checkout's; say what runs compiled."""
    problem = stale_build_error()
    if problem:
        raise CommandError(problem)
    compiled = ", ".join(current_names()) or "none, all interpreted (make core builds them)"
    logger.info("compiled modules: %s", compiled)


class Command(BaseCommand):
    help = "Run a gateway node: the web app, the PostgreSQL listener and, with --ssh, the SSH listener."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--http", default="127.0.0.1:8000", help="web and websocket address")
        parser.add_argument("--pg", default="127.0.0.1:15432", help="PostgreSQL listener address")
        parser.add_argument("--no-pg", action="store_true", help="do not listen for PostgreSQL clients")
        parser.add_argument("--ssh", default=None, help="SSH listener address, e.g. 127.0.0.1:2222 (off if not given)")
        parser.add_argument(
            "--workers",
            type=int,
            default=settings.GATEHOUSE_PG_WORKERS,
            help="processes serving PostgreSQL clients (more than 1 needs REDIS_URL)",
        )

    def handle(self, *args, **options) -> None:
        http_host, http_port = parse_address(options["http"])
        pg_address = None if options["no_pg"] else parse_address(options["pg"])
        ssh_address = parse_address(options["ssh"]) if options["ssh"] else None
        workers = options["workers"]
        if workers < 1 or (workers > 1 and not settings.CHANNEL_LAYERS_ARE_SHARED):
            raise CommandError("--workers must be 1, or more with REDIS_URL set (workers signal each other through it)")
        check_compiled_modules()
        interrupted = mark_interrupted_sessions()
        if interrupted:
            logger.warning("marked %d sessions interrupted after an unclean stop", interrupted)
        ensure_certificate()  # made once here, not raced by the workers
        # Whitenoise serves what was collected when the app loads: collect first, so no node serves bare pages.
        call_command("collectstatic", interactive=False, verbosity=0)
        worker_pids = fork_pg_workers(workers, pg_address) if pg_address else []
        try:
            run_node(http_host, http_port, pg_address, workers, ssh_address)
        finally:
            stop_pg_workers(worker_pids)


def run_node(
    http_host: str,
    http_port: int,
    pg_address: tuple[str, int] | None,
    pg_workers: int,
    ssh_address: tuple[str, int] | None = None,
) -> None:
    import uvloop

    # daphne makes its event loop when daphne.server is first imported, so
    # the policy must be set before that import for the loop to be uvloop.
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    from daphne.endpoints import build_endpoint_description_strings
    from daphne.server import Server, twisted_loop
    from twisted.internet import defer, reactor

    from gateway_site.asgi import application
    from gateway_site.node import GatewayNode

    node = GatewayNode(pg_address, pg_workers, ssh_address)
    # Everything loaded so far lives as long as the process: keep the cyclic
    # collector from rescanning it, and let it run less often on the relay's
    # short-lived objects (they are freed by reference counting anyway).
    gc.freeze()
    gc.set_threshold(50_000, 20, 100)
    failed: list[BaseException] = []

    def start() -> None:
        accept_stop_signals()  # the reactor's handlers are installed by now
        task = twisted_loop.create_task(node.start())
        task.add_done_callback(lambda t: _stop_on_failure(t, failed, reactor))

    reactor.callWhenRunning(start)
    reactor.addSystemEventTrigger(
        "before", "shutdown", lambda: defer.Deferred.fromFuture(twisted_loop.create_task(node.stop()))
    )
    server = Server(
        application=application,
        endpoints=build_endpoint_description_strings(host=http_host, port=http_port),
        verbosity=0,
        server_name="gatehouse",
    )
    logger.info("web on http://%s:%s", http_host, http_port)
    server.run()
    if failed:
        raise CommandError(f"the gateway could not start: {failed[0]}")


def _stop_on_failure(task: asyncio.Task, failed: list, reactor) -> None:
    if task.cancelled() or task.exception() is None:
        return
    failed.append(task.exception())
    logger.error("gateway node failed to start", exc_info=task.exception())
    reactor.stop()
