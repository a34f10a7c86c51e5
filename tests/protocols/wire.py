"""A raw PostgreSQL frontend for the protocol tests: every packet and message built by hand.

libpq-based clients cannot send what these tests need: a FunctionCall, an
Execute with a row limit, bad lengths, unknown protocol versions, garbage,
data before a TLS handshake. This client sends whatever bytes it is given,
reads whatever comes back, and keeps every byte it received (after TLS
decryption) in `received`, so a test can look for a secret in all of it.
It is written from the protocol documentation and RFC 5802/7677 and shares
no code with the gateway, so a bug in the engine's framing or SCRAM cannot
hide behind a matching bug here.

    with WireClient(gateway.pg_port) as client:
        client.login("ci-bot", "pg-main", token)   # TLS, StartupMessage, SCRAM
        rows = client.query("SELECT 1")            # [["1"]], or ServerError
        replies = client.exchange(parse("SELECT $1::int"), bind([b"7"]), execute(), SYNC)
"""

import base64
import contextlib
import hashlib
import hmac
import secrets
import socket
import ssl
import struct
from dataclasses import dataclass, field

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


def message(kind: bytes, payload: bytes = b"") -> bytes:
    """A typed message (either direction): kind, int32 length (including itself), payload."""
    return kind + _INT32.pack(len(payload) + 4) + payload


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


def sasl_initial_response(mechanism: str, data: bytes) -> bytes:
    return message(b"p", cstring(mechanism) + _INT32.pack(len(data)) + data)


def query_message(text: str) -> bytes:
    return message(b"Q", cstring(text))


def _int16s(values: tuple[int, ...]) -> bytes:
    """An int16 count, then the values as int16 (format codes)."""
    return struct.pack(f"!h{len(values)}h", len(values), *values)


def _values(values: list[bytes | None]) -> bytes:
    """An int16 count, then each value length-prefixed (-1 for NULL), as Bind and FunctionCall carry them."""
    body = struct.pack("!h", len(values))
    for value in values:
        body += _INT32.pack(-1) if value is None else _INT32.pack(len(value)) + value
    return body


def parse(text: str, name: str = "", param_types: tuple[int, ...] = ()) -> bytes:
    types = struct.pack(f"!h{len(param_types)}i", len(param_types), *param_types)
    return message(b"P", cstring(name) + cstring(text) + types)


def bind(
    params: list[bytes | None],
    formats: tuple[int, ...] = (),
    result_formats: tuple[int, ...] = (),
    portal: str = "",
    statement: str = "",
) -> bytes:
    body = cstring(portal) + cstring(statement) + _int16s(formats) + _values(params) + _int16s(result_formats)
    return message(b"B", body)


def describe_portal(portal: str = "") -> bytes:
    return message(b"D", b"P" + cstring(portal))


def execute(max_rows: int = 0, portal: str = "") -> bytes:
    return message(b"E", cstring(portal) + _INT32.pack(max_rows))


def function_call(oid: int, args: list[bytes | None], arg_format: int, result_format: int) -> bytes:
    body = _INT32.pack(oid) + _int16s((arg_format,)) + _values(args) + struct.pack("!h", result_format)
    return message(b"F", body)


def copy_data(data: bytes) -> bytes:
    return message(b"d", data)


SYNC = message(b"S")
TERMINATE = message(b"X")


# --- parsing what comes back ---------------------------------------------------


@dataclass(frozen=True)
class Message:
    """One backend message: its type byte and payload."""

    kind: bytes
    payload: bytes


class ServerError(Exception):
    """The server answered with an ErrorResponse where we expected progress; `fields` holds it."""

    def __init__(self, fields: dict[str, str]) -> None:
        super().__init__(f"{fields.get('C', '?')}: {fields.get('M', '')}")
        self.fields = fields

    @property
    def sqlstate(self) -> str:
        return self.fields.get("C", "")


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


def data_row(payload: bytes) -> list[bytes | None]:
    """The column values of a DataRow, as sent."""
    count = struct.unpack_from("!h", payload, 0)[0]
    pos, values = 2, []
    for _ in range(count):
        length = _INT32.unpack_from(payload, pos)[0]
        pos += 4
        values.append(None if length < 0 else payload[pos : pos + length])
        pos += max(length, 0)
    return values


