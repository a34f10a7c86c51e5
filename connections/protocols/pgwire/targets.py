"""What the gateway's directory hands the PostgreSQL engine when a client logs in."""

import hashlib
from dataclasses import dataclass, field

from .scram import ScramVerifier


@dataclass(frozen=True)
class PgTarget:
    """An upstream server and how to log in to it; the password lives only in memory."""

    name: str
    host: str
    port: int
    database: str
    user: str
    password: str | None = field(repr=False)
    tls_mode: str = "require"
    ca_pem: str = field(default="", repr=False)
    max_rows: int = 1000
    max_bytes: int = 1 << 20

    def pool_key(self) -> tuple:
        secret = hashlib.sha256((self.password or "").encode()).hexdigest()
        ca = hashlib.sha256(self.ca_pem.encode()).hexdigest()
        return (self.name, self.host, self.port, self.database, self.user, secret, self.tls_mode, ca)


@dataclass(frozen=True)
class PgToken:
    """One of the agent's live tokens, as hashes only."""

    id: int
    verifier: ScramVerifier
    token_hash: str


@dataclass(frozen=True)
class PgLogin:
    """An agent's tokens, and whether it may use the connection it asked for.

    `granted` is False both for an unknown connection and for a forbidden one,
    so the engine cannot tell them apart either. `context` is opaque to the
    engine and goes back to the directory, which turns it into the target
    (decrypting the credential) only once the client has proved its token.
    """

    account: str
    tokens: list[PgToken]
    granted: bool
    context: object = None
