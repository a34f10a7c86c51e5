"""The gateway's side of the session: every upstream login method and TLS mode, and upstreams that fail.

The shared cluster has one role per pg_hba method (md5, password, trust,
scram-sha-256, and a TLS-only role); each gets a connection here and a real
client checks who it is upstream and whether that leg is encrypted. A
failing upstream gives the client 08001 (could not log in) or 08006 (lost
mid-session) with a clear message, and nobody else notices.
"""

import contextlib
import socket
import struct
import threading
from collections.abc import Iterator

import psycopg
import pytest

from tests.protocols.nodes import (
    ConnectionSpec,
    add_connections,
    assert_serves,
    bot_client,
    read_recording,
    unique_name,
    wait_for_session,
)
from tests.protocols.wire import error_fields, login_error, message, query_message
from tests.support.gateway_process import GatewayProcess, provision_bot
from tests.support.pg_cluster import PgCluster, make_test_certificates, running_cluster
from tests.support.ports import free_port

CONNECT_TIMEOUT = 1  # GATEHOUSE_PG_CONNECT_TIMEOUT of the node that meets an upstream that never answers

# (role, tls mode, verify with the cluster's CA) -> whether the upstream leg is encrypted.
VARIANTS = {
    "md5user-disable": ("md5user", "disable", False),
    "clearuser-disable": ("clearuser", "disable", False),
    "trustuser-disable": ("trustuser", "disable", False),
    "scramuser-disable": ("scramuser", "disable", False),
    "ssluser-require": ("ssluser", "require", True),
    "ssluser-verify-full": ("ssluser", "verify-full", True),
    "postgres-require": ("postgres", "require", True),
}
WRONG_PASSWORD_ROLES = ("md5user", "clearuser", "scramuser")


@pytest.fixture(scope="module")
def upstreams(gateway: GatewayProcess, pg_cluster: PgCluster) -> dict[str, str]:
    """Connection names on the shared gateway, granted to its agent, keyed by case."""
    names = {case: unique_name(f"up-{case}") for case in VARIANTS}
    specs = [
        ConnectionSpec(
            names[case], role, pg_cluster.passwords[role], tls, pg_cluster.ca_pem if tls == "verify-full" else ""
        )
        for case, (role, tls, _encrypted) in VARIANTS.items()
    ]
    other_ca = make_test_certificates()[0].decode()
    failing = {
        "wrong-ca": ConnectionSpec("", "postgres", pg_cluster.superuser_password, "verify-full", other_ca),
        "no-ca": ConnectionSpec("", "postgres", pg_cluster.superuser_password, "verify-full"),
        "closed-port": ConnectionSpec("", "postgres", pg_cluster.superuser_password, port=free_port()),
        "hba-reject": ConnectionSpec("", "ssluser", pg_cluster.passwords["ssluser"], "disable"),
    }
    for role in WRONG_PASSWORD_ROLES:
        failing[f"wrong-password-{role}"] = ConnectionSpec("", role, f"canary-wrong-{role}-{unique_name('pw')}")
    for case, spec in failing.items():
        names[case] = unique_name(f"up-{case}")
        specs.append(ConnectionSpec(names[case], spec.user, spec.password, spec.tls, spec.ca_pem, spec.port))
    add_connections(gateway, pg_cluster, specs, grant_to=gateway.agent_name)
    names["wrong-passwords"] = ",".join(spec.password for spec in specs if spec.password.startswith("canary-wrong"))
    return names


def whoami(gateway: GatewayProcess, connection: str) -> tuple[str, bool]:
    """(current_user, whether the gateway's leg to the server is TLS) as seen through the gateway."""
    with psycopg.connect(gateway.dsn(dbname=connection), connect_timeout=15) as conn:
        return conn.execute("SELECT current_user, ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()").fetchone()