def rows_of(messages: list[Message]) -> list[list[bytes | None]]:
    """The DataRow values among messages, in order."""
    return [data_row(msg.payload) for msg in messages if msg.kind == b"D"]


def kinds_of(messages: list[Message]) -> bytes:
    """The type bytes of messages, joined: b'12TDDCZ'."""
    return b"".join(msg.kind for msg in messages)


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
        self.nonce = _b64(secrets.token_bytes(18))
        self.first_bare = f"n=,r={self.nonce}".encode()
        self.server_signature = b""
        self.verified = False

    def first(self) -> bytes:
        return self.gs2_header + self.first_bare

    def final(self, server_first: bytes) -> bytes:
        attrs = dict(part.split("=", 1) for part in server_first.decode().split(","))
        if not attrs["r"].startswith(self.nonce):
            raise AssertionError(f"the server's nonce does not extend ours: {server_first!r}")
        salted = hashlib.pbkdf2_hmac("sha256", self.password.encode(), base64.b64decode(attrs["s"]), int(attrs["i"]))
        without_proof = f"c={_b64(self.gs2_header + self.binding)},r={attrs['r']}".encode()
        auth_message = self.first_bare + b"," + server_first + b"," + without_proof
        client_key = _hmac(salted, b"Client Key")
        signature = _hmac(hashlib.sha256(client_key).digest(), auth_message)
        proof = bytes(a ^ b for a, b in zip(client_key, signature, strict=True))
        self.server_signature = _hmac(_hmac(salted, b"Server Key"), auth_message)
        return without_proof + b",p=" + _b64(proof).encode()

    def check(self, server_final: bytes) -> None:
        if not self.server_signature or server_final != b"v=" + _b64(self.server_signature).encode():
            raise AssertionError(f"the server's SCRAM server signature is wrong: {server_final!r}")
        self.verified = True


# --- the client ----------------------------------------------------------------------


@dataclass
class Greeting:
    """What the server sent between authentication and the first ReadyForQuery."""

    mechanisms: list[str] = field(default_factory=list)
    auth_requests: list[int] = field(default_factory=list)
    parameters: dict[str, str] = field(default_factory=dict)
    backend_key: tuple[int, int] | None = None
    others: list[Message] = field(default_factory=list)


