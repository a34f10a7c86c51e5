"""Raw-socket PostgreSQL helpers for the bad-input, auth, upstream and crash tests.

These tests send what no real client would (bad lengths, unknown protocol
versions, garbage, data before a TLS handshake), so they build startup
packets and messages by hand, read whatever the gateway answers, and parse
its ErrorResponses. The SCRAM client here is written from RFC 5802/7677 and
shares no code with the gateway's, so a bug there cannot hide behind a
matching one here.

    with WireClient(gateway.pg_port) as client:
        client.start_tls()
        client.send(startup_packet({"user": "ci-bot", "database": "pg-main"}))
        client.authenticate(token)
        rows = client.query("SELECT 1")

The end of the file holds what the test modules share about gateway nodes:
a check that a node still serves a normal client, provisioning of extra
connections and agents, and reading a node's Session rows and recordings.
"""

import base64
import hashlib
import hmac
import json
import secrets
import socket
import sqlite3
import ssl
import struct
import time
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
from psycopg import sql

from tests.support.gateway_process import UPSTREAM_PASSWORD_VAR, GatewayProcess
from tests.support.pg_cluster import SEED_ROWS, SEED_TABLE, PgCluster

HOST = "127.0.0.1"
READ_TIMEOUT = 15.0
SSL_REQUEST_CODE = 80877103
GSSENC_REQUEST_CODE = 80877104
CANCEL_REQUEST_CODE = 80877102
SCRAM = "SCRAM-SHA-256"
SCRAM_PLUS = "SCRAM-SHA-256-PLUS"
# Authentication request codes (message 'R').
AUTH_OK, AUTH_CLEARTEXT, AUTH_MD5, AUTH_SASL, AUTH_SASL_CONTINUE, AUTH_SASL_FINAL = 0, 3, 5, 10, 11, 12

_INT32 = struct.Struct("!i")


# --- building packets and messages ---------------------------------------------


def cstring(text: str) -> bytes:
    return text.encode() + b"\0"


def packet(code: int, body: bytes = b"") -> bytes:
    """A length-prefixed packet without a type byte (startup, SSLRequest, CancelRequest)."""
    return _INT32.pack(len(body) + 8) + _INT32.pack(code) + body


def protocol_code(major: int, minor: int) -> int:
    return (major << 16) | minor


def startup_packet(params: dict[str, str], major: int = 3, minor: int = 0) -> bytes:
    """A StartupMessage for protocol major.minor."""
    body = b"".join(cstring(name) + cstring(value) for name, value in params.items()) + b"\0"
    return packet(protocol_code(major, minor), body)


def ssl_request() -> bytes:
    return packet(SSL_REQUEST_CODE)


def gssenc_request() -> bytes:
    return packet(GSSENC_REQUEST_CODE)


def cancel_request(pid: int, secret: int) -> bytes:
    return packet(CANCEL_REQUEST_CODE, struct.pack("!iI", pid, secret))


def message(kind: bytes, payload: bytes = b"") -> bytes:
    """A typed frontend message: kind, int32 length (including itself), payload."""
    return kind + _INT32.pack(len(payload) + 4) + payload


def query_message(text: str) -> bytes:
    return message(b"Q", cstring(text))


def copy_data(data: bytes) -> bytes:
    return message(b"d", data)


TERMINATE = message(b"X")


# --- parsing what comes back ---------------------------------------------------


@dataclass(frozen=True)
class Message:
    """One backend message: its type byte and payload."""

    kind: bytes
    payload: bytes


def error_fields(payload: bytes) -> dict[str, str]:
    """ErrorResponse/NoticeResponse fields keyed by their one-letter code (S, V, C, M, D, ...)."""
    fields: dict[str, str] = {}
    for part in payload.split(b"\0"):
        if part:
            fields[chr(part[0])] = part[1:].decode("utf-8", "replace")
    return fields


def negotiate_protocol_version(payload: bytes) -> tuple[int, list[str]]:
    """(newest version code the server supports, e.g. 3 << 16, and the options it does not) of a 'v' message."""
    newest, count = struct.unpack_from("!ii", payload, 0)
    names = [name.decode() for name in payload[8:].split(b"\0")[:count]]
    return newest, names


def data_row(payload: bytes) -> list[str | None]:
    count = struct.unpack_from("!h", payload, 0)[0]
    pos, values = 2, []
    for _ in range(count):
        length = _INT32.unpack_from(payload, pos)[0]
        pos += 4
        values.append(None if length < 0 else payload[pos : pos + length].decode())
        pos += max(length, 0)
    return values


class ServerError(Exception):
    """The gateway answered with an ErrorResponse; `fields` holds it."""

    def __init__(self, fields: dict[str, str]) -> None:
        super().__init__(f"{fields.get('C', '?')}: {fields.get('M', '')}")
        self.fields = fields

    @property
    def sqlstate(self) -> str:
        return self.fields.get("C", "")


# --- SCRAM-SHA-256, client side --------------------------------------------------


