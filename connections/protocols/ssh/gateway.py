"""A node's SSH front door: the listener and the map of live agent connections."""

import asyncio
import logging
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import asyncssh

from .client_connection import ClientConnection
from .targets import SshLogin, SshTarget

logger = logging.getLogger(__name__)

SHUTDOWN_WAIT_SECONDS = 5.0
# What agents may encrypt with. The client picks, in its own order of preference: OpenSSH puts
# ChaCha20-Poly1305 first, which costs asyncssh about twice the CPU of AES (AES-NI), so it is left
# out by default. AES-CTR stays for clients without GCM (paramiko).
DEFAULT_CIPHERS = (
    "aes128-gcm@openssh.com",
    "aes256-gcm@openssh.com",
    "aes128-ctr",
    "aes192-ctr",
    "aes256-ctr",
)


class SessionHandle(Protocol):
    """What the directory returns for an open session: its recording's id and sink."""

    public_id: str

    def record(self, kind: str, data: object) -> None: ...


class SshDirectory(Protocol):
    """The engine's only window on agents, connections, policies and recordings."""

    async def login_by_key(self, connection: str, public_key: str) -> SshLogin | None: ...

    async def login_by_token(self, connection: str, token: str) -> SshLogin | None: ...

    def target_for(self, login: SshLogin) -> SshTarget: ...

    def policy_for(self, login: SshLogin) -> object | None:
        """The session's policy (see connections.policy.ssh_policy.SshSessionPolicy), or None for none."""

    async def open_session(self, login: SshLogin, client_addr: str, client_version: str) -> SessionHandle: ...

    def close_session(self, handle: SessionHandle, status: str, reason: str, counters: dict) -> None: ...

    async def review(self, handle: SessionHandle, verdict) -> object:
        """Hold a command for review; returns the final verdict (action "allow" or "deny")."""


@dataclass(frozen=True)
class SshGatewayConfig:
    """Listener behaviour; built from Django settings by the glue."""

    host_key_file: Path
    login_timeout: float = 60
    connect_timeout: float = 15
    keepalive_seconds: float = 30
    max_auth_attempts: int = 6
    record_max_bytes: int = 100 << 20  # terminal data recorded per session; the rest is marked truncated
    ciphers: tuple[str, ...] = DEFAULT_CIPHERS


class SshGateway:
    """Owns the listener and the live connections, so a node can find and end one."""

    def __init__(self, config: SshGatewayConfig, directory: SshDirectory) -> None:
        self.config = config
        self.directory = directory
        self.connections: dict[str, ClientConnection] = {}  # session public id -> connection
        self.server: asyncssh.SSHAcceptor | None = None
        self.runtime_dir: Path | None = None

    async def serve(self, host: str, port: int) -> asyncssh.SSHAcceptor:
        # Private (0700): the agent sockets and X11 cookies of live connections live here.
        self.runtime_dir = Path(tempfile.mkdtemp(prefix="gatehouse-ssh-"))
        self.server = await asyncssh.create_server(
            lambda: ClientConnection(self),
            host,
            port,
            server_host_keys=[str(self.config.host_key_file)],
            server_version="Gatehouse",
            encoding=None,
            line_editor=False,
            allow_pty=True,
            # Allowed here, then narrowed by each connection to what it allows (ClientConnection._limit_forwarding).
            agent_forwarding=True,
            x11_forwarding=True,
            x11_auth_path=self.x11_auth_path,
            allow_scp=False,
            sftp_factory=None,
            kbdint_auth=False,
            login_timeout=self.config.login_timeout,
            encryption_algs=list(self.config.ciphers),
            keepalive_interval=self.config.keepalive_seconds,
            reuse_address=True,
        )
        logger.info("SSH listener on %s:%s", host, port)
        return self.server

    @property
    def x11_auth_path(self) -> str:
        """The Xauthority file of the displays the gateway holds for X11 forwarding clients."""
        return str(self.runtime_dir / "xauthority")

    def register(self, connection: ClientConnection) -> None:
        self.connections[connection.session.public_id] = connection

    def forget(self, connection: ClientConnection) -> None:
        if connection.session is not None:
            self.connections.pop(connection.session.public_id, None)

    def live_connections(self) -> list[ClientConnection]:
        return list(self.connections.values())

    def terminate_session(self, public_id: str, by: str, reason: str) -> bool:
        """End the connection recorded as `public_id` if this node holds it; the recording says who and why."""
        connection = self.connections.get(public_id)
        if connection is None:
            return False
        connection.record("terminated", {"by": by, "reason": reason})
        connection.terminate(f"terminated by {by}: {reason}")
        return True

    async def shutdown(self, reason: str) -> None:
        """Stop accepting, end every live connection, and wait (briefly) until each has closed its session."""
        if self.server is not None:
            self.server.close()
        for connection in list(self.connections.values()):
            connection.terminate(reason)
        deadline = asyncio.get_running_loop().time() + SHUTDOWN_WAIT_SECONDS
        while self.connections and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.05)
        if self.runtime_dir is not None:
            shutil.rmtree(self.runtime_dir, ignore_errors=True)
