"""Client authentication at the PostgreSQL listener: tokens, connection names, cleartext and channel binding.

A wrong, expired or revoked token looks exactly like an unknown agent, and
an unknown connection exactly like one the agent may not use, so nobody can
probe which agents or connections exist.
"""

import datetime
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.protocols.nodes import (
    add_agent,
    add_connection,
    after_auth_request,
    assert_serves,
    bot_client,
    running_node,
    unique_name,
)
from tests.protocols.wire import (
    AUTH_CLEARTEXT,
    AUTH_OK,
    AUTH_SASL,
    SCRAM,
    SCRAM_PLUS,
    ScramClient,
    ServerError,
    WireClient,
    login_error,
    sasl_initial_response,
    startup_packet,
)
from tests.support.gateway_process import GatewayProcess
from tests.support.pg_cluster import PgCluster

WRONG_TOKEN = "gh_wrong-token-0123456789abcdef"  # noqa: S105 (a deliberately wrong token)


def without(fields: dict[str, str], *names: str) -> dict[str, str]:
    """The error's fields with each name blanked out, to compare two errors about different names."""
    blanked = {}
    for code, value in fields.items():
        for name in names:
            value = value.replace(f'"{name}"', '"NAME"')
        blanked[code] = value
    return blanked


def auth_failure(user: str) -> dict[str, str]:
    return {"S": "FATAL", "V": "FATAL", "C": "28P01", "M": f'password authentication failed for user "{user}"'}


@pytest.fixture(scope="module")
def unknown_agent_error(gateway: GatewayProcess) -> dict[str, str]:
    """What an agent that does not exist gets, with its name blanked."""
    name = unique_name("no-such-agent")
    return without(login_error(gateway.pg_port, name, gateway.connection_name, WRONG_TOKEN), name)


# --- tokens ------------------------------------------------------------------------


def test_it_refuses_a_wrong_token_like_an_unknown_agent(
    gateway: GatewayProcess, unknown_agent_error: dict[str, str]
) -> None:
    fields = login_error(gateway.pg_port, gateway.agent_name, gateway.connection_name, WRONG_TOKEN)
    assert fields == auth_failure(gateway.agent_name)
    assert without(fields, gateway.agent_name) == unknown_agent_error
    with pytest.raises(psycopg.OperationalError, match='password authentication failed for user "ci-bot"'):
        psycopg.connect(gateway.dsn(password=WRONG_TOKEN), connect_timeout=15)
    assert WRONG_TOKEN not in gateway.log_text()
    assert_serves(gateway)


def test_it_refuses_an_expired_token_like_an_unknown_agent(
    gateway: GatewayProcess, unknown_agent_error: dict[str, str]
) -> None:
    agent = unique_name("expiring-bot")
    token = add_agent(gateway, agent, gateway.connection_name, ttl="1s")
    time.sleep(1.2)  # the token was issued before the grant, so it is past its second by now
    fields = login_error(gateway.pg_port, agent, gateway.connection_name, token)
    assert fields == auth_failure(agent)
    assert without(fields, agent) == unknown_agent_error
    # Only the token expired: a fresh one for the same agent and grant works.
    fresh = gateway.manage("agents", "token", agent, check=True).stdout.strip().splitlines()[-1]
    with psycopg.connect(gateway.dsn(user=agent, password=fresh), connect_timeout=15) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)
    assert_serves(gateway)


def test_it_refuses_a_revoked_token_like_an_unknown_agent(
    gateway: GatewayProcess, unknown_agent_error: dict[str, str]
) -> None:
    agent = unique_name("revoked-bot")
    token = add_agent(gateway, agent, gateway.connection_name)
    with psycopg.connect(gateway.dsn(user=agent, password=token), autocommit=True, connect_timeout=15) as before:
        assert before.execute("SELECT 'before revoke'").fetchone() == ("before revoke",)
        revoked = gateway.manage("agents", "revoke", agent, check=True)
        assert "Revoked 1 token" in revoked.stdout
        fields = login_error(gateway.pg_port, agent, gateway.connection_name, token)
    assert fields == auth_failure(agent)
    assert without(fields, agent) == unknown_agent_error
    with pytest.raises(psycopg.OperationalError, match=f'password authentication failed for user "{agent}"'):
        psycopg.connect(gateway.dsn(user=agent, password=token), connect_timeout=15)
    assert_serves(gateway)


