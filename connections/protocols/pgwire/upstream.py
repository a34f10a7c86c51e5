"""The gateway's connection to an upstream PostgreSQL server.

A small state machine logs in (TLS per the connection's mode; trust,
cleartext, md5 or SCRAM-SHA-256) and then hands every byte to the client
session it is attached to. Between clients it can be reset and pooled.
"""

import asyncio
import hashlib
import logging
import ssl
import struct
from collections.abc import Callable
from enum import Enum

from . import messages as m
from .scram import MECHANISM, ScramClientExchange, ScramError
from .targets import PgTarget

logger = logging.getLogger(__name__)

_HEADER = struct.Struct("!cI")
RESET_QUERY = "DISCARD ALL"


class UpstreamError(Exception):
    """The upstream could not be reached or refused us.

    The message is safe to show the client; `detail` (the upstream's own words,
    which may name its hosts and roles) is for the gateway log only.
    """

    def __init__(self, message: str, sqlstate: str = "08001", detail: str = "") -> None:
        super().__init__(message)
        self.sqlstate = sqlstate
        self.detail = detail


class UpstreamState(Enum):
    CONNECTING = "connecting"
    SSL_RESPONSE = "ssl-response"
    TLS_HANDSHAKE = "tls-handshake"
    AUTHENTICATING = "authenticating"
    STARTING = "starting"
    IDLE = "idle"
    QUERYING = "querying"  # a query of our own, before a client is attached
    RELAY = "relay"
    RESETTING = "resetting"
    CLOSED = "closed"


def upstream_ssl_context(target: PgTarget) -> ssl.SSLContext:
    if target.tls_mode == "verify-full":
        context = ssl.create_default_context(cadata=target.ca_pem or None)
        if not target.ca_pem:
            context.load_default_certs()
        return context
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


