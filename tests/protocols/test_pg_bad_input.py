"""Bad input at the PostgreSQL listener: a clear error, and the gateway keeps serving everyone else.

Each case talks to the shared gateway over a raw socket (or kills a real
psql), reads exactly what comes back, and then checks that the process is
alive and a normal psycopg client still runs a query through it.
"""

import contextlib
import random
import signal
import socket
import struct
import subprocess
from collections.abc import Iterator

import psycopg
import pytest
from psycopg import sql

from tests.protocols.nodes import (
    after_auth_request,
    assert_serves,
    assert_verifies,
    bot_client,
    gateway_psql_env,
    poll,
    psql_command,
    public_id,
    read_recording,
    unique_name,
    wait_for_session,
    wait_for_upstream_query,
)
from tests.protocols.wire import (
    Message,
    ServerError,
    WireClient,
    cancel_request,
    copy_data,
    error_fields,
    gssenc_request,
    message,
    negotiate_protocol_version,
    packet,
    protocol_code,
    query_message,
    ssl_request,
    startup_packet,
)
from tests.support.gateway_process import GatewayProcess, provision_bot
from tests.support.pg_cluster import PgCluster

PSQL_TIMEOUT = 30.0


def only_error(received: list[Message]) -> dict[str, str]:
    """The fields of the one ErrorResponse that is all the gateway sent before closing."""
    assert [msg.kind for msg in received] == [b"E"], f"expected one ErrorResponse, got {received!r}"
    return error_fields(received[0].payload)


def assert_fatal(fields: dict[str, str], sqlstate: str, text: str) -> None:
    assert fields["S"] == "FATAL", fields
    assert fields["C"] == sqlstate, fields
    assert text in fields["M"], fields


# --- malformed and truncated startup packets -------------------------------------------


@pytest.mark.parametrize("length", [0, 4, 7, 10_001, 2**31 - 1, -1], ids=lambda n: f"length{n}")
def test_it_refuses_a_startup_packet_with_an_impossible_length(gateway: GatewayProcess, length: int) -> None:
    with WireClient(gateway.pg_port) as client:
        client.send(struct.pack("!i", length) + struct.pack("!i", protocol_code(3, 0)))
        fields = only_error(client.messages_until_close())
    assert_fatal(fields, "08P01", f"invalid length of startup packet ({length})")
    assert_serves(gateway)


STARTUP = struct.pack("!i", protocol_code(3, 0))
MALFORMED_BODIES = {
    "missing-terminator": (STARTUP + b"user\0ci-bot\0", "startup packet is missing its terminator"),
    "unterminated-value": (STARTUP + b"user\0ci-bot", "unterminated string"),
    "unterminated-name": (STARTUP + b"user", "unterminated string"),
    "trailing-bytes": (STARTUP + b"user\0ci-bot\0\0junk", "trailing bytes after startup parameters"),
    "short-cancel-request": (struct.pack("!ii", 80877102, 7), "malformed cancel request"),
}


@pytest.mark.parametrize("case", list(MALFORMED_BODIES))
def test_it_refuses_a_malformed_startup_packet(gateway: GatewayProcess, case: str) -> None:
    body, error = MALFORMED_BODIES[case]
    with WireClient(gateway.pg_port) as client:
        client.send(struct.pack("!i", len(body) + 4) + body)
        fields = only_error(client.messages_until_close())
    assert_fatal(fields, "08P01", error)
    assert_serves(gateway)


@pytest.mark.parametrize("sent", [b"\0\0", startup_packet({"user": "ci-bot", "database": "pg-main"})[:20]])
def test_it_drops_a_truncated_startup_packet_when_the_client_leaves(gateway: GatewayProcess, sent: bytes) -> None:
    with WireClient(gateway.pg_port) as client:
        client.send(sent)
        client.sock.shutdown(socket.SHUT_WR)
        # Nothing to answer: the gateway just closes its side too.
        assert client.messages_until_close() == []
    assert_serves(gateway)