def test_it_checks_the_token_before_saying_anything_about_the_connection(gateway: GatewayProcess) -> None:
    fields = login_error(gateway.pg_port, gateway.agent_name, unique_name("no-such-connection"), WRONG_TOKEN)
    assert fields == auth_failure(gateway.agent_name)


# --- connections ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def forbidden_connection(gateway: GatewayProcess, pg_cluster: PgCluster) -> str:
    """A connection that exists but that ci-bot was never granted."""
    name = unique_name("not-granted")
    add_connection(gateway, name, pg_cluster, "scramuser")
    return name


def test_it_gives_unknown_and_forbidden_connections_the_same_error(
    gateway: GatewayProcess, forbidden_connection: str
) -> None:
    unknown = unique_name("no-such-connection")
    errors = {}
    for name in (unknown, forbidden_connection):
        fields = login_error(gateway.pg_port, gateway.agent_name, name, gateway.token)
        assert fields["C"] == "3D000", fields
        assert fields["S"] == "FATAL", fields
        assert fields["M"] == f'connection "{name}" does not exist or agent "{gateway.agent_name}" may not use it'
        errors[name] = without(fields, name)
    assert errors[unknown] == errors[forbidden_connection]
    messages = []
    for name in (unknown, forbidden_connection):
        with pytest.raises(psycopg.OperationalError) as raised:
            psycopg.connect(gateway.dsn(dbname=name), connect_timeout=15)
        messages.append(str(raised.value).replace(name, "NAME"))
    assert messages[0] == messages[1]
    assert_serves(gateway)


# --- SCRAM and channel binding ---------------------------------------------------------


def test_it_offers_scram_plus_inside_tls(gateway: GatewayProcess) -> None:
    with bot_client(gateway) as client:
        greeting = client.greeting
    assert greeting.mechanisms == [SCRAM_PLUS, SCRAM]
    assert greeting.auth_requests == [AUTH_SASL, 11, 12, AUTH_OK]


def test_it_uses_channel_binding_when_libpq_requires_it(gateway: GatewayProcess) -> None:
    # libpq refuses to finish a login without SCRAM-SHA-256-PLUS when channel_binding=require.
    with psycopg.connect(gateway.dsn(), channel_binding="require", connect_timeout=15) as conn:
        assert conn.execute("SELECT current_user").fetchone() == ("postgres",)
    assert_serves(gateway)


def sha384_certificate(directory: Path) -> tuple[Path, Path]:
    """An operator's own P-384 certificate signed with SHA-384 (ours are SHA-256)."""
    key = ec.generate_private_key(ec.SECP384R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "gatehouse-test")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .sign(key, hashes.SHA384())
    )
    cert_file, key_file = directory / "operator.crt", directory / "operator.key"
    cert_file.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert_file, key_file


def test_it_binds_the_channel_to_an_operators_sha384_certificate(
    pg_cluster: PgCluster, tmp_path_factory: pytest.TempPathFactory
) -> None:
    # tls-server-end-point hashes with the certificate's own signature hash, as libpq does.
    cert_file, key_file = sha384_certificate(tmp_path_factory.mktemp("operator-tls"))
    env = {"GATEHOUSE_TLS_CERT_FILE": str(cert_file), "GATEHOUSE_TLS_KEY_FILE": str(key_file)}
    with (
        running_node(tmp_path_factory.mktemp("sha384"), pg_cluster, env=env) as node,
        psycopg.connect(node.dsn(), channel_binding="require", connect_timeout=15) as conn,
    ):
        assert conn.execute("SELECT current_user").fetchone() == ("postgres",)