class PgUpstream(asyncio.Protocol):
    """One upstream server connection; see the module docstring."""

    def __init__(self, target: PgTarget, params: dict[str, str]) -> None:
        self.target = target
        self.params = params
        self.state = UpstreamState.CONNECTING
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.parameters: dict[str, str] = {}
        self.backend_pid = 0
        self.backend_secret = 0
        self.transaction_status = b"I"
        self.scram: ScramClientExchange | None = None
        self.peer = None  # the attached client session while relaying
        self.on_idle: Callable[[PgUpstream], None] | None = None
        self.on_lost: Callable[[PgUpstream], None] | None = None
        self.own_query: asyncio.Future[list[list[str | None]]] | None = None
        self.own_rows: list[list[str | None]] = []
        self.own_error = ""

    # --- asyncio callbacks ---------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        if self.state is UpstreamState.CONNECTING:
            if self.target.tls_mode == "disable":
                self._send_startup()
            else:
                self.state = UpstreamState.SSL_RESPONSE
                transport.write(m.ssl_request())

    def data_received(self, data: bytes) -> None:
        if self.state is UpstreamState.RELAY:
            self.peer.from_upstream(data)
            return
        self.buffer += data
        try:
            if self.state is UpstreamState.SSL_RESPONSE:
                self._on_ssl_response()
            else:
                self._read_handshake()
        except (UpstreamError, m.ProtocolViolation, ScramError) as exc:
            self._fail(exc)

    def connection_lost(self, exc: Exception | None) -> None:
        previous, self.state = self.state, UpstreamState.CLOSED
        if not self.ready.done():
            reason = f"upstream closed the connection during login ({exc or 'EOF'})"
            self.ready.set_exception(UpstreamError(reason))
        if self.own_query is not None and not self.own_query.done():
            self.own_query.set_exception(UpstreamError("the upstream server closed the connection", "08006"))
        if previous is UpstreamState.RELAY and self.peer is not None:
            self.peer.upstream_lost()
        if self.on_lost is not None:
            self.on_lost(self)

    def pause_writing(self) -> None:
        if self.peer is not None:
            self.peer.transport.pause_reading()

    def resume_writing(self) -> None:
        if self.peer is not None:
            self.peer.transport.resume_reading()

    # --- login ---------------------------------------------------------------

    def _on_ssl_response(self) -> None:
        answer = bytes(self.buffer[:1])
        del self.buffer[:1]
        if self.buffer:
            raise m.ProtocolViolation("upstream sent data after its SSL response")
        if answer != b"S":
            mode = self.target.tls_mode
            raise UpstreamError(f"upstream {self.target.name!r} does not accept TLS (tls mode {mode})")
        self.state = UpstreamState.TLS_HANDSHAKE
        asyncio.ensure_future(self._start_tls())

    async def _start_tls(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            self.transport = await loop.start_tls(
                self.transport, self, upstream_ssl_context(self.target), server_hostname=self.target.host
            )
        except (ssl.SSLError, ssl.CertificateError, ConnectionError, OSError) as exc:
            self._fail(UpstreamError(f"TLS to upstream {self.target.name!r} failed: {exc}"))
            return
        self._send_startup()

    def _send_startup(self) -> None:
        self.state = UpstreamState.AUTHENTICATING
        params = {"user": self.target.user, "database": self.target.database, **self.params}
        self.transport.write(m.startup_message(params))

    def _read_handshake(self) -> None:
        for kind, payload in self._take_messages():
            if kind == b"R":
                self._on_auth_request(payload)
            elif kind == b"S":
                name, pos = m.read_cstring(payload, 0)
                self.parameters[name] = m.read_cstring(payload, pos)[0]
            elif kind == b"K":
                self.backend_pid, self.backend_secret = struct.unpack("!iI", payload[:8])
            elif kind == b"Z":
                self._on_ready(payload)
            elif kind == b"E":
                self._on_error(payload)
            elif kind == b"D" and self.state is UpstreamState.QUERYING:
                self.own_rows.append([None if v is None else v.decode() for v in m.parse_data_row(payload)])
            elif kind == b"T" and self.state is UpstreamState.QUERYING:
                pass
            elif kind not in (b"N", b"v", b"C", b"A"):
                raise m.ProtocolViolation(f"unexpected upstream message {kind!r} during login")

    def _take_messages(self):
        buf = self.buffer
        while len(buf) >= 5:
            kind, length = _HEADER.unpack_from(buf, 0)
            if length < 4 or length > m.MAX_MESSAGE:
                raise m.ProtocolViolation("upstream sent an invalid message length")
            if len(buf) < length + 1:
                return
            payload = bytes(buf[5 : length + 1])
            del buf[: length + 1]
            yield kind, payload
            if self.state in (UpstreamState.CLOSED, UpstreamState.RELAY):
                return

    def _on_auth_request(self, payload: bytes) -> None:
        code, _ = m.read_int32(payload, 0)
        password = self.target.password
        if code == m.AUTH_OK:
            self.state = UpstreamState.STARTING
            return
        if password is None:
            raise UpstreamError(f"upstream {self.target.name!r} asks for a password and none is stored")
        if code == m.AUTH_CLEARTEXT:
            self.transport.write(m.password_message(m.cstring(password)))
        elif code == m.AUTH_MD5:
            inner = hashlib.md5((password + self.target.user).encode(), usedforsecurity=False).hexdigest()
            outer = hashlib.md5(inner.encode() + payload[4:8], usedforsecurity=False).hexdigest()
            self.transport.write(m.password_message(m.cstring("md5" + outer)))
        elif code == m.AUTH_SASL:
            self._start_scram(payload)
        elif code == m.AUTH_SASL_CONTINUE and self.scram is not None:
            self.transport.write(m.password_message(self.scram.final_message(payload[4:])))
        elif code == m.AUTH_SASL_FINAL and self.scram is not None:
            self.scram.check_server_final(payload[4:])
        else:
            raise UpstreamError(f"upstream {self.target.name!r} asks for an unsupported auth method ({code})")

    def _start_scram(self, payload: bytes) -> None:
        mechanisms = payload[4:].split(b"\0")
        if MECHANISM.encode() not in mechanisms:
            raise UpstreamError(f"upstream {self.target.name!r} offers no SASL mechanism we support")
        self.scram = ScramClientExchange(self.target.password)
        self.transport.write(m.sasl_initial_response(MECHANISM, self.scram.first_message()))

    def _on_error(self, payload: bytes) -> None:
        fields = m.parse_error_fields(payload)
        text = fields.get("M", "unknown error")
        if self.state is UpstreamState.RESETTING:
            logger.warning("upstream %s failed its reset (%s); closing it", self.target.name, text)
            self.close()
            return
        if self.state is UpstreamState.QUERYING:
            self.own_error = text
            return
        code = fields.get("C", "")
        raise UpstreamError(f"upstream {self.target.name!r} refused the login ({code})", detail=text)

    def _on_ready(self, payload: bytes) -> None:
        self.transaction_status = payload[:1]
        was = self.state
        self.state = UpstreamState.IDLE
        if was is UpstreamState.STARTING and not self.ready.done():
            self.ready.set_result(None)
        elif was is UpstreamState.RESETTING and self.on_idle is not None:
            self.on_idle(self)
        elif was is UpstreamState.QUERYING and self.own_query is not None and not self.own_query.done():
            if self.own_error:
                self.own_query.set_exception(UpstreamError("upstream refused a catalog query", detail=self.own_error))
            else:
                self.own_query.set_result(self.own_rows)

    def _fail(self, exc: Exception) -> None:
        if not self.ready.done():
            error = exc if isinstance(exc, UpstreamError) else UpstreamError(str(exc))
            self.ready.set_exception(error)
        else:
            logger.warning("upstream %s: %s", self.target.name, exc)
        self.close()

    # --- life after login ------------------------------------------------------

    def attach(self, peer) -> None:
        """Relay every byte from now on to `peer` (a client session)."""
        self.peer = peer
        self.state = UpstreamState.RELAY

    def detach_and_reset(self, on_idle: Callable[["PgUpstream"], None]) -> None:
        """Forget the client and run the reset query; `on_idle` runs once it is clean."""
        self.peer = None
        self.on_idle = on_idle
        self.state = UpstreamState.RESETTING
        self.transport.write(m.query(RESET_QUERY))

    async def query_rows(self, sql: str) -> list[list[str | None]]:
        """Run a query of our own on an idle connection, before a client is attached; text rows."""
        self.state = UpstreamState.QUERYING
        self.own_rows, self.own_error = [], ""
        self.own_query = asyncio.get_running_loop().create_future()
        self.transport.write(m.query(sql))
        return await self.own_query

    def close(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            if self.state in (UpstreamState.IDLE, UpstreamState.RELAY, UpstreamState.RESETTING):
                self.transport.write(m.TERMINATE)
            self.transport.close()
        self.peer = None


async def connect_upstream(target: PgTarget, params: dict[str, str], timeout: float) -> PgUpstream:
    """Open and log in a new upstream connection, or raise UpstreamError."""
    loop = asyncio.get_running_loop()
    upstream: PgUpstream | None = None
    try:
        async with asyncio.timeout(timeout):
            _, upstream = await loop.create_connection(lambda: PgUpstream(target, params), target.host, target.port)
            await upstream.ready
    except TimeoutError:
        if upstream is not None:
            upstream.close()
        raise UpstreamError(f"upstream {target.name!r} did not answer within {timeout:g}s", "08001") from None
    except OSError as exc:
        raise UpstreamError(f"could not connect to upstream {target.name!r}: {exc.strerror or exc}") from None
    except UpstreamError:
        if upstream is not None:
            upstream.close()
        raise
    return upstream
