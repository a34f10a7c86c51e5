"""The client side of a PostgreSQL session through Gatehouse.

An explicit state machine: STARTUP (SSLRequest, GSSENCRequest, CancelRequest
or StartupMessage) → AUTH_SASL_INITIAL / AUTH_SASL_RESPONSE / AUTH_PASSWORD
→ OPENING (directory and upstream work; input is held) → RELAY ⇄ HELD (a
statement waits for a review; input is held) → CLOSED.
Anything unexpected in a state ends the session with a FATAL error; other
sessions are untouched.
"""

import asyncio
import hashlib
import hmac
import logging
import struct
from dataclasses import replace
from enum import Enum

from . import messages as m
from .scram import ScramError, ScramServerExchange
from .tracker import MaskingFailed, StatementTracker
from .upstream import PgUpstream, UpstreamError

logger = logging.getLogger(__name__)

_HEADER = struct.Struct("!cI")
_LENGTH = struct.Struct("!i")
# Startup parameters that are ours to interpret, never forwarded upstream.
GATEWAY_PARAMS = {"user", "database", "replication"}


def _join(leftover: bytearray, data: bytes) -> bytes:
    """Prepend what the previous read left of an incomplete message (callers skip the call when nothing was)."""
    leftover += data
    joined = bytes(leftover)
    leftover.clear()
    return joined


class ClientState(Enum):
    STARTUP = "startup"
    AUTH_SASL_INITIAL = "auth-sasl-initial"
    AUTH_SASL_RESPONSE = "auth-sasl-response"
    AUTH_PASSWORD = "auth-password"  # noqa: S105 (a state name)
    OPENING = "opening"
    RELAY = "relay"
    HELD = "held"
    CLOSED = "closed"


