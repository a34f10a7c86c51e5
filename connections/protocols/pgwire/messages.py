"""PostgreSQL v3 wire messages: framing, builders and the few parsers we need.

Reference: https://www.postgresql.org/docs/current/protocol-message-formats.html
Every builder returns the complete message (type byte, length, payload).
"""

import struct
from dataclasses import dataclass
from typing import NamedTuple

PROTOCOL_3_0 = 3 << 16
SSL_REQUEST_CODE = 80877103
GSSENC_REQUEST_CODE = 80877104
CANCEL_REQUEST_CODE = 80877102

MAX_STARTUP_PACKET = 10_000  # PostgreSQL's own MAX_STARTUP_PACKET_LENGTH
MAX_MESSAGE = (1 << 30) - 1  # PostgreSQL refuses anything of 1 GiB or more

# Authentication request codes (message 'R').
AUTH_OK = 0
AUTH_CLEARTEXT = 3
AUTH_MD5 = 5
AUTH_SASL = 10
AUTH_SASL_CONTINUE = 11
AUTH_SASL_FINAL = 12

_HEADER = struct.Struct("!cI")
_INT32 = struct.Struct("!i")
_INT16 = struct.Struct("!h")
_UINT32 = struct.Struct("!I")
_FIELD = struct.Struct("!IhIhih")  # RowDescription per-field tail after the name


class ProtocolViolation(Exception):
    """The peer sent something the protocol does not allow; the session ends."""

    def __init__(self, message: str, sqlstate: str = "08P01") -> None:
        super().__init__(message)
        self.sqlstate = sqlstate


def message(kind: bytes, payload: bytes = b"") -> bytes:
    return _HEADER.pack(kind, len(payload) + 4) + payload


def cstring(text: str) -> bytes:
    return text.encode("utf-8") + b"\0"


def read_cstring(payload: bytes, pos: int) -> tuple[str, int]:
    """The NUL-terminated string at pos, and the position after it."""
    end = payload.find(b"\0", pos)
    if end < 0:
        raise ProtocolViolation("unterminated string in message")
    return payload[pos:end].decode("utf-8", "replace"), end + 1


def read_int32(payload: bytes, pos: int) -> tuple[int, int]:
    if pos + 4 > len(payload):
        raise ProtocolViolation("message too short")
    return _INT32.unpack_from(payload, pos)[0], pos + 4


def read_int16(payload: bytes, pos: int) -> tuple[int, int]:
    if pos + 2 > len(payload):
        raise ProtocolViolation("message too short")
    return _INT16.unpack_from(payload, pos)[0], pos + 2


# --- Builders ---------------------------------------------------------------


def error_response(sqlstate: str, text: str, severity: str = "ERROR", detail: str = "") -> bytes:
    fields = b"S" + cstring(severity) + b"V" + cstring(severity) + b"C" + cstring(sqlstate)
    fields += b"M" + cstring(text)
    if detail:
        fields += b"D" + cstring(detail)
    return message(b"E", fields + b"\0")


def fatal(sqlstate: str, text: str, detail: str = "") -> bytes:
    return error_response(sqlstate, text, "FATAL", detail)


def authentication(code: int, data: bytes = b"") -> bytes:
    return message(b"R", _INT32.pack(code) + data)


def authentication_sasl(mechanisms: list[str]) -> bytes:
    return authentication(AUTH_SASL, b"".join(cstring(m) for m in mechanisms) + b"\0")


def parameter_status(name: str, value: str) -> bytes:
    return message(b"S", cstring(name) + cstring(value))


def backend_key_data(pid: int, secret: int) -> bytes:
    return message(b"K", _INT32.pack(pid) + _UINT32.pack(secret))


def ready_for_query(status: bytes = b"I") -> bytes:
    return message(b"Z", status)


