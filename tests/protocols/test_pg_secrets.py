"""The upstream password and the agent's token stay secret.

The canary password (gateway.canary) must never appear in a byte sent to a
client, in psql's output, in the gateway's log, in a recording or in the
node's database (where it is stored encrypted). The token must not appear in
the log, the recordings or the database either (only its hashes are stored).
"""

import secrets
from pathlib import Path

import pytest

from tests.protocols.nodes import add_connection, node_database, unique_name
from tests.protocols.wire import ServerError, WireClient, query_message
from tests.support.gateway_process import GatewayProcess
from tests.support.pg_cluster import PgCluster

PROBING_QUERIES = (
    "SELECT current_user, session_user, current_database(), inet_server_port()",
    "SHOW ALL",
    "SELECT name, setting FROM pg_settings ORDER BY name",
    "SELECT usename, application_name, client_addr, query FROM pg_stat_activity",
    "SELECT 1/0",
    "SELECT * FROM no_such_table",
)


def files_holding(root: Path, needle: bytes) -> list[str]:
    """Every file under root whose bytes contain needle."""
    return [str(path) for path in root.rglob("*") if path.is_file() and needle in path.read_bytes()]


@pytest.fixture
def wrong_password_connection(gateway: GatewayProcess, pg_cluster: PgCluster) -> tuple[str, str]:
    """A connection to the cluster stored with a wrong (canary) password, granted to the bot."""
    name, password = unique_name("secrets"), f"canary-wrong-{secrets.token_hex(12)}"
    add_connection(gateway, name, pg_cluster, "postgres", tls="require", password=password, grant_to=gateway.agent_name)
    return name, password


def test_it_never_sends_the_upstream_password_to_a_raw_client(raw_gateway, gateway) -> None:
    client = raw_gateway()
    assert client.greeting.parameters["server_version"]
    for query in PROBING_QUERIES:
        client.exchange(query_message(query))
    client.close()
    received = bytes(client.received)
    assert len(received) > 10_000  # the login, every setting and the activity table
    assert gateway.canary.encode() not in received
    assert gateway.token.encode() not in received


def test_it_never_shows_the_upstream_password_in_psql(gateway_psql, gateway) -> None:
    commands = [arg for query in PROBING_QUERIES for arg in ("-c", query)]
    result = gateway_psql("-c", "\\conninfo", *commands, check=False)
    assert 'as user "ci-bot"' in result.stdout
    assert "division by zero" in result.stderr
    assert gateway.canary not in result.stdout + result.stderr


def test_it_keeps_a_refused_upstream_password_secret(gateway, wrong_password_connection, pg_cluster) -> None:
    name, password = wrong_password_connection
    with WireClient(gateway.pg_port) as client, pytest.raises(ServerError) as refused:
        client.login(gateway.agent_name, name, gateway.token, application_name="secrets-refused")
    assert refused.value.sqlstate.startswith(("08", "28"))
    assert password.encode() not in bytes(client.received)
    assert password not in gateway.log_text()
    assert files_holding(gateway.data_dir, password.encode()) == []
    assert "password authentication failed" in pg_cluster.log_text()  # the upstream really was asked


def test_it_keeps_secrets_out_of_the_log_recordings_and_database(
    gateway, raw_gateway, gateway_psql, sealed_recording, app_name
) -> None:
    client = raw_gateway()
    client.query("SELECT count(*) FROM items")
    client.close()
    with pytest.raises(ServerError), WireClient(gateway.pg_port) as wrong:
        wrong.login(gateway.agent_name, gateway.connection_name, gateway.token[::-1])
    gateway_psql("-c", "SELECT 'psql was here'")
    sealed_recording(app_name)

    recordings = gateway.data_dir / "recordings"
    # The scans below do read what is there: the statements and the failed login are.
    assert files_holding(recordings, b"SELECT count(*) FROM items")
    assert "login failed for agent 'ci-bot'" in gateway.log_text()
    database = node_database(gateway)
    assert database.is_file()
    for secret in (gateway.canary, gateway.token):
        assert secret not in gateway.log_text()
        assert files_holding(recordings, secret.encode()) == []
        # The whole data dir: the database (and its WAL), keys, certificates, the log.
        assert files_holding(gateway.data_dir, secret.encode()) == []
