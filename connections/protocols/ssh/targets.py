"""What the gateway's directory hands the SSH engine when an agent logs in."""

from dataclasses import dataclass, field


@dataclass(frozen=True)
class SshTarget:
    """An upstream host and how to log in to it; the key and password live only in memory.

    `known_host` is the pinned host key (`type base64`); the engine refuses an
    upstream that presents any other. `forwarding` lists the `host:port`
    destinations a client may reach with direct-tcpip (`ssh -L`), and
    `remote_forwarding` the `host:port` addresses it may have the host listen
    on (`ssh -R`); empty means none. Agent and X11 forwarding are off unless
    their switches are on.
    """

    name: str
    host: str
    port: int
    user: str
    private_key: str | None = field(default=None, repr=False)
    password: str | None = field(default=None, repr=False)
    known_host: str = ""
    forwarding: tuple[str, ...] = ()
    remote_forwarding: tuple[str, ...] = ()
    agent_forwarding: bool = False
    x11_forwarding: bool = False
    record_file_content: bool = False

    def allows_forwarding_to(self, host: str, port: int) -> bool:
        """Whether direct-tcpip to host:port is on this connection's allow list ("*" allows any port)."""
        return _listed(self.forwarding, host, port)

    def allows_listening_on(self, host: str, port: int) -> bool:
        """Whether the host may listen on host:port for the client (`ssh -R`; port 0 needs "host:*")."""
        return _listed(self.remote_forwarding, host, port)


def _listed(allowed: tuple[str, ...], host: str, port: int) -> bool:
    return f"{host}:{port}" in allowed or f"{host}:*" in allowed


@dataclass(frozen=True)
class SshLogin:
    """An agent that proved who it is, and whether it may use the connection it asked for.

    `granted` is False both for an unknown connection and for a forbidden one,
    so the engine cannot tell them apart either. `context` is opaque to the
    engine and goes back to the directory.
    """

    account: str
    granted: bool
    context: object = None
