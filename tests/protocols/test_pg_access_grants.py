"""Just-in-time access through a real gateway: refused, granted with `manage.py access`, then run out.

An agent without standing `connect` asks for the connection with
`access request`; a reviewer grants it with `access grant`, as an on-call
person would. psycopg then gets in, until the grant runs out (moved into the
past through the node's own ORM with `manage.py shell`). With the terminate
path in place, a node sweeping every half second also ends the sessions an
expired grant allowed, unless the connection says to leave them be.
"""

import re
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass

import psycopg
import pytest

from recordings import actions as recording_actions
from tests.protocols.nodes import add_agent, node_database, poll, session_rows, unique_name
from tests.support.gateway_process import GatewayProcess, provision_bot
from tests.support.pg_cluster import PgCluster

SWEEP_SECONDS = "0.5"
ENDED_TIMEOUT = 20.0

# Runs inside `manage.py shell`: a person who may review the node's connection.
_REVIEWER_SCRIPT = """
import os
from django.contrib.auth.models import User
from guardian.shortcuts import assign_perm
from connections.models import Connection
connection = Connection.objects.get(name=os.environ["GATEHOUSE_TEST_CONNECTION"])
assign_perm("review", User.objects.create_user(os.environ["GATEHOUSE_TEST_REVIEWER"]), connection)
"""

# Runs inside `manage.py shell`: the grant's end moves into the past, as if its time had passed.
_RUN_OUT_SCRIPT = """
import os
from datetime import timedelta
from django.utils import timezone
from approvals.models import AccessRequest
ended = AccessRequest.objects.filter(public_id=os.environ["GATEHOUSE_TEST_REQUEST"], status="granted")
assert ended.update(granted_until=timezone.now() - timedelta(seconds=1)) == 1
"""

# Runs inside `manage.py shell`: the connection's end_sessions_on_grant_expiry set to GATEHOUSE_TEST_END ("1" or "").
_END_SESSIONS_SCRIPT = """
import os
from connections.models import Connection
ending = bool(os.environ["GATEHOUSE_TEST_END"])
Connection.objects.filter(name=os.environ["GATEHOUSE_TEST_CONNECTION"]).update(end_sessions_on_grant_expiry=ending)
"""

needs_terminate = pytest.mark.skipif(
    not hasattr(recording_actions, "request_session_end"), reason="needs recordings.actions.request_session_end"
)


@dataclass(frozen=True)
class Asker:
    """An agent without standing `connect` on the node's connection, and a reviewer of that connection."""

    agent: str
    token: str
    reviewer: str


def make_asker(gateway: GatewayProcess) -> Asker:
    asker = Asker(unique_name("jit-bot"), "", unique_name("reviewer"))
    token = add_agent(gateway, asker.agent)  # a token, no grants
    env = {"GATEHOUSE_TEST_CONNECTION": gateway.connection_name, "GATEHOUSE_TEST_REVIEWER": asker.reviewer}
    gateway.manage("shell", "-c", _REVIEWER_SCRIPT, env=env, check=True)
    return Asker(asker.agent, token, asker.reviewer)


def open_as(gateway: GatewayProcess, asker: Asker, dbname: str | None = None, **options) -> psycopg.Connection:
    return psycopg.connect(
        gateway.dsn(dbname=dbname, user=asker.agent, password=asker.token), connect_timeout=15, **options
    )


def login_error(gateway: GatewayProcess, asker: Asker, dbname: str | None = None) -> str:
    """The error a login as the asker gets, with the connection's name replaced by NAME."""
    name = dbname or gateway.connection_name
    with pytest.raises(psycopg.OperationalError) as raised:
        open_as(gateway, asker, dbname=name).close()
    return str(raised.value).replace(name, "NAME")


def grant(gateway: GatewayProcess, asker: Asker, duration: str = "1h") -> str:
    """`access request` as the agent, then `access grant` as the reviewer; returns the request id."""
    asked = gateway.manage(
        *("access", "request", asker.agent, gateway.connection_name, "--for", duration, "--reason", "incident 4711"),
        check=True,
    )
    match = re.match(r"Access request ([0-9a-f-]{36}): ", asked.stdout)
    assert match, asked.stdout
    request_id = match.group(1)
    granted = gateway.manage("access", "grant", request_id, "--as", asker.reviewer, check=True)
    assert f"Access request {request_id} is granted (by {asker.reviewer})" in granted.stdout
    return request_id


