"""A node's PostgreSQL front door: the listener, live sessions and cancel keys."""

import asyncio
import hmac
import logging
import secrets
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from connections.policy.session_policy import CATALOG_QUERY

from . import messages as m
from .client import PgClientSession
from .pool import UpstreamPool
from .targets import PgLogin, PgTarget, PgToken
from .upstream import PgUpstream

logger = logging.getLogger(__name__)

# How long sessions share one read of an upstream's catalog; a table made since is masked by column name alone.
CATALOG_SECONDS = 30.0


class SessionHandle(Protocol):
    """What the directory returns for an open session: its recording's id and sink."""

    public_id: str

    def record(self, kind: str, data: object) -> None: ...


class PgDirectory(Protocol):
    """The engine's only window on accounts, connections and recordings."""

    async def lookup(self, agent: str, connection: str) -> PgLogin | None: ...

    def target_for(self, login: PgLogin) -> PgTarget: ...

    async def open_session(
        self, login: PgLogin, token: PgToken, client_addr: str, application_name: str
    ) -> SessionHandle: ...

    def close_session(self, handle: SessionHandle, status: str, reason: str, counters: dict) -> None: ...

    def policy_for(self, login: PgLogin) -> object | None:
        """The session's policy object (see tracker.StatementTracker), or None for none."""

    async def review(self, handle: SessionHandle, verdict) -> object:
        """Hold a statement for review; returns the final verdict (action "allow" or "deny")."""


@dataclass(frozen=True)
class PgGatewayConfig:
    """Listener behaviour; built from Django settings by the glue."""

    ssl_context: ssl.SSLContext | None
    channel_binding: bytes | None  # tls-server-end-point hash of our certificate
    decoy_key: bytes  # derives a stable fake SCRAM salt for unknown agents
    scram_iterations: int  # what token verifiers use, so unknown agents look the same
    allow_plaintext: bool = False
    client_auth: str = "scram"  # or "password": cleartext, accepted inside TLS only
    pool_size: int = 4
    pool_idle_seconds: float = 60
    connect_timeout: float = 10
    # Bounds what one client message may make us buffer; PostgreSQL's own is 1 GiB.
    max_client_message: int = 256 << 20
    login_timeout: float = 60  # from the first byte to a ready session


class PgGateway:
    """Owns the upstream pool and the map from our cancel keys to sessions."""

    def __init__(self, config: PgGatewayConfig, directory: PgDirectory) -> None:
        self.config = config
        self.directory = directory
        # Set by the node: passes a cancel request for a session we do not hold to the other nodes.
        self.forward_cancel: Callable[[int, int], None] | None = None
        self.pool = UpstreamPool(config.pool_size, config.pool_idle_seconds, config.connect_timeout)
        self.sessions: dict[int, tuple[int, PgClientSession]] = {}
        self.server: asyncio.Server | None = None
        self.catalogs: dict[tuple, tuple[float, list]] = {}  # pool key -> (expiry, CATALOG_QUERY rows)

    async def serve(self, host: str, port: int, shared: bool = False) -> asyncio.Server:
        """Listen; `shared` lets the node's other worker processes bind the same port."""
        loop = asyncio.get_running_loop()
        self.server = await loop.create_server(
            lambda: PgClientSession(self), host, port, reuse_address=True, reuse_port=shared
        )
        logger.info("PostgreSQL listener on %s:%s", host, port)
        return self.server

    def register(self, session: PgClientSession) -> tuple[int, int]:
        """Give a session its own BackendKeyData, unrelated to the upstream's."""
        while True:
            pid = secrets.randbelow(2**31 - 2) + 1
            if pid not in self.sessions:
                break
        secret = secrets.randbits(32)
        self.sessions[pid] = (secret, session)
        return pid, secret

    def unregister(self, pid: int) -> None:
        self.sessions.pop(pid, None)

    def cancel(self, pid: int, secret: int) -> bool:
        """Map a CancelRequest to the upstream backend serving that session, if it is ours.

        Returns False when no session of this node has that key; the caller may
        then pass the request on to the other nodes.
        """
        entry = self.sessions.get(pid)
        if entry is None or not hmac.compare_digest(entry[0].to_bytes(4, "big"), secret.to_bytes(4, "big")):
            return False
        session = entry[1]
        if not session.cancel_review() and session.upstream is not None:
            self.cancel_backend(session.upstream)
        return True

    async def catalog(self, upstream: PgUpstream) -> list:
        """The upstream database's table and column names for masking, shared by sessions for a while."""
        key = upstream.target.pool_key()
        now = asyncio.get_running_loop().time()
        cached = self.catalogs.get(key)
        if cached is not None and cached[0] > now:
            return cached[1]
        rows = await upstream.query_rows(CATALOG_QUERY)
        self.catalogs[key] = (now + CATALOG_SECONDS, rows)
        return rows

    @staticmethod
    def cancel_backend(upstream: PgUpstream) -> None:
        """Ask the upstream server to cancel what `upstream`'s backend is running."""
        target = upstream.target
        asyncio.ensure_future(send_cancel(target.host, target.port, upstream.backend_pid, upstream.backend_secret))

    def live_sessions(self) -> list[PgClientSession]:
        return [session for _secret, session in self.sessions.values()]

    def terminate_session(self, public_id: str, by: str, reason: str) -> bool:
        """End the session recorded as `public_id` if this node holds it; the recording says who and why."""
        for client in self.live_sessions():
            handle = client.session
            if handle is not None and handle.public_id == public_id:
                handle.record("terminated", {"by": by, "reason": reason})
                client.terminate(f"terminated by {by}: {reason}")
                return True
        return False

    async def shutdown(self, reason: str) -> None:
        """Stop accepting, end every live session, close pooled connections."""
        if self.server is not None:
            self.server.close()
        for session in self.live_sessions():
            session.terminate(reason)
        self.pool.close()


async def send_cancel(host: str, port: int, pid: int, secret: int) -> None:
    """Deliver a CancelRequest to an upstream server, as libpq does."""
    try:
        async with asyncio.timeout(10):
            reader, writer = await asyncio.open_connection(host, port)
            writer.write(m.cancel_request(pid, secret))
            await writer.drain()
            await reader.read()  # the server closes once it has read the request
            writer.close()
    except (OSError, TimeoutError) as exc:
        logger.warning("could not deliver a cancel request to %s:%s: %s", host, port, exc)
