"""Opening the gateway's own SSH connection to an upstream host, with its host key pinned.

The gateway logs in with the connection's stored key or password, decrypted
only in memory, and trusts exactly one host key: the one pinned for the
connection (`connections trust-host`). Nothing of the gateway's own user
(~/.ssh/config, keys, agent, known_hosts) is consulted.
"""

import asyncio
import logging

import asyncssh

from .targets import SshTarget

logger = logging.getLogger(__name__)


# AES-GCM first: with AES-NI it costs the relay far less CPU in asyncssh than ChaCha20-Poly1305
# (bench/ssh_bench.py: about 1.7 times the throughput on the development machine).
UPSTREAM_CIPHERS = (
    "aes128-gcm@openssh.com",
    "aes256-gcm@openssh.com",
    "chacha20-poly1305@openssh.com",
    "aes128-ctr",
    "aes256-ctr",
)


class UpstreamRefused(Exception):
    """The upstream connection could not be made; the message is safe to show the client."""


async def connect_upstream(
    target: SshTarget, connect_timeout: float, keepalive: float, agent_path: str | None = None
) -> asyncssh.SSHClientConnection:
    """A logged-in connection to target; raises UpstreamRefused with a reason the client and the admin can act on.

    With `agent_path`, the host's agent requests are forwarded to that socket (see agent_forwarding).
    """
    if not target.known_host:
        raise UpstreamRefused(
            f"connection {target.name!r} has no pinned host key; "
            f"an admin must run `connections trust-host {target.name}`"
        )
    pinned = asyncssh.import_public_key(target.known_host)
    keys = [asyncssh.import_private_key(target.private_key)] if target.private_key else []
    try:
        return await asyncssh.connect(
            target.host,
            target.port,
            username=target.user,
            client_keys=keys,
            password=target.password,
            known_hosts=([pinned], [], []),
            agent_path=None,  # the gateway logs in with the stored key only
            agent_forwarding=agent_path or False,
            config=[],
            preferred_auth="publickey,password",
            connect_timeout=connect_timeout,
            keepalive_interval=keepalive,
            encoding=None,
            encryption_algs=UPSTREAM_CIPHERS,
        )
    except asyncssh.HostKeyNotVerifiable:
        expected = pinned.get_fingerprint("sha256")
        logger.error(
            "upstream %s (%s:%s) presented a host key other than the pinned %s; refusing it",
            target.name,
            target.host,
            target.port,
            expected,
        )
        raise UpstreamRefused(
            f"the host key of {target.name!r} does not match the pinned key {expected}; "
            "refusing to connect (an admin must check the host and run `connections trust-host` again)"
        ) from None
    except asyncssh.PermissionDenied:
        raise UpstreamRefused(f"the upstream host of {target.name!r} refused the gateway's credentials") from None
    except (OSError, TimeoutError, asyncssh.Error) as exc:
        reason = getattr(exc, "reason", "") or str(exc) or type(exc).__name__
        raise UpstreamRefused(f"the upstream host of {target.name!r} is unreachable: {reason}") from None


async def fetch_host_key(host: str, port: int, timeout: float = 10.0) -> str:
    """The host's public key as `type base64`, for pinning (trust on first use by an admin)."""
    key = await asyncio.wait_for(asyncssh.get_server_host_key(host, port, config=[]), timeout)
    if key is None:
        raise UpstreamRefused(f"{host}:{port} presented no host key")
    kind, blob, *_ = key.export_public_key("openssh").decode().split()
    return f"{kind} {blob}"