def test_it_drops_a_client_that_leaves_right_after_its_startup_packet(gateway: GatewayProcess) -> None:
    # The gateway is still looking the agent up when the client is gone.
    log_before = len(gateway.log_text())
    for _ in range(5):
        with WireClient(gateway.pg_port) as client:
            client.startup(gateway.agent_name, gateway.connection_name)
            client.abort()
    assert_serves(gateway)
    assert "Traceback" not in gateway.log_text()[log_before:]


# --- protocol versions -------------------------------------------------------------


@pytest.mark.parametrize(("major", "minor"), [(4, 0), (2, 0), (1234, 5681)])
def test_it_refuses_an_unknown_protocol_version(gateway: GatewayProcess, major: int, minor: int) -> None:
    with WireClient(gateway.pg_port) as client:
        client.send(startup_packet({"user": "ci-bot"}, major, minor))
        fields = only_error(client.messages_until_close())
    assert_fatal(fields, "08P01", f"unsupported frontend protocol {major}.{minor}: server supports 3.0")
    assert_serves(gateway)


def test_it_negotiates_a_newer_minor_version_down_to_3_0(gateway: GatewayProcess) -> None:
    with WireClient(gateway.pg_port) as client:
        client.start_tls()
        client.send(startup_packet({"user": gateway.agent_name, "database": gateway.connection_name}, 3, 1))
        negotiation = client.read_message()
        assert negotiation.kind == b"v"
        assert negotiate_protocol_version(negotiation.payload) == (protocol_code(3, 0), [])
        client.authenticate(gateway.token)
        assert client.query("SELECT 40 + 2") == [["42"]]
    assert_serves(gateway)


def test_it_lists_protocol_options_it_does_not_support(gateway: GatewayProcess) -> None:
    with WireClient(gateway.pg_port) as client:
        client.startup(gateway.agent_name, gateway.connection_name, **{"_pq_.foo": "on", "_pq_.bar": "1"})
        negotiation = client.read_message()
        assert negotiation.kind == b"v"
        assert negotiate_protocol_version(negotiation.payload) == (protocol_code(3, 0), ["_pq_.foo", "_pq_.bar"])
        client.authenticate(gateway.token)
        assert client.query("SELECT current_database()") == [["app"]]
    assert_serves(gateway)


def test_it_serves_libpq_asking_for_protocol_3_2(gateway: GatewayProcess) -> None:
    if psycopg.pq.version() < 180000:
        pytest.skip("max_protocol_version needs libpq 18 or newer")
    with psycopg.connect(gateway.dsn(), max_protocol_version="3.2", connect_timeout=15) as conn:
        assert conn.execute("SELECT 'negotiated'").fetchone() == ("negotiated",)
    assert_serves(gateway)


# --- oversized messages and garbage ------------------------------------------------------


@pytest.mark.parametrize("length", [1 << 30, 2**31, 2**32 - 1, 3], ids=["1GiB", "2GiB", "4GiB", "below-4"])
def test_it_ends_a_session_that_declares_an_impossible_message_length(gateway: GatewayProcess, length: int) -> None:
    application_name = unique_name("bad-length")
    with bot_client(gateway, application_name=application_name) as client:
        client.send(b"Q" + struct.pack("!I", length) + b"SELECT 1")
        fields = only_error(client.messages_until_close())
    assert_fatal(fields, "08P01", f"invalid message length {length}")
    # The session's recording is sealed, and says why it ended.
    row = wait_for_session(gateway, application_name, sealed=True)
    assert row["status"] == "ended"
    events = read_recording(gateway, row).events
    assert ["closed", {"reason": f"invalid message length {length}"}] in [event[1:3] for event in events]
    assert_serves(gateway)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_it_refuses_random_garbage_instead_of_a_startup_packet(gateway: GatewayProcess, seed: int) -> None:
    garbage = random.Random(seed).randbytes(512)
    with WireClient(gateway.pg_port) as client:
        client.send(garbage)
        fields = only_error(client.messages_until_close())
    assert_fatal(fields, "08P01", "invalid length of startup packet")
    assert_serves(gateway)