def run_out(gateway: GatewayProcess, request_id: str) -> None:
    gateway.manage("shell", "-c", _RUN_OUT_SCRIPT, env={"GATEHOUSE_TEST_REQUEST": request_id}, check=True)


def stored_status(gateway: GatewayProcess, request_id: str) -> str:
    """The request's status as the node's database holds it (SQLite keeps a UUID as 32 hex digits)."""
    with sqlite3.connect(node_database(gateway), timeout=20) as conn:
        row = conn.execute(
            "SELECT status FROM approvals_accessrequest WHERE public_id = ?", (request_id.replace("-", ""),)
        ).fetchone()
    assert row is not None, f"no access request {request_id} in the node's database"
    return row[0]


def set_end_sessions(gateway: GatewayProcess, ending: bool) -> None:
    env = {"GATEHOUSE_TEST_CONNECTION": gateway.connection_name, "GATEHOUSE_TEST_END": "1" if ending else ""}
    gateway.manage("shell", "-c", _END_SESSIONS_SCRIPT, env=env, check=True)


def test_it_lets_an_agent_in_only_while_its_grant_lasts(gateway: GatewayProcess) -> None:
    asker = make_asker(gateway)
    unknown = login_error(gateway, asker, dbname=unique_name("no-such-connection"))
    assert 'does not exist or agent "' in unknown
    assert login_error(gateway, asker) == unknown  # not granted looks exactly like unknown
    request_id = grant(gateway, asker)
    with open_as(gateway, asker) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)
    run_out(gateway, request_id)
    assert login_error(gateway, asker) == unknown
    listed = gateway.manage("access", "list", check=True).stdout
    assert re.search(rf"^{request_id}\s+expired\s", listed, re.MULTILINE), listed


@pytest.fixture(scope="module")
def sweeping_node(pg_cluster: PgCluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    """A node of this module's own whose grant sweeper runs every half second."""
    node = GatewayProcess(
        tmp_path_factory.mktemp("gateway-grants"), env={"GATEHOUSE_GRANT_SWEEP_SECONDS": SWEEP_SECONDS}
    )
    try:
        provision_bot(node, pg_cluster)
        node.start()
        yield node
    finally:
        node.stop()


def live_session_of(gateway: GatewayProcess, application_name: str) -> dict | None:
    rows = session_rows(gateway, application_name)
    return rows[-1] if rows else None


@needs_terminate
def test_it_ends_the_sessions_of_an_expired_grant(sweeping_node: GatewayProcess) -> None:
    asker = make_asker(sweeping_node)
    request_id = grant(sweeping_node, asker)
    app_name = unique_name("jit-ended")
    conn = open_as(sweeping_node, asker, application_name=app_name, autocommit=True)
    with conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)
        run_out(sweeping_node, request_id)
        ended = poll(
            lambda: (live_session_of(sweeping_node, app_name) or {}).get("status") == "terminated", ENDED_TIMEOUT
        )
        assert ended, session_rows(sweeping_node, app_name)
        with pytest.raises(psycopg.OperationalError):
            conn.execute("SELECT 1")
    assert live_session_of(sweeping_node, app_name)["terminated_by"] == "gatehouse"
    assert stored_status(sweeping_node, request_id) == "expired"
    assert sweeping_node.running


def test_it_leaves_sessions_be_when_the_connection_says_so(sweeping_node: GatewayProcess) -> None:
    asker = make_asker(sweeping_node)
    unknown = login_error(sweeping_node, asker, dbname=unique_name("no-such-connection"))
    set_end_sessions(sweeping_node, False)
    try:
        request_id = grant(sweeping_node, asker)
        app_name = unique_name("jit-kept")
        with open_as(sweeping_node, asker, application_name=app_name, autocommit=True) as conn:
            run_out(sweeping_node, request_id)
            expired = poll(lambda: stored_status(sweeping_node, request_id) == "expired", ENDED_TIMEOUT, interval=0.2)
            assert expired, "the sweeper did not expire the grant"
            assert conn.execute("SELECT 1").fetchone() == (1,)  # the live session goes on
        assert login_error(sweeping_node, asker) == unknown  # but no new one starts
    finally:
        set_end_sessions(sweeping_node, True)
    assert live_session_of(sweeping_node, app_name)["terminated_by"] == ""
