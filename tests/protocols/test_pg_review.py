"""Statements held for review through real clients: approved, denied, withdrawn, timed out.

A connection to the app database carries a policy whose CREATE statements
need a review. The bot's psql or psycopg waits while a person decides with
`manage.py reviews approve|deny`, as an on-call reviewer would.
"""

import functools
import http.server
import json
import subprocess
import threading
from dataclasses import dataclass

import psycopg
import pytest
from psycopg import errors, sql

from connections.policy.policy_file import PolicyEntry, policy_file_yaml
from connections.policy.rules import GuardrailMatch, GuardrailRule, PolicySpec
from tests.protocols.nodes import add_connection, gateway_psql_env, poll, psql_command, unique_name
from tests.support.background import in_background
from tests.support.gateway_process import GatewayProcess, provision_bot
from tests.support.pg_cluster import SUPERUSER, PgCluster

HELD_TIMEOUT = 20.0
# Runs a client call that waits for a decision in a thread; calling the result joins it.
held_call = functools.partial(in_background, timeout=HELD_TIMEOUT + 30)

# Runs inside `manage.py shell`: a person who may review the connection, and one who may not.
_PEOPLE_SCRIPT = """
import os
from django.contrib.auth.models import User
from guardian.shortcuts import assign_perm
from connections.models import Connection
connection = Connection.objects.get(name=os.environ["GATEHOUSE_TEST_CONNECTION"])
reviewer = User.objects.create_user(os.environ["GATEHOUSE_TEST_REVIEWER"])
assign_perm("review", reviewer, connection)
User.objects.create_user(os.environ["GATEHOUSE_TEST_OUTSIDER"])
"""


@dataclass(frozen=True)
class Reviewed:
    connection: str
    reviewer: str
    outsider: str


def _review_policy(gateway: GatewayProcess, connection: str, tmp_path, timeout: float | None = None) -> None:
    rule = GuardrailRule("schema-changes", "review", GuardrailMatch(kind=("CREATE",)), timeout=timeout)
    spec = PolicySpec(name=unique_name("reviewed"), guardrails=(rule,))
    policy_file = tmp_path / "review-policy.yaml"
    policy_file.write_text(policy_file_yaml([PolicyEntry(spec, "", (connection,))]))
    gateway.manage("policies", "apply", str(policy_file), check=True)


def _set_up(gateway: GatewayProcess, cluster: PgCluster, tmp_path) -> Reviewed:
    people = Reviewed(unique_name("reviewed"), unique_name("reviewer"), unique_name("outsider"))
    add_connection(gateway, people.connection, cluster, SUPERUSER, password=cluster.superuser_password)
    gateway.manage("agents", "grant", gateway.agent_name, people.connection, check=True)
    _review_policy(gateway, people.connection, tmp_path)
    env = {
        "GATEHOUSE_TEST_CONNECTION": people.connection,
        "GATEHOUSE_TEST_REVIEWER": people.reviewer,
        "GATEHOUSE_TEST_OUTSIDER": people.outsider,
    }
    gateway.manage("shell", "-c", _PEOPLE_SCRIPT, env=env, check=True)
    return people


@pytest.fixture(scope="module")
def reviewed(gateway: GatewayProcess, pg_cluster: PgCluster, tmp_path_factory: pytest.TempPathFactory) -> Reviewed:
    return _set_up(gateway, pg_cluster, tmp_path_factory.mktemp("review"))


@pytest.fixture
def table_name(direct: psycopg.Connection, app_name: str):
    name = app_name.replace("-", "_")
    yield name
    direct.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(sql.Identifier(name)))


def pending_review(gateway: GatewayProcess, rule: str = "schema-changes") -> str:
    """The id of the one pending review of this test (waiting until it appears)."""

    def find() -> str | None:
        listed = gateway.manage("reviews", "list", "--pending", check=True).stdout
        rows = [line.split() for line in listed.splitlines() if rule in line and "pending" in line]
        return rows[0][0] if len(rows) == 1 else None

    review_id = poll(find, HELD_TIMEOUT, interval=0.3)
    assert review_id, "no pending review appeared"
    return review_id


def test_it_runs_a_held_statement_once_a_reviewer_approves(gateway, reviewed, app_name, table_name, direct) -> None:
    statement = f"CREATE TABLE {table_name} (id int)"
    command = psql_command(gateway.dsn(dbname=reviewed.connection, password=""), "-c", statement)
    env = gateway_psql_env(gateway, app_name)
    finished = held_call(lambda: subprocess.run(command, capture_output=True, text=True, env=env, timeout=60))
    review_id = pending_review(gateway)
    assert direct.execute("SELECT to_regclass(%s)", (table_name,)).fetchone() == (None,)  # held: nothing ran
    outsider = gateway.manage("reviews", "approve", review_id, "--as", reviewed.outsider)
    assert outsider.returncode != 0 and "no review" in outsider.stderr.lower()
    approved = gateway.manage("reviews", "approve", review_id, "--as", reviewed.reviewer, "--comment", "ok")
    assert approved.returncode == 0, approved.stderr
    result = finished()
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "CREATE TABLE"
    assert direct.execute("SELECT to_regclass(%s) IS NOT NULL", (table_name,)).fetchone() == (True,)


