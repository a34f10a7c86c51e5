"""What the protocol tests share about gateway nodes, the sessions they run, and their upstream.

A check that a node still serves a normal client; unique names for what a
test adds to a shared node; connections and agents added as an operator
would; nodes of a test's own; raw clients logged in as a node's bot; a
node's Session rows and recordings, read with the stdlib (no Django in the
test process); and waiting, for a session or for the upstream to run a query.
"""

import contextlib
import json
import os
import secrets
import sqlite3
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import psycopg
from psycopg import sql

from tests.protocols.wire import Message, WireClient
from tests.support.gateway_process import UPSTREAM_PASSWORD_VAR, GatewayProcess, provision_bot
from tests.support.pg_cluster import SEED_ROWS, SEED_TABLE, PgCluster

SESSION_TIMEOUT = 20.0
UPSTREAM_QUERY_TIMEOUT = 30.0

T = TypeVar("T")


def poll(check: Callable[[], T], timeout: float, interval: float = 0.05) -> T | None:
    """What `check()` returns once it is truthy; None if it is not within `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        found = check()
        if found:
            return found
        if time.monotonic() >= deadline:
            return None
        time.sleep(interval)


# --- nodes ------------------------------------------------------------------------


def assert_serves(gateway: GatewayProcess) -> None:
    """The node is alive and a normal psycopg client still runs a query through it."""
    assert gateway.running, f"the gateway process died:\n{gateway.log_tail()}"
    with psycopg.connect(gateway.dsn(), connect_timeout=15) as conn:
        count = conn.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(SEED_TABLE))).fetchone()
    assert count == (SEED_ROWS,)


def unique_name(prefix: str) -> str:
    """A connection, agent or application name no other test uses on a shared node."""
    return f"{prefix}-{secrets.token_hex(4)}"


@contextlib.contextmanager
def running_node(
    data_dir: Path, cluster: PgCluster, env: dict[str, str] | None = None, start: bool = True
) -> Iterator[GatewayProcess]:
    """A node with the bot provisioned (see provision_bot), started unless `start` is false; stopped on exit."""
    node = GatewayProcess(data_dir, env=env)
    try:
        provision_bot(node, cluster)
        if start:
            node.start()
        yield node
    finally:
        node.stop()


def bot_client(gateway: GatewayProcess, connection: str | None = None, **params: str) -> WireClient:
    """A raw client logged in as the node's bot (to `connection`, else the bot's own); see client.greeting."""
    client = WireClient(gateway.pg_port)
    try:
        client.login(gateway.agent_name, connection or gateway.connection_name, gateway.token, **params)
    except BaseException:
        client.close()
        raise
    return client


def after_auth_request(gateway: GatewayProcess, reply: bytes) -> list[Message]:
    """Start a session as the bot over TLS and answer the first authentication request with `reply`.

    Returns every message the gateway sent after that, until it closed the connection.
    """
    with WireClient(gateway.pg_port) as client:
        client.startup(gateway.agent_name, gateway.connection_name)
        request = client.read_message()
        assert request.kind == b"R", f"expected an authentication request, got {request!r}"
        client.send(reply)
        return client.messages_until_close()


def add_connection(
    gateway: GatewayProcess,
    name: str,
    cluster: PgCluster,
    user: str,
    *,
    tls: str = "disable",
    password: str | None = None,
    ca_file: Path | None = None,
    port: int | None = None,
    grant_to: str | None = None,
) -> None:
    """`connections add` for the cluster's app database as `user` (its own password unless given)."""
    password = cluster.passwords.get(user, "unused") if password is None else password
    options = ["--tls", tls] + (["--tls-ca-file", str(ca_file)] if ca_file else [])
    gateway.manage(
        *("connections", "add", name, "--kind", "postgres", "--host", cluster.host),
        *("--port", str(port or cluster.port), "--database", "app", "--user", user),
        *("--password-env", UPSTREAM_PASSWORD_VAR, *options),
        env={UPSTREAM_PASSWORD_VAR: password},
        check=True,
    )
    if grant_to:
        gateway.manage("agents", "grant", grant_to, name, check=True)