def negotiate_protocol_version(newest_version: int, unsupported: list[str]) -> bytes:
    # The whole version code (3 << 16 | minor), as the server sends it and libpq 18
    # checks it; the docs' "newest minor version" wording is misleading.
    payload = _INT32.pack(newest_version) + _INT32.pack(len(unsupported))
    return message(b"v", payload + b"".join(cstring(o) for o in unsupported))


def startup_message(params: dict[str, str]) -> bytes:
    body = _INT32.pack(PROTOCOL_3_0) + b"".join(cstring(k) + cstring(v) for k, v in params.items()) + b"\0"
    return _INT32.pack(len(body) + 4) + body


def ssl_request() -> bytes:
    return _INT32.pack(8) + _INT32.pack(SSL_REQUEST_CODE)


def cancel_request(pid: int, secret: int) -> bytes:
    return _INT32.pack(16) + _INT32.pack(CANCEL_REQUEST_CODE) + _INT32.pack(pid) + _UINT32.pack(secret)


def password_message(data: bytes) -> bytes:
    return message(b"p", data)


def sasl_initial_response(mechanism: str, data: bytes) -> bytes:
    return message(b"p", cstring(mechanism) + _INT32.pack(len(data)) + data)


def query(text: str) -> bytes:
    return message(b"Q", cstring(text))


def parse(name: str, text: str) -> bytes:
    """A Parse message with no parameter types."""
    return message(b"P", cstring(name) + cstring(text) + b"\0\0")


def bind(portal: str, statement: str) -> bytes:
    """A Bind message with no parameters and default result formats."""
    return message(b"B", cstring(portal) + cstring(statement) + b"\0\0\0\0\0\0")


def bind_statement(payload: bytes) -> str:
    """The prepared statement a Bind message's payload names (its second string)."""
    _portal, pos = read_cstring(payload, 0)
    return read_cstring(payload, pos)[0]


def describe_portal(name: str) -> bytes:
    return message(b"D", b"P" + cstring(name))


TERMINATE = message(b"X")


# --- Parsers ----------------------------------------------------------------


@dataclass(frozen=True)
class StartupPacket:
    """The first packet of a connection, before any typed message."""

    code: int
    params: dict[str, str]
    cancel_pid: int = 0
    cancel_secret: int = 0


def parse_startup_packet(body: bytes) -> StartupPacket:
    """Parse the body of a startup packet (after its length word)."""
    code, pos = read_int32(body, 0)
    if code == CANCEL_REQUEST_CODE:
        if len(body) != 12:
            raise ProtocolViolation("malformed cancel request")
        pid, _ = read_int32(body, 4)
        return StartupPacket(code, {}, pid, _UINT32.unpack_from(body, 8)[0])
    if code in (SSL_REQUEST_CODE, GSSENC_REQUEST_CODE):
        return StartupPacket(code, {})
    return StartupPacket(code, _parse_startup_params(body, pos))


def _parse_startup_params(body: bytes, pos: int) -> dict[str, str]:
    params: dict[str, str] = {}
    while True:
        if pos >= len(body):
            raise ProtocolViolation("startup packet is missing its terminator")
        if body[pos] == 0:
            if pos != len(body) - 1:
                raise ProtocolViolation("trailing bytes after startup parameters")
            return params
        name, pos = read_cstring(body, pos)
        value, pos = read_cstring(body, pos)
        params[name] = value


def parse_error_fields(payload: bytes) -> dict[str, str]:
    """ErrorResponse / NoticeResponse fields keyed by their one-letter code."""
    fields: dict[str, str] = {}
    data = payload
    pos = 0
    while pos < len(data) and data[pos] != 0:
        code = chr(data[pos])
        end = data.find(b"\0", pos + 1)
        if end < 0:
            break
        fields[code] = data[pos + 1 : end].decode("utf-8", "replace")
        pos = end + 1
    return fields


class Column(NamedTuple):
    """One field of a RowDescription; table_oid and attnum are 0 for a computed column."""

    name: str
    table_oid: int
    attnum: int
    type_oid: int
    format: int