def test_it_denies_a_held_statement_by_the_reviewer_and_keeps_the_session(gateway, reviewed, app_name) -> None:
    conn = psycopg.connect(gateway.dsn(dbname=reviewed.connection), application_name=app_name, autocommit=True)
    with conn:
        finished = held_call(lambda: conn.execute("CREATE TABLE never_made (id int)"))
        review_id = pending_review(gateway)
        denied = gateway.manage("reviews", "deny", review_id, "--as", reviewed.reviewer, "--comment", "not today")
        assert denied.returncode == 0, denied.stderr
        with pytest.raises(errors.InsufficientPrivilege) as raised:
            finished()
        assert f"denied in review by {reviewed.reviewer}: not today" in str(raised.value)
        assert conn.execute("SELECT to_regclass('never_made') IS NULL").fetchone() == (True,)


def test_it_withdraws_the_review_when_the_client_cancels(gateway, reviewed, app_name) -> None:
    conn = psycopg.connect(gateway.dsn(dbname=reviewed.connection), application_name=app_name, autocommit=True)
    with conn:
        finished = held_call(lambda: conn.execute("CREATE TABLE canceled_one (id int)"))
        review_id = pending_review(gateway)
        conn.cancel()
        with pytest.raises(errors.InsufficientPrivilege, match="withdrawn|canceled"):
            finished()
        assert conn.execute("SELECT 1").fetchone() == (1,)
    listed = poll(lambda: "withdrawn" in _review_line(gateway, review_id), HELD_TIMEOUT)
    assert listed, _review_line(gateway, review_id)


def test_it_reviews_every_execution_of_a_prepared_statement(gateway, reviewed, app_name, table_name) -> None:
    statement = f"CREATE TABLE IF NOT EXISTS {table_name} (id int)"
    conn = psycopg.connect(gateway.dsn(dbname=reviewed.connection), application_name=app_name, autocommit=True)
    with conn:
        first = held_call(lambda: conn.execute(statement, prepare=True))  # Parse, then Bind: one review
        approved = gateway.manage("reviews", "approve", pending_review(gateway), "--as", reviewed.reviewer)
        assert approved.returncode == 0, approved.stderr
        first()
        again = held_call(lambda: conn.execute(statement, prepare=True))  # Bind of the prepared statement alone
        denied = gateway.manage("reviews", "deny", pending_review(gateway), "--as", reviewed.reviewer)
        assert denied.returncode == 0, denied.stderr
        with pytest.raises(errors.InsufficientPrivilege, match=f"denied in review by {reviewed.reviewer}"):
            again()
        assert conn.execute("SELECT 1").fetchone() == (1,)


def _review_line(gateway: GatewayProcess, review_id: str) -> str:
    listed = gateway.manage("reviews", "list", check=True).stdout
    return next((line for line in listed.splitlines() if line.startswith(review_id)), "")


def test_it_denies_when_nobody_decides_within_the_rules_timeout(gateway, pg_cluster, app_name, tmp_path) -> None:
    connection = unique_name("hurried")
    add_connection(gateway, connection, pg_cluster, SUPERUSER, password=pg_cluster.superuser_password)
    gateway.manage("agents", "grant", gateway.agent_name, connection, check=True)
    _review_policy(gateway, connection, tmp_path, timeout=2)
    conn = psycopg.connect(gateway.dsn(dbname=connection), application_name=app_name, autocommit=True)
    with conn, pytest.raises(errors.InsufficientPrivilege, match="no reviewer decided within 2 s"):
        conn.execute("CREATE TABLE too_late (id int)")
    with psycopg.connect(gateway.dsn(dbname=connection), autocommit=True) as again:
        assert again.execute("SELECT to_regclass('too_late') IS NULL").fetchone() == (True,)


class _Receiver(http.server.BaseHTTPRequestHandler):
    """A webhook receiver that fails the first POST (to see the retry), then takes them."""

    bodies: list[dict] = []
    failures_left = 1

    def do_POST(self) -> None:  # noqa: N802 (the stdlib's name)
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        if type(self).failures_left > 0:
            type(self).failures_left -= 1
            self.send_response(500)
        else:
            type(self).bodies.append(body)
            self.send_response(204)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


def test_it_announces_a_held_statement_on_the_webhook(gateway_factory, pg_cluster, app_name, tmp_path) -> None:
    receiver = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Receiver)
    threading.Thread(target=receiver.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{receiver.server_address[1]}/hook"
        node = gateway_factory(env={"GATEHOUSE_WEBHOOK_URL": url})
        provision_bot(node, pg_cluster)
        people = _set_up(node, pg_cluster, tmp_path)
        node.start()
        conn = psycopg.connect(node.dsn(dbname=people.connection), application_name=app_name, autocommit=True)
        with conn:
            finished = held_call(lambda: conn.execute("CREATE TABLE announced (id int)"))
            review_id = pending_review(node)
            assert poll(lambda: _Receiver.bodies, HELD_TIMEOUT), "the webhook was not delivered"
            node.manage("reviews", "deny", review_id, "--as", people.reviewer, check=True)
            with pytest.raises(errors.InsufficientPrivilege):
                finished()
    finally:
        receiver.shutdown()
    (body,) = _Receiver.bodies
    assert _Receiver.failures_left == 0  # the first POST failed and was retried
    assert body["gatehouse"]["id"] == review_id and body["gatehouse"]["rule"] == "schema-changes"
    assert body["gatehouse"]["connection"] == people.connection
    assert "CREATE TABLE announced" in body["text"] and review_id in body["text"]