@pytest.mark.parametrize("case", list(VARIANTS))
def test_it_logs_in_upstream_with_each_method_and_tls_mode(
    gateway: GatewayProcess, upstreams: dict[str, str], case: str
) -> None:
    role, _tls, encrypted = VARIANTS[case]
    assert whoami(gateway, upstreams[case]) == (role, encrypted)
    # A second session, likely on the pooled backend after its reset, is the same.
    assert whoami(gateway, upstreams[case]) == (role, encrypted)


def test_it_verifies_the_upstream_certificate_with_the_stored_ca(gateway: GatewayProcess) -> None:
    # pg-main is postgres with verify-full against the cluster's own CA.
    assert whoami(gateway, gateway.connection_name) == ("postgres", True)


def upstream_error(gateway: GatewayProcess, connection: str) -> dict[str, str]:
    fields = login_error(gateway.pg_port, gateway.agent_name, connection, gateway.token)
    assert fields["S"] == "FATAL", fields
    return fields


@pytest.mark.parametrize("case", ["wrong-ca", "no-ca"])
def test_it_refuses_an_upstream_whose_certificate_does_not_verify(
    gateway: GatewayProcess, upstreams: dict[str, str], case: str
) -> None:
    fields = upstream_error(gateway, upstreams[case])
    assert fields["C"] == "08001"
    assert fields["M"].startswith(f"TLS to upstream {upstreams[case]!r} failed")
    assert "certificate verify failed" in fields["M"]
    with pytest.raises(psycopg.OperationalError, match="certificate verify failed"):
        psycopg.connect(gateway.dsn(dbname=upstreams[case]), connect_timeout=15)
    assert_serves(gateway)


def test_it_reports_an_upstream_that_is_down(gateway: GatewayProcess, upstreams: dict[str, str]) -> None:
    fields = upstream_error(gateway, upstreams["closed-port"])
    assert fields["C"] == "08001"
    assert fields["M"] == f"could not connect to upstream {upstreams['closed-port']!r}: Connection refused"
    assert_serves(gateway)


@pytest.mark.parametrize("role", WRONG_PASSWORD_ROLES)
def test_it_reports_an_upstream_that_refuses_the_stored_password(
    gateway: GatewayProcess, upstreams: dict[str, str], role: str
) -> None:
    name = upstreams[f"wrong-password-{role}"]
    fields = upstream_error(gateway, name)
    assert fields["C"] == "08001"
    # The client learns that the upstream said no, not its roles or hosts; the log has its words.
    assert fields["M"] == f"upstream {name!r} refused the login (28P01)"
    log = gateway.log_text()
    assert f'password authentication failed for user "{role}"' in log
    for password in upstreams["wrong-passwords"].split(","):
        assert password not in fields["M"] and password not in log
    assert_serves(gateway)


def test_it_reports_an_upstream_that_rejects_the_connection_outright(
    gateway: GatewayProcess, upstreams: dict[str, str]
) -> None:
    # ssluser may only come in over TLS, and this connection has TLS disabled.
    fields = upstream_error(gateway, upstreams["hba-reject"])
    assert fields["C"] == "08001"
    assert fields["M"] == f"upstream {upstreams['hba-reject']!r} refused the login (28000)"
    assert "pg_hba.conf rejects" in gateway.log_text()
    assert_serves(gateway)


@pytest.fixture
def plaintext_only_port() -> Iterator[int]:
    """A stand-in for a server without TLS: it answers the gateway's SSLRequest with 'N'.

    (The test cluster always has TLS, so a real one is not available here.)
    """
    upstream = ScriptedUpstream(at_login=b"N")
    yield upstream.port
    upstream.close()


@pytest.mark.parametrize("tls", ["require", "verify-full"])
def test_it_refuses_an_upstream_without_tls_when_tls_is_required(
    gateway: GatewayProcess, pg_cluster: PgCluster, plaintext_only_port: int, tls: str
) -> None:
    name = unique_name(f"up-no-tls-{tls}")
    spec = ConnectionSpec(name, "postgres", "unused", tls, pg_cluster.ca_pem, port=plaintext_only_port)
    add_connections(gateway, pg_cluster, [spec], grant_to=gateway.agent_name)
    fields = upstream_error(gateway, name)
    assert (fields["C"], fields["M"]) == ("08001", f"upstream {name!r} does not accept TLS (tls mode {tls})")
    assert_serves(gateway)