@dataclass(frozen=True)
class ConnectionSpec:
    """One upstream connection to register in bulk with `add_connections`."""

    name: str
    user: str
    password: str
    tls: str = "disable"
    ca_pem: str = ""
    port: int | None = None


# Runs inside `manage.py shell`: the same actions `connections add` and `agents grant` call.
_ADD_CONNECTIONS_SCRIPT = """
import json, os
from connections.actions import do_create_connection, do_grant_connect
from connections.models import ServiceAccount
batch = json.loads(os.environ["GATEHOUSE_TEST_CONNECTIONS"])
account = ServiceAccount.objects.get(name=batch["grant_to"])
for spec in batch["connections"]:
    do_grant_connect(account, do_create_connection(kind="postgres", **spec))
"""


def add_connections(gateway: GatewayProcess, cluster: PgCluster, specs: list[ConnectionSpec], grant_to: str) -> None:
    """Register many connections to the cluster's app database and grant them, in one process.

    `add_connection` goes through the CLI; this does what it does for a whole
    batch at once, because each manage.py process costs about half a second.
    """
    connections = [
        {
            "name": spec.name,
            "host": cluster.host,
            "port": spec.port or cluster.port,
            "database": "app",
            "username": spec.user,
            "password": spec.password,
            "tls_mode": spec.tls,
            "tls_ca_pem": spec.ca_pem,
        }
        for spec in specs
    ]
    # The passwords travel in the environment, never on a command line.
    batch = json.dumps({"grant_to": grant_to, "connections": connections})
    gateway.manage("shell", "-c", _ADD_CONNECTIONS_SCRIPT, env={"GATEHOUSE_TEST_CONNECTIONS": batch}, check=True)


def add_agent(gateway: GatewayProcess, name: str, *grants: str, ttl: str | None = None) -> str:
    """`agents add` and `agents token` (and `agents grant` per connection); returns the token."""
    gateway.manage("agents", "add", name, check=True)
    issued = gateway.manage("agents", "token", name, *(["--ttl", ttl] if ttl else []), check=True)
    for connection in grants:
        gateway.manage("agents", "grant", name, connection, check=True)
    return issued.stdout.strip().splitlines()[-1].strip()


# --- clients as processes ---------------------------------------------------------


def clean_env(**extra: str) -> dict[str, str]:
    """The environment without PG* variables, plus `extra`."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("PG")}
    env.update(extra)
    return env


def gateway_psql_env(gateway: GatewayProcess, application_name: str) -> dict[str, str]:
    """psql's environment for the node's bot: the token in PGPASSWORD, never on the command line."""
    return clean_env(PGPASSWORD=gateway.token or "", PGAPPNAME=application_name, PGCONNECT_TIMEOUT="15")


def psql_command(dsn: str, *args: str) -> list[str]:
    """psql without ~/.psqlrc, with these arguments, connecting to `dsn`."""
    return ["psql", "-X", *args, "--dbname", dsn]


# --- sessions and recordings ------------------------------------------------------------


def node_database(gateway: GatewayProcess) -> Path:
    """The node's own SQLite file."""
    return gateway.data_dir / "gatehouse.sqlite3"


def session_rows(gateway: GatewayProcess, application_name: str | None = None) -> list[dict]:
    """The node's Session rows (with this application_name), oldest first, read from its SQLite file."""
    with sqlite3.connect(node_database(gateway), timeout=20) as conn:
        conn.row_factory = sqlite3.Row
        statement, params = "SELECT * FROM recordings_session", ()
        if application_name is not None:
            statement, params = statement + " WHERE application_name = ?", (application_name,)
        return [dict(row) for row in conn.execute(statement + " ORDER BY id", params)]