def _hmac(key: bytes, data: bytes) -> bytes:
    return hmac.new(key, data, hashlib.sha256).digest()


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


class ScramClient:
    """One SCRAM-SHA-256(-PLUS) exchange; `binding` is the tls-server-end-point data for -PLUS."""

    def __init__(self, password: str, gs2_header: bytes = b"n,,", binding: bytes = b"") -> None:
        self.password = password
        self.gs2_header = gs2_header
        self.binding = binding
        self.first_bare = f"n=,r={_b64(secrets.token_bytes(18))}".encode()
        self.server_signature = b""

    def first(self) -> bytes:
        return self.gs2_header + self.first_bare

    def final(self, server_first: bytes) -> bytes:
        attrs = dict(part.split("=", 1) for part in server_first.decode().split(","))
        salted = hashlib.pbkdf2_hmac("sha256", self.password.encode(), base64.b64decode(attrs["s"]), int(attrs["i"]))
        without_proof = f"c={_b64(self.gs2_header + self.binding)},r={attrs['r']}".encode()
        auth_message = self.first_bare + b"," + server_first + b"," + without_proof
        client_key = _hmac(salted, b"Client Key")
        signature = _hmac(hashlib.sha256(client_key).digest(), auth_message)
        proof = bytes(a ^ b for a, b in zip(client_key, signature, strict=True))
        self.server_signature = _hmac(_hmac(salted, b"Server Key"), auth_message)
        return without_proof + b",p=" + _b64(proof).encode()

    def check(self, server_final: bytes) -> None:
        if server_final != b"v=" + _b64(self.server_signature).encode():
            raise AssertionError(f"the gateway's SCRAM server signature is wrong: {server_final!r}")


# --- the client ----------------------------------------------------------------------


@dataclass
class Greeting:
    """What the gateway sent between authentication and the first ReadyForQuery."""

    mechanisms: list[str] = field(default_factory=list)
    auth_requests: list[int] = field(default_factory=list)
    parameters: dict[str, str] = field(default_factory=dict)
    backend_key: tuple[int, int] | None = None
    others: list[Message] = field(default_factory=list)


class WireClient:
    """A TCP connection to a gateway that sends raw bytes and reads raw messages."""

    def __init__(self, port: int, host: str = HOST, timeout: float = READ_TIMEOUT) -> None:
        self.sock: socket.socket = socket.create_connection((host, port), timeout=timeout)
        self.server_certificate: bytes | None = None

    def __enter__(self) -> "WireClient":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        self.sock.close()

    def abort(self) -> None:
        """Close with a TCP reset, as a crashed client or a dropped network would."""
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.sock.close()

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def recv_exact(self, size: int) -> bytes:
        """Exactly `size` bytes; EOFError if the gateway closes first."""
        chunks, missing = [], size
        while missing:
            try:
                chunk = self.sock.recv(missing)
            except (ConnectionResetError, ssl.SSLEOFError):
                chunk = b""
            if not chunk:
                raise EOFError(f"the gateway closed the connection ({size - missing} of {size} bytes read)")
            chunks.append(chunk)
            missing -= len(chunk)
        return b"".join(chunks)

    def read_message(self) -> Message:
        header = self.recv_exact(5)
        length = _INT32.unpack_from(header, 1)[0]
        return Message(header[:1], self.recv_exact(length - 4))

    def messages_until_close(self) -> list[Message]:
        """Every message the gateway sends until it closes the connection."""
        received = []
        while True:
            try:
                received.append(self.read_message())
            except EOFError:
                return received

    def read_until(self, kind: bytes) -> list[Message]:
        """Messages up to and including the first of this kind; ServerError on an ErrorResponse first."""
        received = []
        while True:
            msg = self.read_message()
            if msg.kind == b"E" and kind != b"E":
                raise ServerError(error_fields(msg.payload))
            received.append(msg)
            if msg.kind == kind:
                return received

    def start_tls(self) -> None:
        """SSLRequest, expect 'S', then the TLS handshake (the gateway's certificate is not checked)."""
        self.send(ssl_request())
        answer = self.recv_exact(1)
        if answer != b"S":
            raise AssertionError(f"the gateway answered {answer!r} to an SSLRequest")
        self.wrap_tls()

    def wrap_tls(self) -> None:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        self.sock = context.wrap_socket(self.sock)
        self.server_certificate = self.sock.getpeercert(binary_form=True)

    def login(self, user: str, database: str, password: str, **params: str) -> Greeting:
        """TLS, StartupMessage, authentication, up to the first ReadyForQuery."""
        self.start_tls()
        self.send(startup_packet({"user": user, "database": database, **params}))
        return self.authenticate(password)

    def authenticate(self, password: str, channel_binding: bool = False) -> Greeting:
        """Answer the gateway's authentication requests until ReadyForQuery; ServerError if refused."""
        greeting, scram = Greeting(), None
        while True:
            msg = self.read_message()
            if msg.kind == b"E":
                raise ServerError(error_fields(msg.payload))
            if msg.kind == b"Z":
                return greeting
            if msg.kind == b"R":
                scram = self._on_auth_request(msg.payload, password, channel_binding, greeting, scram)
            elif msg.kind == b"S":
                name, value = msg.payload.split(b"\0")[:2]
                greeting.parameters[name.decode()] = value.decode()
            elif msg.kind == b"K":
                greeting.backend_key = struct.unpack("!iI", msg.payload[:8])
            else:
                greeting.others.append(msg)

    def _on_auth_request(
        self, payload: bytes, password: str, channel_binding: bool, greeting: Greeting, scram: ScramClient | None
    ) -> ScramClient | None:
        code = _INT32.unpack_from(payload, 0)[0]
        greeting.auth_requests.append(code)
        if code == AUTH_SASL:
            greeting.mechanisms = [name.decode() for name in payload[4:].split(b"\0") if name]
            scram = self.scram_client(password, channel_binding)
            mechanism = SCRAM_PLUS if channel_binding else SCRAM
            first = scram.first()
            self.send(message(b"p", cstring(mechanism) + _INT32.pack(len(first)) + first))
        elif code == AUTH_SASL_CONTINUE:
            self.send(message(b"p", scram.final(payload[4:])))
        elif code == AUTH_SASL_FINAL:
            scram.check(payload[4:])
        elif code == AUTH_CLEARTEXT:
            self.send(message(b"p", cstring(password)))
        elif code != AUTH_OK:
            raise AssertionError(f"unexpected authentication request {code}")
        return scram

    def scram_client(self, password: str, channel_binding: bool) -> ScramClient:
        if not channel_binding:
            return ScramClient(password)
        end_point = hashlib.sha256(self.server_certificate or b"").digest()
        return ScramClient(password, b"p=tls-server-end-point,,", end_point)

    def query(self, text: str) -> list[list[str | None]]:
        """Run a simple query; its rows as text, or ServerError."""
        self.send(query_message(text))
        rows, error = [], None
        while True:
            msg = self.read_message()
            if msg.kind == b"D":
                rows.append(data_row(msg.payload))
            elif msg.kind == b"E":
                error = error_fields(msg.payload)
            elif msg.kind == b"Z":
                if error is not None:
                    raise ServerError(error)
                return rows