@pytest.mark.parametrize("seed", [4, 5])
def test_it_refuses_random_garbage_inside_tls(gateway: GatewayProcess, seed: int) -> None:
    with WireClient(gateway.pg_port) as client:
        client.start_tls()
        client.send(random.Random(seed).randbytes(512))
        fields = only_error(client.messages_until_close())
    assert_fatal(fields, "08P01", "invalid length of startup packet")
    assert_serves(gateway)


def test_it_ends_a_session_that_sends_garbage_after_login(gateway: GatewayProcess) -> None:
    garbage = random.Random(6).randbytes(4096)
    with bot_client(gateway) as client:
        client.send(garbage)
        received = client.messages_until_close()
    assert received, "the gateway closed without saying why"
    assert_fatal(error_fields(received[-1].payload), "08P01", "invalid message length")
    assert_serves(gateway)


def test_it_drops_garbage_instead_of_a_tls_handshake(gateway: GatewayProcess) -> None:
    with WireClient(gateway.pg_port) as client:
        client.send(ssl_request())
        assert client.recv_exact(1) == b"S"
        client.send(random.Random(7).randbytes(512))
        # Not TLS: nothing sensible can be said in the clear any more, so the gateway just closes.
        assert client.messages_until_close() == []
    assert_serves(gateway)


# --- TLS and the special requests -------------------------------------------------------


def test_it_refuses_a_plaintext_startup_when_tls_is_required(gateway: GatewayProcess) -> None:
    with WireClient(gateway.pg_port) as client:
        client.send(startup_packet({"user": gateway.agent_name, "database": gateway.connection_name}))
        fields = only_error(client.messages_until_close())
    assert_fatal(fields, "28000", "Gatehouse requires TLS")
    with pytest.raises(psycopg.OperationalError, match="requires TLS"):
        psycopg.connect(gateway.dsn(sslmode="disable"), connect_timeout=15)
    assert_serves(gateway)


STARTUP_REFUSALS = {
    "no-user": ({"database": "pg-main"}, "no user name (agent) specified in startup packet"),
    "empty-user": ({"user": "", "database": "pg-main"}, "no user name (agent) specified in startup packet"),
    "physical-replication": ({"user": "ci-bot", "replication": "true"}, "replication connections are not supported"),
    "logical-replication": (
        {"user": "ci-bot", "database": "pg-main", "replication": "database"},
        "replication connections are not supported",
    ),
}


@pytest.mark.parametrize("case", list(STARTUP_REFUSALS))
def test_it_refuses_a_startup_it_cannot_serve(gateway: GatewayProcess, case: str) -> None:
    params, error = STARTUP_REFUSALS[case]
    with WireClient(gateway.pg_port) as client:
        client.start_tls()
        client.send(startup_packet(params))
        fields = only_error(client.messages_until_close())
    assert_fatal(fields, "28000", error)
    assert_serves(gateway)


def test_it_answers_a_gssenc_request_with_n_and_goes_on(gateway: GatewayProcess) -> None:
    with WireClient(gateway.pg_port) as client:
        client.send(gssenc_request())
        assert client.recv_exact(1) == b"N"
        client.login(gateway.agent_name, gateway.connection_name, gateway.token)
        assert client.query("SELECT 'after gssenc'") == [["after gssenc"]]
    assert_serves(gateway)


def test_it_refuses_data_sent_between_an_ssl_request_and_the_handshake(gateway: GatewayProcess) -> None:
    # CVE-2021-23214: bytes buffered before the handshake must not count as if they came over TLS.
    startup = startup_packet({"user": gateway.agent_name, "database": gateway.connection_name})
    with WireClient(gateway.pg_port) as client:
        client.send(ssl_request() + startup)
        fields = only_error(client.messages_until_close())
    assert_fatal(fields, "08P01", "received unencrypted data after SSL request")
    assert_serves(gateway)