def public_id(row: dict) -> str:
    """The session id as the CLI prints it (SQLite stores the UUID as 32 hex digits)."""
    hexid = row["public_id"].replace("-", "")
    return f"{hexid[:8]}-{hexid[8:12]}-{hexid[12:16]}-{hexid[16:20]}-{hexid[20:]}"


def recording_path(gateway: GatewayProcess, row: dict) -> Path:
    return gateway.data_dir / "recordings" / row["recording_path"]


@dataclass
class Recording:
    """One session's recording: its Session row, its header and its events."""

    row: dict
    header: dict
    events: list[list]  # [t, kind, data, link]
    path: Path

    def data(self, kind: str) -> list:
        """The data of every event of this kind, in order."""
        return [event[2] for event in self.events if event[1] == kind]

    def results_for(self, text: str) -> list[dict]:
        """The result events of the statements whose text is exactly `text`."""
        numbers = {statement["n"] for statement in self.data("sql") if statement["text"] == text}
        return [result for result in self.data("result") if result["n"] in numbers]

    def sql(self, text: str) -> dict:
        """The one sql event with exactly this text."""
        matches = [statement for statement in self.data("sql") if statement["text"] == text]
        assert len(matches) == 1, f"expected one statement {text!r}, found {len(matches)}"
        return matches[0]


def read_recording(gateway: GatewayProcess, row: dict) -> Recording:
    """The recording of the session in `row`, as it is on disk now."""
    path = recording_path(gateway, row)
    lines = path.read_text(encoding="utf-8").splitlines()
    return Recording(row, json.loads(lines[0]), [json.loads(line) for line in lines[1:]], path)


def wait_for_session(
    gateway: GatewayProcess,
    application_name: str,
    sealed: bool,
    timeout: float = SESSION_TIMEOUT,
    newest: bool = False,
) -> dict:
    """The Session row with this application_name, once it exists (and, if `sealed`, is sealed).

    There must be exactly one such row, unless `newest`: then the newest one is
    the one (a client such as pgbench opens several sessions under one name).
    """

    def ready() -> dict | None:
        rows = session_rows(gateway, application_name)
        if not rows or (len(rows) != 1 and not newest):
            return None
        row = rows[-1]
        return row if not sealed or (row["status"] != "live" and row["seal"]) else None

    row = poll(ready, timeout)
    if row is None:
        rows = session_rows(gateway, application_name)
        raise AssertionError(f"no {'sealed ' if sealed else ''}session {application_name!r} in {timeout:g}s: {rows}")
    return row


def wait_for_recorded(gateway: GatewayProcess, row: dict, text: str, timeout: float = SESSION_TIMEOUT) -> None:
    """Wait until `text` is in the session's recording file (the flusher wrote it)."""
    path = recording_path(gateway, row)
    if not poll(lambda: path.exists() and text in path.read_text(encoding="utf-8", errors="replace"), timeout):
        raise AssertionError(f"{text!r} did not reach {path} in {timeout:g}s")


def assert_verifies(gateway: GatewayProcess, target: str) -> subprocess.CompletedProcess[str]:
    """`recordings verify TARGET` (a session id or --all) exits 0; its result, for more checks."""
    verified = gateway.manage("recordings", "verify", target)
    assert verified.returncode == 0, verified.stdout + verified.stderr
    return verified


# --- the upstream ------------------------------------------------------------------------


def wait_for_upstream_query(
    upstream: psycopg.Connection,
    application_name: str,
    prefix: str,
    timeout: float = UPSTREAM_QUERY_TIMEOUT,
    interval: float = 0.05,
) -> int | None:
    """The pid of the upstream backend once it runs a query starting with `prefix` for this application_name.

    None if it does not within `timeout` seconds. `upstream` is a connection straight to the cluster.
    """

    def active_pid() -> int | None:
        row = upstream.execute(
            "SELECT pid FROM pg_stat_activity WHERE application_name = %s AND state = 'active' AND query LIKE %s",
            (application_name, prefix + "%"),
        ).fetchone()
        return row[0] if row else None

    return poll(active_pid, timeout, interval)
