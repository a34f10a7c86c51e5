"""A tiny PostgreSQL frontend that speaks the wire protocol itself and keeps every byte it receives.

libpq-based clients cannot send a FunctionCall, an Execute with a row limit,
or show us the raw bytes of the login. This client can. It is written from
the protocol documentation and shares no code with the gateway, so a bug in
the engine's framing or SCRAM cannot hide behind a matching bug here.

    with RawPgClient("127.0.0.1", port) as client:
        client.login("ci-bot", "pg-main", token)
        messages = client.query("SELECT 1")
"""

import base64
import contextlib
import hashlib
import hmac
import secrets
import socket
import ssl
import struct
from dataclasses import dataclass

SSL_REQUEST = struct.pack("!ii", 8, 80877103)
PROTOCOL_3_0 = 3 << 16
SCRAM = "SCRAM-SHA-256"


class RawPgError(Exception):
    """The server sent an ErrorResponse where we expected progress; `fields` holds its fields."""

    def __init__(self, fields: dict[str, str]) -> None:
        super().__init__(f"{fields.get('C', '?')}: {fields.get('M', '')}")
        self.fields = fields

    @property
    def sqlstate(self) -> str:
        return self.fields.get("C", "")


@dataclass(frozen=True)
class Message:
    """One backend message: its type byte and payload."""

    kind: bytes
    payload: bytes


def cstring(text: str) -> bytes:
    return text.encode() + b"\0"


def frame(kind: bytes, payload: bytes = b"") -> bytes:
    return kind + struct.pack("!i", len(payload) + 4) + payload


def error_fields(payload: bytes) -> dict[str, str]:
    """The fields of an ErrorResponse or NoticeResponse, keyed by their one-letter codes."""
    fields = {}
    for part in payload.rstrip(b"\0").split(b"\0"):
        if part:
            fields[chr(part[0])] = part[1:].decode("utf-8", "replace")
    return fields


def data_row(payload: bytes) -> list[bytes | None]:
    """The column values of a DataRow."""
    (count,) = struct.unpack_from("!h", payload, 0)
    pos, values = 2, []
    for _ in range(count):
        (length,) = struct.unpack_from("!i", payload, pos)
        pos += 4
        if length < 0:
            values.append(None)
            continue
        values.append(payload[pos : pos + length])
        pos += length
    return values


# --- frontend messages -------------------------------------------------------------


def query(text: str) -> bytes:
    return frame(b"Q", cstring(text))


def parse(text: str, name: str = "", param_types: tuple[int, ...] = ()) -> bytes:
    types = struct.pack(f"!h{len(param_types)}i", len(param_types), *param_types)
    return frame(b"P", cstring(name) + cstring(text) + types)


def bind(
    params: list[bytes | None],
    formats: tuple[int, ...] = (),
    result_formats: tuple[int, ...] = (),
    portal: str = "",
    statement: str = "",
) -> bytes:
    body = cstring(portal) + cstring(statement)
    body += struct.pack(f"!h{len(formats)}h", len(formats), *formats)
    body += struct.pack("!h", len(params))
    for value in params:
        body += struct.pack("!i", -1) if value is None else struct.pack("!i", len(value)) + value
    body += struct.pack(f"!h{len(result_formats)}h", len(result_formats), *result_formats)
    return frame(b"B", body)


def describe_portal(portal: str = "") -> bytes:
    return frame(b"D", b"P" + cstring(portal))


def execute(max_rows: int = 0, portal: str = "") -> bytes:
    return frame(b"E", cstring(portal) + struct.pack("!i", max_rows))


def function_call(oid: int, args: list[bytes | None], arg_format: int, result_format: int) -> bytes:
    body = struct.pack("!ihh", oid, 1, arg_format) + struct.pack("!h", len(args))
    for value in args:
        body += struct.pack("!i", -1) if value is None else struct.pack("!i", len(value)) + value
    return frame(b"F", body + struct.pack("!h", result_format))


SYNC = frame(b"S")
TERMINATE = frame(b"X")


