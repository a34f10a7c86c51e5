"""Fixtures for the real-client tests: clients through the session gateway and direct, and its recordings.

Every client a test opens through the gateway carries a unique
application_name, which the gateway stores on the Session row; that is how a
test finds the recording of its own session on a node that others share.
"""

import json
import os
import secrets
import sqlite3
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest

from tests.protocols.pg_raw import RawPgClient
from tests.support.gateway_process import GatewayProcess
from tests.support.pg_cluster import PgCluster

SEAL_TIMEOUT = 20.0
PSQL_TIMEOUT = 60.0


@dataclass
class Recording:
    """One sealed session: its Session row, the recording's header and its events."""

    row: dict
    header: dict
    events: list[list]  # [t, kind, data, link]
    path: Path

    def data(self, kind: str) -> list:
        """The data of every event of this kind, in order."""
        return [event[2] for event in self.events if event[1] == kind]

    def results_for(self, text: str) -> list[dict]:
        """The result events of the statements whose text is exactly `text`."""
        numbers = {sql["n"] for sql in self.data("sql") if sql["text"] == text}
        return [result for result in self.data("result") if result["n"] in numbers]

    def sql(self, text: str) -> dict:
        """The one sql event with exactly this text."""
        matches = [sql for sql in self.data("sql") if sql["text"] == text]
        assert len(matches) == 1, f"expected one statement {text!r}, found {len(matches)}"
        return matches[0]


def clean_env(**extra: str) -> dict[str, str]:
    """The environment without PG* variables, plus `extra`."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("PG")}
    env.update(extra)
    return env


def node_db(gateway: GatewayProcess) -> sqlite3.Connection:
    """The gateway node's own SQLite database, read with the stdlib (no Django in the test process)."""
    conn = sqlite3.connect(gateway.data_dir / "gatehouse.sqlite3", timeout=20)
    conn.row_factory = sqlite3.Row
    return conn


def session_row(gateway: GatewayProcess, application_name: str) -> dict | None:
    with node_db(gateway) as conn:
        row = conn.execute(
            "SELECT * FROM recordings_session WHERE application_name = ? ORDER BY id DESC", (application_name,)
        ).fetchone()
    return dict(row) if row is not None else None


def read_recording(path: Path) -> tuple[dict, list[list]]:
    lines = path.read_text(encoding="utf-8").splitlines()
    return json.loads(lines[0]), [json.loads(line) for line in lines[1:]]


@pytest.fixture
def app_name(request: pytest.FixtureRequest) -> str:
    """A unique application_name for this test's sessions (PostgreSQL keeps 63 bytes)."""
    return f"t-{request.node.name[8:36]}-{secrets.token_hex(4)}"


@pytest.fixture
def sealed_recording(gateway: GatewayProcess) -> Callable[[str], Recording]:
    """Waits until the session with this application_name is sealed, then reads its recording."""

    def wait(application_name: str) -> Recording:
        deadline = time.monotonic() + SEAL_TIMEOUT
        row = None
        while time.monotonic() < deadline:
            row = session_row(gateway, application_name)
            if row is not None and row["status"] != "live" and row["seal"]:
                path = gateway.data_dir / "recordings" / row["recording_path"]
                header, events = read_recording(path)
                return Recording(row, header, events, path)
            time.sleep(0.05)
        pytest.fail(f"session {application_name!r} was not sealed within {SEAL_TIMEOUT:g}s (row: {row})")

    return wait


@pytest.fixture
def direct(pg_cluster: PgCluster) -> Iterator[psycopg.Connection]:
    """A psycopg connection straight to the cluster's `app` database, as the gateway's upstream user."""
    with psycopg.connect(pg_cluster.dsn(), autocommit=True) as conn:
        yield conn


@pytest.fixture
def connect(gateway: GatewayProcess, app_name: str) -> Iterator[Callable[..., psycopg.Connection]]:
    """Opens psycopg connections through the gateway (application_name = app_name unless given)."""
    opened: list[psycopg.Connection] = []

    def open_connection(**options: object) -> psycopg.Connection:
        options.setdefault("application_name", app_name)
        options.setdefault("connect_timeout", 15)
        conn = psycopg.connect(gateway.dsn(), **options)
        opened.append(conn)
        return conn

    yield open_connection
    for conn in opened:
        conn.close()


@pytest.fixture
def gateway_psql(gateway: GatewayProcess, app_name: str) -> Callable[..., subprocess.CompletedProcess[str]]:
    """Runs the real psql through the gateway (-X -A -t; the token in PGPASSWORD, never on the command line)."""

    def run(*args: str, stdin: str | None = None, application_name: str = app_name, check: bool = True):
        dsn = gateway.dsn(password="")
        env = clean_env(PGPASSWORD=gateway.token or "", PGAPPNAME=application_name, PGCONNECT_TIMEOUT="15")
        result = subprocess.run(
            ["psql", "-X", "-A", "-t", *args, "--dbname", dsn],
            input=stdin,
            capture_output=True,
            text=True,
            env=env,
            timeout=PSQL_TIMEOUT,
        )
        if check and result.returncode != 0:
            pytest.fail(f"psql through the gateway exited {result.returncode}: {result.stderr.strip()}")
        return result

    return run


@pytest.fixture
def direct_psql(pg_cluster: PgCluster) -> Callable[..., subprocess.CompletedProcess[str]]:
    """Runs the real psql straight to the cluster, with the same options as gateway_psql."""

    def run(*args: str, stdin: str | None = None, check: bool = True):
        env = clean_env(PGPASSWORD=pg_cluster.superuser_password, PGCONNECT_TIMEOUT="15")
        result = subprocess.run(
            ["psql", "-X", "-A", "-t", *args, "--dbname", pg_cluster.dsn(password="")],
            input=stdin,
            capture_output=True,
            text=True,
            env=env,
            timeout=PSQL_TIMEOUT,
        )
        if check and result.returncode != 0:
            pytest.fail(f"psql to the cluster exited {result.returncode}: {result.stderr.strip()}")
        return result

    return run


@pytest.fixture
def raw_gateway(gateway: GatewayProcess, app_name: str) -> Iterator[Callable[..., RawPgClient]]:
    """Logs raw-protocol clients in to the gateway as the provisioned bot."""
    opened: list[RawPgClient] = []

    def open_client(application_name: str = app_name) -> RawPgClient:
        client = RawPgClient("127.0.0.1", gateway.pg_port)
        opened.append(client)
        client.login(gateway.agent_name, gateway.connection_name, gateway.token, application_name=application_name)
        return client

    yield open_client
    for client in opened:
        client.close()


@pytest.fixture
def raw_direct(pg_cluster: PgCluster) -> Iterator[Callable[[], RawPgClient]]:
    """Logs raw-protocol clients in to the cluster directly, as the gateway's upstream user."""
    opened: list[RawPgClient] = []

    def open_client() -> RawPgClient:
        client = RawPgClient(pg_cluster.host, pg_cluster.port)
        opened.append(client)
        client.login("postgres", "app", pg_cluster.superuser_password)
        return client

    yield open_client
    for client in opened:
        client.close()
