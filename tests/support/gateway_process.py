"""A real gateway node as a subprocess: `manage.py rungateway` with its own data dir and ports.

Tests and benchmarks drive it exactly as an operator would: management
commands to set it up, then clients against its ports. The process writes
everything it prints to `gateway.log` in its data dir.
"""

import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from psycopg.conninfo import make_conninfo

from tests.support.ports import free_port, wait_for_port
from tests.support.watchdog import start_watchdog, stop_watchdog

if TYPE_CHECKING:
    from tests.support.pg_cluster import PgCluster

REPO_ROOT = Path(__file__).resolve().parents[2]
MANAGE_PY = REPO_ROOT / "manage.py"
HOST = "127.0.0.1"
START_TIMEOUT = 30.0
WRAPPED_START_TIMEOUT = 600.0  # under a wrapper such as valgrind, start-up runs some fifty times slower
STOP_GRACE = 10.0
UPSTREAM_PASSWORD_VAR = "GATEHOUSE_TEST_UPSTREAM_PASSWORD"
INHERIT_NOT = ("PG", "GATEHOUSE_", "DATABASE_URL", "REDIS_URL", "DJANGO_SETTINGS_MODULE")


class GatewayError(RuntimeError):
    """The gateway process failed to start, or a management command failed."""


class GatewayProcess:
    """One gateway node: a data dir, HTTP, PostgreSQL and SSH ports, and the rungateway process."""

    def __init__(
        self,
        data_dir: Path | str,
        pg_port: int | None = None,
        http_port: int | None = None,
        env: dict[str, str] | None = None,
        wrapper: Sequence[str] = (),
    ) -> None:
        self.data_dir = Path(data_dir)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.pg_port = pg_port or free_port(HOST)
        self.http_port = http_port or free_port(HOST)
        self.ssh_port = free_port(HOST)
        self._ports_chosen_here = pg_port is None and http_port is None
        self.extra_env = dict(env or {})
        self.wrapper = list(wrapper)  # a command rungateway runs under (bench/pg_cost.py: valgrind)
        self.process: subprocess.Popen[bytes] | None = None
        self._migrated = False
        self._watchdog: subprocess.Popen[bytes] | None = None
        # Filled in by provision_bot(); tests read them as gateway.token etc.
        self.token: str | None = None
        self.canary: str | None = None
        self.connection_name: str | None = None
        self.agent_name: str | None = None

    @property
    def log_file(self) -> Path:
        return self.data_dir / "gateway.log"

    @property
    def cert_file(self) -> Path:
        """The listeners' certificate (the default location; made on the first start)."""
        return self.data_dir / "tls" / "gateway.crt"

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def env(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        """The environment of this node's processes: this data dir, the real settings module.

        GATEHOUSE_*, PG*, DATABASE_URL and REDIS_URL are not inherited from the test run (its own
        data dir and database must not leak into the node); pass them in `env` instead.
        """
        env = {key: value for key, value in os.environ.items() if not key.startswith(INHERIT_NOT)}
        env.update(DJANGO_SETTINGS_MODULE="gateway_site.settings", GATEHOUSE_DATA_DIR=str(self.data_dir))
        env.update(self.extra_env)
        env.update(extra or {})
        return env

    def manage(
        self, *args: str, env: dict[str, str] | None = None, check: bool = False, timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        """Run `python manage.py ARGS` against this node's data dir (migrating first, once)."""
        if not self._migrated and args[:1] != ("migrate",):
            self.migrate()
        result = subprocess.run(
            [sys.executable, str(MANAGE_PY), *args],
            capture_output=True,
            text=True,
            env=self.env(env),
            cwd=REPO_ROOT,
            timeout=timeout,
        )
        if args[:1] == ("migrate",) and result.returncode == 0:
            self._migrated = True
        if check and result.returncode != 0:
            raise GatewayError(
                f"manage.py {args[0] if args else ''} exited {result.returncode}:\n"
                f"{result.stdout[-2000:]}{result.stderr[-4000:]}"
            )
        return result

    def migrate(self) -> None:
        """Create or update this node's database."""
        self.manage("migrate", "--noinput", check=True)

    def start(self, timeout: float | None = None) -> None:
        """Start rungateway and wait until its PostgreSQL port accepts TCP (by default 30 s, 600 s if wrapped)."""
        if timeout is None:
            timeout = WRAPPED_START_TIMEOUT if self.wrapper else START_TIMEOUT
        if self.running:
            return
        if not self._migrated:
            self.migrate()
        for _attempt in range(3):
            self._spawn()
            listening = wait_for_port(HOST, self.pg_port, timeout, still_starting=lambda: self.running)
            if listening and wait_for_port(HOST, self.ssh_port, timeout, still_starting=lambda: self.running):
                return
            if self.running or not self._ports_chosen_here or "in use" not in self.log_text():
                break
            # Another process took a port between our probe and the gateway's bind.
            self.pg_port, self.http_port, self.ssh_port = free_port(HOST), free_port(HOST), free_port(HOST)
        self.stop()
        raise GatewayError(f"the gateway did not listen on {HOST}:{self.pg_port}:\n{self.log_tail()}")

    def _spawn(self) -> None:
        args = [
            str(MANAGE_PY),
            "rungateway",
            "--http",
            f"{HOST}:{self.http_port}",
            "--pg",
            f"{HOST}:{self.pg_port}",
            "--ssh",
            f"{HOST}:{self.ssh_port}",
        ]
        command = [*self.wrapper, sys.executable, *args]
        with open(self.log_file, "ab") as log:
            log.write(f"--- {time.strftime('%H:%M:%S')} starting: {' '.join(args)}\n".encode())
            log.flush()
            self.process = subprocess.Popen(
                command,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=self.env(),
                cwd=REPO_ROOT,
                start_new_session=True,  # a Ctrl-C aimed at pytest must not reach it first
            )
        stop_watchdog(self._watchdog)
        self._watchdog = start_watchdog('kill -KILL "$1" 2>/dev/null', str(self.process.pid))

    def stop(self) -> int | None:
        """SIGTERM, then SIGKILL if it is still up after 10 s; returns the exit code."""
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(STOP_GRACE)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        stop_watchdog(self._watchdog)
        self._watchdog = None
        return self.process.returncode

    def kill9(self) -> None:
        """Kill the gateway with SIGKILL, as a crash would."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        stop_watchdog(self._watchdog)
        self._watchdog = None

    def log_text(self) -> str:
        """Everything the gateway printed (all starts)."""
        return self.log_file.read_text(errors="replace") if self.log_file.exists() else ""

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])

    def dsn(
        self,
        dbname: str | None = None,
        user: str | None = None,
        password: str | None = None,
        sslmode: str = "require",
    ) -> str:
        """A libpq connection string to this gateway (defaults: the provisioned bot and connection)."""
        dbname = dbname or self.connection_name or ""
        user = user or self.agent_name or ""
        password = self.token if password is None else password
        params = {"host": HOST, "port": self.pg_port, "dbname": dbname, "user": user, "sslmode": sslmode}
        if password:
            params["password"] = password
        return make_conninfo(**params)

    def __enter__(self) -> "GatewayProcess":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def provision_bot(
    gateway: GatewayProcess,
    cluster: "PgCluster",
    connection: str = "pg-main",
    agent: str = "ci-bot",
    tls: str = "verify-full",
) -> None:
    """Register cluster's `app` database (as postgres) as CONNECTION, and give AGENT a token for it."""
    ca_file = str(cluster.ca_file)
    gateway.manage(
        *("connections", "add", connection, "--kind", "postgres", "--host", cluster.host),
        *("--port", str(cluster.port), "--database", "app", "--user", "postgres"),
        *("--password-env", UPSTREAM_PASSWORD_VAR, "--tls", tls, "--tls-ca-file", ca_file),
        env={UPSTREAM_PASSWORD_VAR: cluster.superuser_password},
        check=True,
    )
    gateway.manage("agents", "add", agent, check=True)
    issued = gateway.manage("agents", "token", agent, check=True)
    lines = issued.stdout.strip().splitlines()
    if not lines:
        raise GatewayError("`agents token` printed no token")
    gateway.manage("agents", "grant", agent, connection, check=True)
    gateway.token = lines[-1].strip()
    gateway.canary = cluster.superuser_password
    gateway.connection_name = connection
    gateway.agent_name = agent