def login_error(port: int, user: str, database: str, password: str, **params: str) -> dict[str, str]:
    """Log in expecting a refusal: the ErrorResponse's fields (the gateway must also close the connection)."""
    with WireClient(port) as client:
        try:
            client.login(user, database, password, **params)
        except ServerError as refused:
            if client.messages_until_close():
                raise AssertionError("the gateway sent more after its FATAL error") from None
            return refused.fields
    raise AssertionError(f"{user} logged in to {database} with password {password!r}")


# --- gateway nodes ------------------------------------------------------------------


def assert_serves(gateway: GatewayProcess) -> None:
    """The node is alive and a normal psycopg client still runs a query through it."""
    assert gateway.running, f"the gateway process died:\n{gateway.log_tail()}"
    with psycopg.connect(gateway.dsn(), connect_timeout=15) as conn:
        count = conn.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(SEED_TABLE))).fetchone()
    assert count == (SEED_ROWS,)


def unique_name(prefix: str) -> str:
    """A connection, agent or application name no other test uses on a shared node."""
    return f"{prefix}-{secrets.token_hex(4)}"


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


def session_rows(gateway: GatewayProcess, application_name: str | None = None) -> list[dict]:
    """The node's Session rows (with this application_name), read from its SQLite file."""
    with sqlite3.connect(gateway.data_dir / "gatehouse.sqlite3", timeout=20) as conn:
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


def recording_events(gateway: GatewayProcess, row: dict) -> list[list]:
    """The events ([t, kind, data, link]) of a session's recording, header left out."""
    lines = recording_path(gateway, row).read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines[1:]]


def wait_for_session(gateway: GatewayProcess, application_name: str, sealed: bool, timeout: float = 20) -> dict:
    """The one Session row with this application_name, once it exists (and, if `sealed`, is sealed)."""
    deadline = time.monotonic() + timeout
    rows: list[dict] = []
    while time.monotonic() < deadline:
        rows = session_rows(gateway, application_name)
        if len(rows) == 1 and (not sealed or (rows[0]["status"] != "live" and rows[0]["seal"])):
            return rows[0]
        time.sleep(0.05)
    raise AssertionError(f"no {'sealed ' if sealed else ''}session {application_name!r} in {timeout:g}s: {rows}")


def wait_for_recorded(gateway: GatewayProcess, row: dict, text: str, timeout: float = 20) -> None:
    """Wait until `text` is in the session's recording file (the flusher wrote it)."""
    path = recording_path(gateway, row)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and text in path.read_text(encoding="utf-8", errors="replace"):
            return
        time.sleep(0.05)
    raise AssertionError(f"{text!r} did not reach {path} in {timeout:g}s")