# --- an upstream that misbehaves ---------------------------------------------------------


LOGGED_IN = (
    message(b"R", struct.pack("!i", 0))
    + message(b"S", b"server_version\x0015.0\x00")
    + message(b"K", struct.pack("!iI", 4242, 99))
    + message(b"Z", b"I")
)
INVALID_LENGTH = b"T" + struct.pack("!I", 0xFFFFFFFF)


class ScriptedUpstream:
    """A stand-in for a PostgreSQL server that says scripted things: what no real server would.

    It reads the gateway's first packet (its StartupMessage, or its SSLRequest
    if the connection's tls mode asks for one) and answers `at_login`; if
    `at_query` is set, it then reads one message and answers that. An empty
    answer means: close the connection.
    """

    def __init__(self, at_login: bytes, at_query: bytes = b"") -> None:
        self.at_login, self.at_query = at_login, at_query
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.accepted: list[socket.socket] = []
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    def serve(self) -> None:
        with contextlib.suppress(OSError):  # the listener is closed when the test ends
            while True:
                conn, _ = self.listener.accept()
                self.accepted.append(conn)
                self.converse(conn)

    def converse(self, conn: socket.socket) -> None:
        with contextlib.suppress(OSError):
            conn.recv(65536)  # the first packet (small enough for one read)
            if not self.at_login:
                conn.close()
                return
            conn.sendall(self.at_login)
            if self.at_query:
                conn.recv(65536)
                conn.sendall(self.at_query)

    def close(self) -> None:
        self.listener.shutdown(socket.SHUT_RDWR)
        self.listener.close()
        self.thread.join(5)
        for conn in self.accepted:
            conn.close()


LOGIN_FAILURES = {
    "closes-at-login": (b"", "upstream closed the connection during login"),
    "garbage-at-login": (INVALID_LENGTH, "upstream sent an invalid message length"),
    "gssapi-auth": (message(b"R", struct.pack("!i", 7)), "asks for an unsupported auth method (7)"),
    "unexpected-message": (message(b"D", b"\x00\x00"), "unexpected upstream message b'D' during login"),
}


@pytest.mark.parametrize("case", list(LOGIN_FAILURES))
def test_it_refuses_an_upstream_that_botches_the_login(
    gateway: GatewayProcess, pg_cluster: PgCluster, case: str
) -> None:
    at_login, error = LOGIN_FAILURES[case]
    upstream = ScriptedUpstream(at_login)
    try:
        name = unique_name(f"up-{case}")
        spec = ConnectionSpec(name, "postgres", "unused", "disable", port=upstream.port)
        add_connections(gateway, pg_cluster, [spec], grant_to=gateway.agent_name)
        fields = upstream_error(gateway, name)
    finally:
        upstream.close()
    assert fields["C"] == "08001"
    assert error in fields["M"]
    assert_serves(gateway)


def test_it_ends_a_session_whose_upstream_sends_an_invalid_message(
    gateway: GatewayProcess, pg_cluster: PgCluster
) -> None:
    upstream = ScriptedUpstream(LOGGED_IN, at_query=INVALID_LENGTH)
    try:
        name = unique_name("up-garbage-mid-session")
        spec = ConnectionSpec(name, "postgres", "unused", "disable", port=upstream.port)
        add_connections(gateway, pg_cluster, [spec], grant_to=gateway.agent_name)
        with bot_client(gateway, name) as client:
            greeting = client.greeting
            assert greeting.parameters == {"server_version": "15.0"}
            # The gateway's own cancel key, never the upstream's.
            assert greeting.backend_key is not None and greeting.backend_key != (4242, 99)
            client.send(query_message("SELECT 1"))
            received = client.messages_until_close()
    finally:
        upstream.close()
    assert [msg.kind for msg in received] == [b"E"]
    fields = error_fields(received[0].payload)
    assert (fields["C"], fields["M"]) == ("08P01", f"upstream sent an invalid message length {0xFFFFFFFF}")
    assert_serves(gateway)