def test_it_answers_a_second_ssl_request_inside_tls_with_n(gateway: GatewayProcess) -> None:
    with WireClient(gateway.pg_port) as client:
        client.start_tls()
        client.send(ssl_request())
        assert client.recv_exact(1) == b"N"
        client.send(startup_packet({"user": gateway.agent_name, "database": gateway.connection_name}))
        client.authenticate(gateway.token)
        assert client.query("SELECT 'still one tls layer'") == [["still one tls layer"]]
    assert_serves(gateway)


def test_it_ignores_a_cancel_request_with_an_unknown_key(gateway: GatewayProcess) -> None:
    with psycopg.connect(gateway.dsn(), autocommit=True, connect_timeout=15) as conn:
        with WireClient(gateway.pg_port) as client:
            client.send(cancel_request(12345, 67890))
            assert client.messages_until_close() == []
        assert conn.execute("SELECT 'not cancelled'").fetchone() == ("not cancelled",)
    assert_serves(gateway)


def test_it_refuses_a_message_other_than_a_password_during_authentication(gateway: GatewayProcess) -> None:
    fields = only_error(after_auth_request(gateway, query_message("SELECT 1")))
    assert_fatal(fields, "08P01", "expected a password or SASL response")
    assert_serves(gateway)


def test_it_refuses_an_oversized_password_message(gateway: GatewayProcess) -> None:
    fields = only_error(after_auth_request(gateway, message(b"p", b"x" * 20_000)))
    assert_fatal(fields, "08P01", "expected a password or SASL response")
    assert_serves(gateway)


# --- clients that disconnect mid-way ------------------------------------------------------


def spawn_psql(gateway: GatewayProcess, application_name: str, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        psql_command(gateway.dsn(password=""), "-v", "ON_ERROR_STOP=1", *args),
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env=gateway_psql_env(gateway, application_name),
    )


def running_backend(direct: psycopg.Connection, application_name: str, prefix: str) -> int:
    """The upstream backend pid once it runs a query starting with `prefix` for this application_name."""
    pid = wait_for_upstream_query(direct, application_name, prefix, timeout=PSQL_TIMEOUT)
    assert pid is not None, f"the upstream never ran {prefix!r} for {application_name}"
    return pid


def wait_until_backend_gone(direct: psycopg.Connection, pid: int) -> None:
    def gone() -> bool:
        return direct.execute("SELECT 1 FROM pg_stat_activity WHERE pid = %s", (pid,)).fetchone() is None

    assert poll(gone, PSQL_TIMEOUT), f"upstream backend {pid} is still there"


def kill(process: subprocess.Popen[str]) -> None:
    process.send_signal(signal.SIGKILL)
    process.communicate(timeout=PSQL_TIMEOUT)


def assert_sealed_after_client_left(gateway: GatewayProcess, application_name: str, statement: str) -> None:
    """The session ended, says the client disconnected, recorded its last statement, and verifies."""
    row = wait_for_session(gateway, application_name, sealed=True)
    assert row["status"] == "ended"
    events = read_recording(gateway, row).events
    kinds = [event[1] for event in events]
    assert ["closed", {"reason": "client disconnected"}] in [event[1:3] for event in events]
    assert kinds[-1] == "end" and events[-1][2]["status"] == "ended"
    assert any(event[1] == "sql" and statement in event[2]["text"] for event in events)
    session_id = public_id(row)
    assert f"OK {session_id}" in assert_verifies(gateway, session_id).stdout


def test_it_survives_a_client_killed_mid_query(gateway: GatewayProcess, direct: psycopg.Connection) -> None:
    application_name = unique_name("killed-mid-query")
    with psycopg.connect(gateway.dsn(), autocommit=True, connect_timeout=15) as bystander:
        psql = spawn_psql(gateway, application_name, "-c", "SELECT pg_sleep(60)")
        try:
            backend = running_backend(direct, application_name, "SELECT pg_sleep")
        finally:
            kill(psql)
        assert bystander.execute("SELECT 'still here'").fetchone() == ("still here",)
    assert_sealed_after_client_left(gateway, application_name, "pg_sleep(60)")
    # The gateway cancels the abandoned query, so the backend does not sleep on for a minute.
    wait_until_backend_gone(direct, backend)
    assert_serves(gateway)