class WireClient:
    """One TCP connection that sends raw bytes and reads raw messages; `received` holds every byte read.

    After a successful login `greeting` holds what the server said on the way.
    """

    def __init__(self, port: int, host: str = HOST, timeout: float = READ_TIMEOUT) -> None:
        self.sock: socket.socket = socket.create_connection((host, port), timeout=timeout)
        self.server_certificate: bytes | None = None
        self.greeting: Greeting | None = None
        self.received = bytearray()
        self._buffer = bytearray()

    def __enter__(self) -> "WireClient":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Say Terminate if logged in, as a real client does, then close the socket."""
        if self.greeting is not None:
            # The server may have closed first; the socket goes either way.
            with contextlib.suppress(OSError):
                self.send(TERMINATE)
        self.sock.close()

    def abort(self) -> None:
        """Close with a TCP reset, as a crashed client or a dropped network would."""
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.sock.close()

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def recv_exact(self, size: int) -> bytes:
        """Exactly `size` bytes; EOFError if the server closes first."""
        while len(self._buffer) < size:
            try:
                chunk = self.sock.recv(65536)
            except (ConnectionResetError, ssl.SSLEOFError):
                chunk = b""
            if not chunk:
                raise EOFError(f"the server closed the connection ({len(self._buffer)} of {size} bytes read)")
            self.received += chunk
            self._buffer += chunk
        data = bytes(self._buffer[:size])
        del self._buffer[:size]
        return data

    def read_message(self) -> Message:
        header = self.recv_exact(5)
        length = _INT32.unpack_from(header, 1)[0]
        return Message(header[:1], self.recv_exact(length - 4))

    def messages_until_close(self) -> list[Message]:
        """Every message the server sends until it closes the connection."""
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

    def read_until_ready(self) -> list[Message]:
        """Messages up to and including the next ReadyForQuery, errors among them; ServerError on a FATAL one."""
        received = []
        while True:
            msg = self.read_message()
            received.append(msg)
            if msg.kind == b"Z":
                return received
            if msg.kind == b"E" and error_fields(msg.payload).get("V") == "FATAL":
                raise ServerError(error_fields(msg.payload))

    def exchange(self, *messages: bytes) -> list[Message]:
        """Send these messages at once, then read up to the next ReadyForQuery (see read_until_ready)."""
        self.send(b"".join(messages))
        return self.read_until_ready()

    def query(self, text: str) -> list[list[str | None]]:
        """Run a simple Query: its rows as text, or ServerError if it failed."""
        replies = self.exchange(query_message(text))
        errors = [msg for msg in replies if msg.kind == b"E"]
        if errors:
            raise ServerError(error_fields(errors[0].payload))
        return [[None if value is None else value.decode() for value in row] for row in rows_of(replies)]

    def start_tls(self) -> None:
        """SSLRequest, expect 'S', then the TLS handshake (the server's certificate is not checked)."""
        self.send(ssl_request())
        answer = self.recv_exact(1)
        if answer != b"S":
            raise AssertionError(f"the server answered {answer!r} to an SSLRequest")
        self.wrap_tls()

    def wrap_tls(self) -> None:
        if self._buffer:
            raise AssertionError(f"the server sent {bytes(self._buffer)!r} in the clear before the TLS handshake")
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        self.sock = context.wrap_socket(self.sock)
        self.server_certificate = self.sock.getpeercert(binary_form=True)

    def startup(self, user: str, database: str, **params: str) -> None:
        """TLS, then a protocol 3.0 StartupMessage; authentication is left to the caller."""
        self.start_tls()
        self.send(startup_packet({"user": user, "database": database, **params}))

    def login(self, user: str, database: str, password: str, **params: str) -> Greeting:
        """TLS, StartupMessage and authentication, up to the first ReadyForQuery."""
        self.startup(user, database, **params)
        return self.authenticate(password)

    def authenticate(self, password: str, channel_binding: bool = False) -> Greeting:
        """Answer the server's authentication requests until ReadyForQuery; ServerError if refused."""
        greeting, scram = Greeting(), None
        while True:
            msg = self.read_message()
            if msg.kind == b"E":
                raise ServerError(error_fields(msg.payload))
            if msg.kind == b"Z":
                self.greeting = greeting
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
        code, data = _INT32.unpack_from(payload, 0)[0], payload[4:]
        greeting.auth_requests.append(code)
        if code == AUTH_SASL:
            greeting.mechanisms = [name.decode() for name in data.split(b"\0") if name]
            mechanism = SCRAM_PLUS if channel_binding else SCRAM
            if mechanism not in greeting.mechanisms:
                raise AssertionError(f"the server does not offer {mechanism}: {greeting.mechanisms}")
            scram = self.scram_client(password, channel_binding)
            self.send(sasl_initial_response(mechanism, scram.first()))
        elif code == AUTH_SASL_CONTINUE and scram is not None:
            self.send(message(b"p", scram.final(data)))
        elif code == AUTH_SASL_FINAL and scram is not None:
            scram.check(data)
        elif code == AUTH_CLEARTEXT:
            self.send(message(b"p", cstring(password)))
        elif code == AUTH_OK:
            if scram is not None and not scram.verified:
                raise AssertionError("AuthenticationOk before the server proved its SCRAM signature")
        else:
            raise AssertionError(f"unexpected authentication request {code}")
        return scram

    def scram_client(self, password: str, channel_binding: bool) -> ScramClient:
        if not channel_binding:
            return ScramClient(password)
        end_point = hashlib.sha256(self.server_certificate or b"").digest()
        return ScramClient(password, b"p=tls-server-end-point,,", end_point)


def login_error(port: int, user: str, database: str, password: str, **params: str) -> dict[str, str]:
    """Log in expecting a refusal: the ErrorResponse's fields (the server must also close the connection)."""
    with WireClient(port) as client:
        try:
            client.login(user, database, password, **params)
        except ServerError as refused:
            if client.messages_until_close():
                raise AssertionError("the server sent more after its FATAL error") from None
            return refused.fields
    raise AssertionError(f"{user} logged in to {database} with password {password!r}")