# --- an upstream that dies mid-session --------------------------------------------------


@pytest.fixture(scope="module")
def dying(gateway: GatewayProcess) -> Iterator[tuple[PgCluster, str]]:
    """A cluster of its own (the shared one must live on) and a connection to it."""
    with running_cluster(max_connections=20) as cluster:
        name = unique_name("up-dying")
        spec = ConnectionSpec(name, "postgres", cluster.superuser_password, "verify-full", cluster.ca_pem)
        add_connections(gateway, cluster, [spec], grant_to=gateway.agent_name)
        yield cluster, name


def test_it_ends_only_the_sessions_of_an_upstream_that_dies(
    gateway: GatewayProcess, dying: tuple[PgCluster, str]
) -> None:
    cluster, name = dying
    application_name = unique_name("upstream-dies")
    victim = bot_client(gateway, name, application_name=application_name)
    assert victim.query("SELECT 'alive'") == [["alive"]]
    with (
        psycopg.connect(gateway.dsn(dbname=name), autocommit=True, connect_timeout=15) as psycopg_victim,
        psycopg.connect(gateway.dsn(), autocommit=True, connect_timeout=15) as bystander,
    ):
        cluster.stop()
        with victim:
            received = victim.messages_until_close()
        # Whatever the dying server said is relayed; the gateway's own word comes last.
        last = error_fields(received[-1].payload)
        assert (last["S"], last["C"], last["M"]) == ("FATAL", "08006", "the upstream server closed the connection")
        with pytest.raises(psycopg.OperationalError):
            psycopg_victim.execute("SELECT 1")
        assert bystander.execute("SELECT 'unaffected'").fetchone() == ("unaffected",)
    # New sessions to the dead upstream are refused at once.
    fields = upstream_error(gateway, name)
    assert fields["C"] == "08001" and "could not connect to upstream" in fields["M"]
    row = wait_for_session(gateway, application_name, sealed=True)
    assert row["status"] == "ended"
    events = [event[1:3] for event in read_recording(gateway, row).events]
    assert ["closed", {"reason": "the upstream server closed the connection"}] in events
    assert_serves(gateway)


# --- an upstream that never answers ---------------------------------------------------


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port that accepts TCP connections (the kernel does) but never says a word."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        yield listener.getsockname()[1]


def test_it_gives_up_on_an_upstream_that_never_answers(
    gateway_factory, pg_cluster: PgCluster, silent_port: int
) -> None:
    node: GatewayProcess = gateway_factory(env={"GATEHOUSE_PG_CONNECT_TIMEOUT": str(CONNECT_TIMEOUT)})
    provision_bot(node, pg_cluster)
    names = {tls: unique_name(f"up-silent-{tls}") for tls in ("disable", "require")}
    specs = [ConnectionSpec(name, "postgres", "unused", tls, port=silent_port) for tls, name in names.items()]
    add_connections(node, pg_cluster, specs, grant_to=node.agent_name)
    node.start()
    for name in names.values():
        fields = login_error(node.pg_port, node.agent_name, name, node.token)
        assert (fields["C"], fields["M"]) == ("08001", f"upstream {name!r} did not answer within {CONNECT_TIMEOUT}s")
    # The client would give up after 10 s by itself; the gateway's own timeout answers first.
    with pytest.raises(psycopg.OperationalError, match=f"did not answer within {CONNECT_TIMEOUT}s"):
        psycopg.connect(node.dsn(dbname=names["require"]), connect_timeout=10)
    assert_serves(node)