def test_it_checks_the_channel_binding_data(gateway: GatewayProcess) -> None:
    with WireClient(gateway.pg_port) as client:
        client.startup(gateway.agent_name, gateway.connection_name)
        client.authenticate(gateway.token, channel_binding=True)
        assert client.query("SELECT 'bound'") == [["bound"]]
    # The end-point hash of some other certificate: a man in the middle's.
    with WireClient(gateway.pg_port) as client:
        client.startup(gateway.agent_name, gateway.connection_name)
        client.server_certificate = b"not the gateway's certificate"
        with pytest.raises(ServerError) as raised:
            client.authenticate(gateway.token, channel_binding=True)
    assert raised.value.fields == auth_failure(gateway.agent_name)


def test_it_refuses_a_channel_binding_downgrade_inside_tls(gateway: GatewayProcess) -> None:
    # "y": the client could bind but thinks the server cannot; inside TLS that means someone stripped -PLUS.
    first = ScramClient(gateway.token, gs2_header=b"y,,").first()
    fields = after_auth_request(gateway, sasl_initial_response(SCRAM, first))
    assert [msg.kind for msg in fields] == [b"E"]
    assert b"28P01" in fields[0].payload
    assert_serves(gateway)


def test_it_refuses_an_unknown_sasl_mechanism(gateway: GatewayProcess) -> None:
    received = after_auth_request(gateway, sasl_initial_response("SCRAM-SHA-1", b"n,,r="))
    assert [msg.kind for msg in received] == [b"E"]
    assert b"28P01" in received[0].payload
    assert_serves(gateway)


# --- cleartext password mode -------------------------------------------------------------


@pytest.fixture(scope="module")
def password_node(pg_cluster: PgCluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    """A node with GATEHOUSE_PG_CLIENT_AUTH=password that also accepts plaintext clients."""
    env = {"GATEHOUSE_PG_CLIENT_AUTH": "password", "GATEHOUSE_PG_ALLOW_PLAINTEXT": "true"}
    with running_node(tmp_path_factory.mktemp("gateway-password-auth"), pg_cluster, env=env) as node:
        yield node


def test_it_accepts_a_cleartext_token_inside_tls_in_password_mode(password_node: GatewayProcess) -> None:
    with bot_client(password_node) as client:
        greeting = client.greeting
        assert client.query("SELECT current_user") == [["postgres"]]
    assert greeting.auth_requests == [AUTH_CLEARTEXT, AUTH_OK]
    if psycopg.pq.version() >= 160000:
        dsn = password_node.dsn(sslmode="require")
        with psycopg.connect(dsn, require_auth="password", connect_timeout=15) as conn:
            assert conn.execute("SELECT 'cleartext in tls'").fetchone() == ("cleartext in tls",)
    assert_serves(password_node)


def test_it_refuses_a_wrong_cleartext_token(password_node: GatewayProcess) -> None:
    fields = login_error(password_node.pg_port, password_node.agent_name, password_node.connection_name, WRONG_TOKEN)
    assert fields == auth_failure(password_node.agent_name)
    unknown = unique_name("no-such-agent")
    fields = login_error(password_node.pg_port, unknown, password_node.connection_name, WRONG_TOKEN)
    assert fields == auth_failure(unknown)
    assert WRONG_TOKEN not in password_node.log_text()
    assert_serves(password_node)


def test_it_never_asks_for_a_cleartext_token_outside_tls(password_node: GatewayProcess) -> None:
    params = {"user": password_node.agent_name, "database": password_node.connection_name}
    with WireClient(password_node.pg_port) as client:
        client.send(startup_packet(params))
        greeting = client.authenticate(password_node.token)
        assert client.query("SELECT 'plaintext, but scram'") == [["plaintext, but scram"]]
    # No -PLUS either: there is no TLS channel to bind to.
    assert greeting.mechanisms == [SCRAM]
    assert AUTH_CLEARTEXT not in greeting.auth_requests
    if psycopg.pq.version() >= 160000:
        dsn = password_node.dsn(sslmode="disable")
        with pytest.raises(psycopg.OperationalError, match="require_auth|authentication method"):
            psycopg.connect(dsn, require_auth="password", connect_timeout=15)
        with psycopg.connect(dsn, require_auth="scram-sha-256", connect_timeout=15) as conn:
            assert conn.execute("SELECT 1").fetchone() == (1,)
    assert_serves(password_node)