class PgClientSession(asyncio.Protocol):
    """One client connection; `gateway` is the node-wide PgGateway."""

    def __init__(self, gateway) -> None:
        self.gateway = gateway
        self.state = ClientState.STARTUP
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.tls = False
        self.peer = "?"
        self.params: dict[str, str] = {}
        self.login = None
        self.scram: ScramServerExchange | None = None
        self.upstream: PgUpstream | None = None
        self.tracker: StatementTracker | None = None
        self.session = None  # the directory's handle for the open session
        self.backend_key: tuple[int, int] | None = None
        self.bytes_in = 0
        self.bytes_out = 0
        self.clean_exit = False
        self.login_timer: asyncio.TimerHandle | None = None
        self.review: asyncio.Task | None = None  # the review a HELD session waits for

    # --- asyncio callbacks ---------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        peer = transport.get_extra_info("peername")
        self.peer = f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else str(peer)
        loop = asyncio.get_running_loop()
        self.login_timer = loop.call_later(self.gateway.config.login_timeout, self._login_timed_out)

    def _login_timed_out(self) -> None:
        # Like PostgreSQL's authentication_timeout: a silent client must not hold a slot.
        if self.state not in (ClientState.RELAY, ClientState.CLOSED):
            self.fatal("57014", "canceling authentication due to timeout")

    def data_received(self, data: bytes) -> None:
        try:
            if self.state is ClientState.RELAY:
                self._relay_from_client(data)
                return
            self.buffer += data
            if self.state is ClientState.HELD:
                self.transport.pause_reading()  # an upstream resume_writing may have woken us
            elif self.state is not ClientState.OPENING:
                self._advance()
        except m.ProtocolViolation as exc:
            self.fatal(exc.sqlstate, str(exc))

    def connection_lost(self, exc: Exception | None) -> None:
        if self.state is not ClientState.CLOSED:
            self._end("ended", "client disconnected" if not self.clean_exit else "")

    def pause_writing(self) -> None:
        if self.upstream is not None and self.upstream.transport is not None:
            self.upstream.transport.pause_reading()

    def resume_writing(self) -> None:
        if self.upstream is not None and self.upstream.transport is not None:
            self.upstream.transport.resume_reading()

    # --- startup -------------------------------------------------------------

    def _advance(self) -> None:
        while self.state not in (ClientState.OPENING, ClientState.RELAY, ClientState.CLOSED):
            read = self._read_startup_packet if self.state is ClientState.STARTUP else self._read_auth_message
            if not read():
                return

    def _read_startup_packet(self) -> bool:
        if len(self.buffer) < 4:
            return False
        length = _LENGTH.unpack_from(self.buffer, 0)[0]
        if length < 8 or length > m.MAX_STARTUP_PACKET:
            raise m.ProtocolViolation(f"invalid length of startup packet ({length})")
        if len(self.buffer) < length:
            return False
        packet = m.parse_startup_packet(bytes(self.buffer[4:length]))
        del self.buffer[:length]
        if packet.code == m.SSL_REQUEST_CODE:
            self._on_ssl_request()
        elif packet.code == m.GSSENC_REQUEST_CODE:
            self.transport.write(b"N")  # GSSAPI encryption is not offered
        elif packet.code == m.CANCEL_REQUEST_CODE:
            self._on_cancel_request(packet)
        elif packet.code >> 16 == 3:
            self._on_startup(packet)
        else:
            major, minor = packet.code >> 16, packet.code & 0xFFFF
            raise m.ProtocolViolation(f"unsupported frontend protocol {major}.{minor}: server supports 3.0")
        return True

    def _on_ssl_request(self) -> None:
        if self.tls or self.gateway.config.ssl_context is None:
            self.transport.write(b"N")
            return
        if self.buffer:
            # Bytes sent before the handshake would be read as if encrypted (CVE-2021-23214).
            raise m.ProtocolViolation("received unencrypted data after SSL request")
        self.transport.write(b"S")
        self._hold(self._start_tls())

    async def _start_tls(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            self.transport = await loop.start_tls(
                self.transport, self, self.gateway.config.ssl_context, server_side=True
            )
        except (OSError, ConnectionError) as exc:
            logger.info("TLS handshake with %s failed: %s", self.peer, exc)
            self._end("ended", "tls handshake failed")
            return
        self.tls = True
        self.state = ClientState.STARTUP

    def _on_cancel_request(self, packet: m.StartupPacket) -> None:
        pid, secret = packet.cancel_pid, packet.cancel_secret
        if not self.gateway.cancel(pid, secret) and self.gateway.forward_cancel is not None:
            self.gateway.forward_cancel(pid, secret)
        self.state = ClientState.CLOSED
        self.transport.close()

    def _on_startup(self, packet: m.StartupPacket) -> None:
        minor = packet.code & 0xFFFF
        unsupported = [name for name in packet.params if name.startswith("_pq_.")]
        if minor > 0 or unsupported:
            self.transport.write(m.negotiate_protocol_version(m.PROTOCOL_3_0, unsupported))
        self.params = {k: v for k, v in packet.params.items() if not k.startswith("_pq_.")}
        if not self.tls and not self.gateway.config.allow_plaintext:
            raise m.ProtocolViolation("Gatehouse requires TLS: connect with sslmode=require", "28000")
        if self.params.get("replication", "false").lower() not in ("false", "off", "no", "0"):
            raise m.ProtocolViolation("replication connections are not supported", "28000")
        if not self.params.get("user"):
            raise m.ProtocolViolation("no user name (agent) specified in startup packet", "28000")
        self.params.setdefault("database", self.params["user"])
        self._hold(self._look_up_login())

    async def _look_up_login(self) -> None:
        user, database = self.params["user"], self.params["database"]
        self.login = await self.gateway.directory.lookup(user, database)
        if self.state is ClientState.CLOSED:  # the client left during the lookup
            return
        config = self.gateway.config
        if config.client_auth == "password" and self.tls:
            self.transport.write(m.authentication(m.AUTH_CLEARTEXT))
            self.state = ClientState.AUTH_PASSWORD
            return
        verifiers = [(token, token.verifier) for token in (self.login.tokens if self.login else [])]
        decoy = hmac.digest(config.decoy_key, user.encode(), "sha256")[:16]
        binding = config.channel_binding if self.tls else None
        self.scram = ScramServerExchange(verifiers, decoy, config.scram_iterations, binding)
        self.transport.write(m.authentication_sasl(self.scram.mechanisms()))
        self.state = ClientState.AUTH_SASL_INITIAL

    # --- authentication --------------------------------------------------------

    def _read_auth_message(self) -> bool:
        if len(self.buffer) < 5:
            return False
        kind, length = _HEADER.unpack_from(self.buffer, 0)
        if kind != b"p" or length < 4 or length > m.MAX_STARTUP_PACKET:
            raise m.ProtocolViolation("expected a password or SASL response")
        if len(self.buffer) < length + 1:
            return False
        payload = bytes(self.buffer[5 : length + 1])
        del self.buffer[: length + 1]
        try:
            if self.state is ClientState.AUTH_SASL_INITIAL:
                self._on_sasl_initial(payload)
            elif self.state is ClientState.AUTH_SASL_RESPONSE:
                self._on_sasl_response(payload)
            else:
                self._on_password(payload)
        except ScramError as exc:
            self._auth_failed(str(exc))
        return True

    def _on_sasl_initial(self, payload: bytes) -> None:
        mechanism, pos = m.read_cstring(payload, 0)
        length, pos = m.read_int32(payload, pos)
        if length < 0 or pos + length != len(payload):
            raise ScramError("malformed SASLInitialResponse")
        server_first = self.scram.handle_first(mechanism, payload[pos:])
        self.transport.write(m.authentication(m.AUTH_SASL_CONTINUE, server_first))
        self.state = ClientState.AUTH_SASL_RESPONSE

    def _on_sasl_response(self, payload: bytes) -> None:
        token, server_final = self.scram.handle_final(payload)
        self.transport.write(m.authentication(m.AUTH_SASL_FINAL, server_final))
        self._authenticated(token)

    def _on_password(self, payload: bytes) -> None:
        password, _ = m.read_cstring(payload, 0)
        digest = hashlib.sha256(password.encode()).hexdigest()
        for token in self.login.tokens if self.login else []:
            if hmac.compare_digest(digest, token.token_hash):
                self._authenticated(token)
                return
        raise ScramError("password authentication failed")

    def _auth_failed(self, reason: str) -> None:
        user = self.params.get("user", "")
        logger.warning("login failed for agent %r from %s: %s", user, self.peer, reason)
        self.fatal("28P01", f'password authentication failed for user "{user}"')

    def _authenticated(self, token) -> None:
        self.transport.write(m.authentication(m.AUTH_OK))
        if not self.login.granted:
            database, user = self.params["database"], self.params["user"]
            logger.warning("agent %r from %s asked for unknown or forbidden %r", user, self.peer, database)
            self.fatal("3D000", f'connection "{database}" does not exist or agent "{user}" may not use it')
            return
        self._hold(self._open(token))

    async def _open(self, token) -> None:
        target = self.gateway.directory.target_for(self.login)
        forwarded = {k: v for k, v in self.params.items() if k not in GATEWAY_PARAMS}
        try:
            self.upstream = await self.gateway.pool.acquire(target, forwarded)
        except UpstreamError as exc:
            logger.warning("session for %r from %s: %s %s", self.params["user"], self.peer, exc, exc.detail)
            self.fatal(exc.sqlstate, str(exc))
            return
        if self.state is ClientState.CLOSED:  # the client left while we connected
            self.gateway.pool.release(self.upstream, reusable=True)
            return
        session = await self.gateway.directory.open_session(
            self.login, token, self.peer, self.params.get("application_name", "")
        )
        if self.state is ClientState.CLOSED:
            self.gateway.directory.close_session(session, "ended", "client disconnected", {})
            return
        self.session = session
        self.tracker = StatementTracker(self.session.record, target.max_rows, target.max_bytes)
        policy = await self._load_policy()
        if self.state is ClientState.CLOSED:
            return
        self.tracker.set_policy(policy)
        self._start_relay()

    async def _load_policy(self):
        """The session's policy, with the catalog names its masking rules need from the upstream."""
        policy = self.gateway.directory.policy_for(self.login)
        if policy is not None and policy.needs_catalog:
            try:
                policy.use_catalog(await self.gateway.catalog(self.upstream))
            except UpstreamError as exc:
                logger.warning("session for %r from %s: %s %s", self.params["user"], self.peer, exc, exc.detail)
                self.fatal(exc.sqlstate, "Gatehouse could not load the session's masking rules")
        return policy

    @property
    def policy(self):
        return self.tracker.policy if self.tracker is not None else None

    def set_policy(self, policy) -> None:
        """Apply a changed policy to this live session from its next message on."""
        if self.tracker is not None:
            self.tracker.set_policy(policy)

    def _start_relay(self) -> None:
        self.login_timer.cancel()
        self.backend_key = self.gateway.register(self)
        greeting = b"".join(m.parameter_status(k, v) for k, v in self.upstream.parameters.items())
        greeting += m.backend_key_data(*self.backend_key)
        greeting += m.ready_for_query(self.upstream.transaction_status)
        self.transport.write(greeting)
        self.bytes_out += len(greeting)
        self.upstream.attach(self)
        self.state = ClientState.RELAY
        if self.buffer:
            self._relay_from_client(b"")

    def _hold(self, work) -> None:
        """Run async session-setup work while input is held; a failure ends the session."""
        self.state = ClientState.OPENING
        self.transport.pause_reading()
        task = asyncio.ensure_future(work)
        task.add_done_callback(self._held_work_done)

    def _held_work_done(self, task: asyncio.Task) -> None:
        if task.cancelled():
            return
        exc = task.exception()
        if exc is not None and self.state is not ClientState.CLOSED:
            logger.error("session setup for %s failed", self.peer, exc_info=exc)
            self.fatal("58000", "Gatehouse could not open the session; see the gateway log")
            return
        if self.state is ClientState.CLOSED:
            return
        self.transport.resume_reading()
        if self.buffer and self.state is not ClientState.OPENING:
            self.data_received(b"")

    # --- relay ---------------------------------------------------------------

    def _relay_from_client(self, data: bytes) -> None:
        if self.buffer:
            data = _join(self.buffer, data)
        send, framed, stop = self.tracker.relay_from_client(data, self.gateway.config.max_client_message)
        self._send_upstream(send)
        if stop is None:
            if framed < len(data):
                self.buffer += data[framed:]
            return
        kind, payload, verdict = stop
        if verdict is None:  # a Terminate: what followed it is dropped, as the server would
            self.clean_exit = True
            self._end("ended", "")
            return
        self.buffer += data[framed:]
        self._hold_for_review(kind, payload, verdict)

    def _send_upstream(self, data: bytes) -> None:
        if data:
            self.upstream.transport.write(data)
            self.bytes_in += len(data)

    # --- review holds --------------------------------------------------------

    def _hold_for_review(self, kind: bytes, payload: bytes, verdict) -> None:
        """Send nothing of this statement, or after it, until a reviewer decides."""
        self.state = ClientState.HELD
        self.transport.pause_reading()
        shown = replace(verdict, statement=self.tracker.recorded_text(verdict.statement))  # reviewers see it masked
        self.review = asyncio.ensure_future(self.gateway.directory.review(self.session, shown))
        self.review.add_done_callback(lambda task: self._review_done(task, kind, payload, verdict))

    def _review_done(self, task: asyncio.Task, kind: bytes, payload: bytes, held) -> None:
        self.review = None
        if self.state is not ClientState.HELD:
            return  # the session ended while it waited
        if task.cancelled():
            decision = replace(held, action="deny", message="canceled by the client while it waited for review")
        elif task.exception() is not None:
            logger.error("review for %s failed", self.peer, exc_info=task.exception())
            decision = replace(held, action="deny", message="the review could not be completed; denied")
        else:
            decision = task.result()
        tracker = self.tracker
        if decision.action == "allow":
            self._send_upstream(tracker.allow(kind, payload, decision) or m.message(kind, payload))
        else:
            self._send_upstream(tracker.deny(kind, payload, decision))
        self.state = ClientState.RELAY
        self.transport.resume_reading()
        try:
            self._relay_from_client(b"")
        except m.ProtocolViolation as exc:
            self.fatal(exc.sqlstate, str(exc))

    def cancel_review(self) -> bool:
        """A CancelRequest for a held statement withdraws its review; False if nothing is held."""
        if self.review is None:
            return False
        self.review.cancel()
        return True

    # --- server → client -----------------------------------------------------

    def from_upstream(self, data: bytes) -> None:
        """Relay upstream bytes; the tracker frames them and may replace a message."""
        leftover = self.upstream.buffer
        if leftover:
            data = _join(leftover, data)
        try:
            forward, framed = self.tracker.relay_from_server(data)
        except m.ProtocolViolation as exc:
            self.fatal("08P01", str(exc))
            return
        except MaskingFailed as exc:
            logger.error("session for %r from %s: %s", self.params.get("user"), self.peer, exc)
            self._forward(exc.forward)
            self.fatal("XX000", "Gatehouse could not mask a result, so it ended the session")
            return
        self._forward(forward)
        if framed < len(data):
            leftover += data[framed:]

    def _forward(self, data: bytes) -> None:
        if data:
            self.transport.write(data)
            self.bytes_out += len(data)

    def upstream_lost(self) -> None:
        self.upstream = None
        self.fatal("08006", "the upstream server closed the connection")

    # --- ending ----------------------------------------------------------------

    def fatal(self, sqlstate: str, text: str) -> None:
        """Send a FATAL error and close the session."""
        if self.state is ClientState.CLOSED:
            return
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(m.fatal(sqlstate, text))
        self._end("ended", text)

    def terminate(self, reason: str) -> None:
        """End the session from the gateway's side (a reviewer, or shutdown)."""
        if self.state is ClientState.CLOSED:
            return
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(m.fatal("57P01", f"terminating connection: {reason}"))
        self._end("terminated", reason)

    def _end(self, status: str, reason: str) -> None:
        self.state = ClientState.CLOSED
        self.login_timer.cancel()
        if self.review is not None:
            self.review.cancel()  # withdraws the review
        if self.backend_key is not None:
            self.gateway.unregister(self.backend_key[0])
        self._release_upstream()
        if self.session is not None:
            self.tracker.close(reason or "session ended")
            counters = {
                "statements": self.tracker.statement_count,
                "errors": self.tracker.error_count,
                "bytes_from_client": self.bytes_in,
                "bytes_to_client": self.bytes_out,
            }
            self.gateway.directory.close_session(self.session, status, reason, counters)
            self.session = None
        if self.transport is not None:
            self.transport.close()

    def _release_upstream(self) -> None:
        upstream, self.upstream = self.upstream, None
        if upstream is None:
            return
        busy = self.tracker is not None and bool(self.tracker.owed)
        if busy:
            # The server would run an abandoned query to its end: stop it.
            self.gateway.cancel_backend(upstream)
        idle = self.tracker is not None and not busy and self.tracker.transaction_status == b"I"
        self.gateway.pool.release(upstream, reusable=idle and not upstream.buffer)