@pytest.fixture
def copy_table(direct: psycopg.Connection) -> Iterator[str]:
    name = unique_name("copy_target").replace("-", "_")
    direct.execute(sql.SQL("CREATE TABLE {} (n integer)").format(sql.Identifier(name)))
    yield name
    direct.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(sql.Identifier(name)))


def test_it_survives_a_client_killed_mid_copy(
    gateway: GatewayProcess, direct: psycopg.Connection, copy_table: str
) -> None:
    application_name = unique_name("killed-mid-copy")
    with psycopg.connect(gateway.dsn(), autocommit=True, connect_timeout=15) as bystander:
        psql = spawn_psql(gateway, application_name, "-c", f"COPY {copy_table} FROM STDIN")
        try:
            backend = running_backend(direct, application_name, "COPY")
            psql.stdin.write("".join(f"{n}\n" for n in range(1000)))
            psql.stdin.flush()
        finally:
            kill(psql)
        assert bystander.execute("SELECT 'still here'").fetchone() == ("still here",)
    assert_sealed_after_client_left(gateway, application_name, f"COPY {copy_table} FROM STDIN")
    # The unfinished COPY was rolled back upstream, not committed half-way.
    wait_until_backend_gone(direct, backend)
    count = direct.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(copy_table))).fetchone()
    assert count == (0,)
    assert_serves(gateway)


def test_it_survives_a_client_that_resets_mid_copy(gateway: GatewayProcess, copy_table: str) -> None:
    application_name = unique_name("reset-mid-copy")
    client = bot_client(gateway, application_name=application_name)
    with contextlib.closing(client):
        client.send(query_message(f"COPY {copy_table} FROM STDIN"))
        assert client.read_until(b"G")[-1].kind == b"G"  # CopyInResponse
        client.send(copy_data(b"1\n2\n3\n"))
        client.abort()
    assert_sealed_after_client_left(gateway, application_name, f"COPY {copy_table} FROM STDIN")
    assert_serves(gateway)


def test_it_reports_server_errors_without_ending_the_session(gateway: GatewayProcess) -> None:
    # A control for the cases above: an ordinary SQL error is not bad input and keeps the session.
    with bot_client(gateway) as client:
        with pytest.raises(ServerError) as raised:
            client.query("SELECT 1/0")
        assert raised.value.sqlstate == "22012"
        assert client.query("SELECT 'after the error'") == [["after the error"]]
    assert_serves(gateway)


def test_it_answers_a_packet_with_only_a_code(gateway: GatewayProcess) -> None:
    # A StartupMessage with no parameters at all lacks even its terminator.
    with WireClient(gateway.pg_port) as client:
        client.send(packet(protocol_code(3, 0)))
        fields = only_error(client.messages_until_close())
    assert_fatal(fields, "08P01", "startup packet is missing its terminator")
    assert_serves(gateway)


# --- a client that never finishes logging in ------------------------------------------------


@pytest.mark.parametrize(
    "sent",
    [
        b"",  # connects and says nothing
        startup_packet({"user": "ci-bot", "database": "pg-main"})[:20],  # half a startup packet
    ],
)
def test_it_times_out_a_client_that_never_logs_in(gateway_factory, pg_cluster: PgCluster, sent: bytes) -> None:
    node: GatewayProcess = gateway_factory(env={"GATEHOUSE_PG_LOGIN_TIMEOUT": "1"})
    provision_bot(node, pg_cluster)
    node.start()
    with WireClient(node.pg_port) as client:
        client.send(sent)
        fields = only_error(client.messages_until_close())
    assert_fatal(fields, "57014", "canceling authentication due to timeout")
    assert_serves(node)