class RawPgClient:
    """One connection; `received` holds every byte the server sent, after TLS decryption."""

    def __init__(self, host: str, port: int, timeout: float = 15) -> None:
        self.sock: socket.socket | ssl.SSLSocket = socket.create_connection((host, port), timeout=timeout)
        self.received = bytearray()
        self.parameters: dict[str, str] = {}
        self.backend_key: tuple[int, int] | None = None
        self._buffer = bytearray()

    def start_tls(self) -> None:
        """SSLRequest, then a TLS handshake (the test does not check the gateway's certificate)."""
        self.sock.sendall(SSL_REQUEST)
        answer = self.sock.recv(1)
        self.received += answer
        if answer != b"S":
            raise ConnectionError(f"the server refused TLS (answered {answer!r})")
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        self.sock = context.wrap_socket(self.sock)

    def login(self, user: str, database: str, password: str, **params: str) -> list[Message]:
        """TLS, StartupMessage and SCRAM-SHA-256; returns the messages up to the first ReadyForQuery."""
        self.start_tls()
        startup = b"".join(cstring(k) + cstring(v) for k, v in {"user": user, "database": database, **params}.items())
        body = struct.pack("!i", PROTOCOL_3_0) + startup + b"\0"
        self.sock.sendall(struct.pack("!i", len(body) + 4) + body)
        self._authenticate(password)
        messages = self.read_until_ready()
        for message in messages:
            if message.kind == b"S":
                name, value, _ = message.payload.split(b"\0", 2)
                self.parameters[name.decode()] = value.decode()
            elif message.kind == b"K":
                self.backend_key = struct.unpack("!iI", message.payload[:8])
        return messages

    def _authenticate(self, password: str) -> None:
        code, data = self._auth_request()
        if code != 10 or SCRAM.encode() not in data.split(b"\0"):
            raise ConnectionError(f"expected a SCRAM-SHA-256 request, got auth code {code}")
        nonce = base64.b64encode(secrets.token_bytes(18)).decode()
        first_bare = f"n=,r={nonce}"
        first = b"n,," + first_bare.encode()
        self.send(frame(b"p", cstring(SCRAM) + struct.pack("!i", len(first)) + first))
        code, server_first = self._auth_request()
        if code != 11:
            raise ConnectionError(f"expected SASLContinue, got auth code {code}")
        attrs = dict(part.split("=", 1) for part in server_first.decode().split(","))
        if not attrs["r"].startswith(nonce):
            raise ConnectionError("the server's nonce does not extend ours")
        salted = hashlib.pbkdf2_hmac("sha256", password.encode(), base64.b64decode(attrs["s"]), int(attrs["i"]))
        client_key = hmac.digest(salted, b"Client Key", "sha256")
        without_proof = f"c=biws,r={attrs['r']}"
        auth_message = f"{first_bare},{server_first.decode()},{without_proof}".encode()
        signature = hmac.digest(hashlib.sha256(client_key).digest(), auth_message, "sha256")
        proof = base64.b64encode(bytes(a ^ b for a, b in zip(client_key, signature, strict=True))).decode()
        self.send(frame(b"p", f"{without_proof},p={proof}".encode()))
        code, server_final = self._auth_request()
        server_key = hmac.digest(salted, b"Server Key", "sha256")
        expected = b"v=" + base64.b64encode(hmac.digest(server_key, auth_message, "sha256"))
        if code != 12 or server_final != expected:
            raise ConnectionError("the server's SCRAM signature is wrong")
        code, _ = self._auth_request()
        if code != 0:
            raise ConnectionError(f"expected AuthenticationOk, got auth code {code}")

    def _auth_request(self) -> tuple[int, bytes]:
        message = self.read_message()
        if message.kind == b"E":
            raise RawPgError(error_fields(message.payload))
        if message.kind != b"R":
            raise ConnectionError(f"expected an authentication request, got {message.kind!r}")
        (code,) = struct.unpack_from("!i", message.payload, 0)
        return code, message.payload[4:]

    def send(self, *messages: bytes) -> None:
        self.sock.sendall(b"".join(messages))

    def read_message(self) -> Message:
        while True:
            if len(self._buffer) >= 5:
                kind = bytes(self._buffer[:1])
                (length,) = struct.unpack_from("!i", self._buffer, 1)
                if len(self._buffer) >= length + 1:
                    payload = bytes(self._buffer[5 : length + 1])
                    del self._buffer[: length + 1]
                    return Message(kind, payload)
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("the server closed the connection")
            self.received += chunk
            self._buffer += chunk

    def read_until_ready(self) -> list[Message]:
        """Messages up to and including the next ReadyForQuery; a FATAL error raises."""
        messages = []
        while True:
            message = self.read_message()
            messages.append(message)
            if message.kind == b"Z":
                return messages
            if message.kind == b"E" and error_fields(message.payload).get("V") == "FATAL":
                raise RawPgError(error_fields(message.payload))

    def query(self, text: str) -> list[Message]:
        self.send(query(text))
        return self.read_until_ready()

    def close(self) -> None:
        # The server may have closed first; the socket goes either way.
        with contextlib.suppress(OSError):
            self.send(TERMINATE)
        self.sock.close()

    def __enter__(self) -> "RawPgClient":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def rows_of(messages: list[Message]) -> list[list[bytes | None]]:
    """The DataRow values among messages, in order."""
    return [data_row(message.payload) for message in messages if message.kind == b"D"]


def kinds_of(messages: list[Message]) -> bytes:
    """The type bytes of messages, joined: b'12TDDCZ'."""
    return b"".join(message.kind for message in messages)
