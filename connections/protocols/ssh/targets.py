"""What the gateway's directory hands the SSH engine when an agent logs in."""

from dataclasses import dataclass, field


@dataclass(frozen=True)
class SshTarget:
    """An upstream host and how to log in to it; the key and password live only in memory.

    `known_host` is the pinned host key (`type base64`); the engine refuses an
    upstream that presents any other. `forwarding` lists the `host:port`
    destinations a client may reach with direct-tcpip (`ssh -L`); empty means none.
    """

    name: str
    host: str
    port: int
    user: str
    private_key: str | None = field(default=None, repr=False)
    password: str | None = field(default=None, repr=False)
    known_host: str = ""
    forwarding: tuple[str, ...] = ()
    record_file_content: bool = False

    def allows_forwarding_to(self, host: str, port: int) -> bool:
        """Whether direct-tcpip to host:port is on this connection's allow list ("*" allows any port)."""
        return f"{host}:{port}" in self.forwarding or f"{host}:*" in self.forwarding


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