def parse_row_description(payload: bytes) -> list[Column]:
    data = payload
    count, pos = read_int16(data, 0)
    columns = []
    for _ in range(count):
        end = data.find(b"\0", pos)
        if end < 0 or end + 1 + _FIELD.size > len(data):
            raise ProtocolViolation("malformed RowDescription")
        name = data[pos:end].decode("utf-8", "replace")
        table_oid, attnum, type_oid, _size, _mod, fmt = _FIELD.unpack_from(data, end + 1)
        columns.append(Column(name, table_oid, attnum, type_oid, fmt))
        pos = end + 1 + _FIELD.size
    return columns


def parse_data_row(payload: bytes) -> list[bytes | None]:
    """A DataRow's values, None for NULL; ValueError or IndexError if the payload is malformed.

    The lengths are read byte by byte, not with struct: compiled (messages.pxd), that is plain C.
    Each byte is read as `payload[i] & 0xFF`, which compiled code needs (it reads a signed char)
    and Python ignores.
    """
    raw = payload  # char * in messages.pxd: a slice of it is one copy, without a slice object
    size = len(payload)
    count = (payload[0] & 0xFF) << 8 | (payload[1] & 0xFF)
    pos = 2
    values: list[bytes | None] = []
    for _ in range(count):
        if pos + 4 > size:
            raise ValueError("a DataRow is shorter than its column count")
        if payload[pos] & 0x80:  # a negative length: -1, NULL
            values.append(None)
            pos += 4
            continue
        start = pos + 4
        pos = start + (
            (payload[pos] & 0xFF) << 24
            | (payload[pos + 1] & 0xFF) << 16
            | (payload[pos + 2] & 0xFF) << 8
            | (payload[pos + 3] & 0xFF)
        )
        if pos > size:
            raise ValueError("a DataRow value runs past the end of the message")
        values.append(raw[start:pos])
    return values


@dataclass(frozen=True)
class Bind:
    portal: str
    statement: str
    param_formats: list[int]
    params: list[bytes | None]
    result_formats: list[int]


def parse_bind(payload: bytes) -> Bind:
    portal, pos = read_cstring(payload, 0)
    statement, pos = read_cstring(payload, pos)
    param_formats, pos = _read_int16_list(payload, pos)
    params, pos = _read_values(payload, pos)
    result_formats, pos = _read_int16_list(payload, pos)
    return Bind(portal, statement, param_formats, params, result_formats)


@dataclass(frozen=True)
class FunctionCall:
    function_oid: int
    arg_formats: list[int]
    args: list[bytes | None]
    result_format: int


def parse_function_call(payload: bytes) -> FunctionCall:
    oid, pos = read_int32(payload, 0)
    arg_formats, pos = _read_int16_list(payload, pos)
    args, pos = _read_values(payload, pos)
    result_format, pos = read_int16(payload, pos)
    return FunctionCall(oid, arg_formats, args, result_format)


def _read_values(data: bytes, pos: int) -> tuple[list[bytes | None], int]:
    """A count, then that many length-prefixed values (-1 is NULL), as in Bind and FunctionCall."""
    count, pos = read_int16(data, pos)
    values: list[bytes | None] = []
    for _ in range(count):
        length, pos = read_int32(data, pos)
        if length < 0:
            values.append(None)
            continue
        if pos + length > len(data):
            raise ProtocolViolation("value runs past the end of the message")
        values.append(data[pos : pos + length])
        pos += length
    return values, pos


def _read_int16_list(data: bytes, pos: int) -> tuple[list[int], int]:
    count, pos = read_int16(data, pos)
    if count < 0 or pos + 2 * count > len(data):
        raise ProtocolViolation("malformed format code list")
    return list(struct.unpack_from(f"!{count}h", data, pos)), pos + 2 * count


def format_for(formats: list[int], index: int) -> int:
    """The format code of column/parameter `index` under PostgreSQL's 0/1/N rule."""
    if not formats:
        return 0
    if len(formats) == 1:
        return formats[0]
    return formats[index] if index < len(formats) else 0
