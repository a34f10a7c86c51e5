"""SCRAM-SHA-256 (RFC 5802, RFC 7677) as PostgreSQL speaks it.

The server half checks a client against stored verifiers, so the gateway
never holds a token; the client half authenticates the gateway to an
upstream server. Both are plain state holders with no I/O.
"""

import base64
import hashlib
import hmac
import secrets
from dataclasses import dataclass
from functools import lru_cache

MECHANISM = "SCRAM-SHA-256"
MECHANISM_PLUS = "SCRAM-SHA-256-PLUS"
NONCE_BYTES = 18


class ScramError(Exception):
    """The exchange failed: malformed message or wrong proof."""


@dataclass(frozen=True)
class ScramVerifier:
    """What a server stores for one secret: never the secret itself."""

    iterations: int
    salt: bytes
    stored_key: bytes
    server_key: bytes

    @classmethod
    def parse(cls, text: str) -> "ScramVerifier":
        """Parse PostgreSQL's `SCRAM-SHA-256$iter:salt$StoredKey:ServerKey` form."""
        try:
            mechanism, iter_salt, keys = text.split("$")
            iterations, salt = iter_salt.split(":")
            stored_key, server_key = keys.split(":")
            if mechanism != MECHANISM:
                raise ValueError(mechanism)
            return cls(int(iterations), b64decode(salt), b64decode(stored_key), b64decode(server_key))
        except ValueError as exc:
            raise ScramError(f"malformed SCRAM verifier: {exc}") from None

    def __str__(self) -> str:
        return f"{MECHANISM}${self.iterations}:{b64(self.salt)}${b64(self.stored_key)}:{b64(self.server_key)}"


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def b64decode(text: str) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except (ValueError, TypeError):
        raise ScramError("bad base64") from None


def _hmac(key: bytes, msg: bytes) -> bytes:
    return hmac.digest(key, msg, "sha256")


@lru_cache(maxsize=256)
def salted_password(password: str, salt: bytes, iterations: int) -> bytes:
    # Cached: an upstream asks the same salt and iteration count every time,
    # and PBKDF2 is the whole cost of a SCRAM login.
    return hashlib.pbkdf2_hmac("sha256", password.encode("utf-8"), salt, iterations)


def make_verifier(secret: str, salt: bytes, iterations: int) -> ScramVerifier:
    salted = salted_password(secret, salt, iterations)
    client_key = _hmac(salted, b"Client Key")
    return ScramVerifier(
        iterations=iterations,
        salt=salt,
        stored_key=hashlib.sha256(client_key).digest(),
        server_key=_hmac(salted, b"Server Key"),
    )


def parse_attributes(message: bytes) -> dict[str, str]:
    """Split `a=1,b=2` into a dict; duplicate or empty attributes are an error."""
    try:
        text = message.decode("utf-8")
    except UnicodeDecodeError:
        raise ScramError("SCRAM message is not UTF-8") from None
    attributes: dict[str, str] = {}
    for part in text.split(","):
        if len(part) < 2 or part[1] != "=" or part[0] in attributes:
            raise ScramError("malformed SCRAM message")
        attributes[part[0]] = part[2:]
    return attributes


class ScramServerExchange:
    """The server side: try every candidate verifier against one proof.

    All candidates must share one salt and iteration count, since those are
    sent before the client says which secret it holds. With no candidates,
    the exchange runs on a decoy salt and fails at the proof, so an unknown
    user looks the same as a wrong secret.
    """

    def __init__(
        self,
        verifiers: list[tuple[object, ScramVerifier]],
        decoy_salt: bytes,
        decoy_iterations: int,
        channel_binding: bytes | None = None,
    ) -> None:
        first = verifiers[0][1] if verifiers else None
        # The salt and count go out before the proof, so only verifiers that
        # share the first one's can match (older tokens under an old count cannot).
        self.candidates = [(o, v) for o, v in verifiers if (v.salt, v.iterations) == (first.salt, first.iterations)]
        self.salt = first.salt if first else decoy_salt
        self.iterations = first.iterations if first else decoy_iterations
        self.channel_binding = channel_binding
        self.client_first_bare = b""
        self.server_first = b""
        self.gs2_header = b""
        self.nonce = ""

    def mechanisms(self) -> list[str]:
        if self.channel_binding is not None:
            return [MECHANISM_PLUS, MECHANISM]
        return [MECHANISM]

    def handle_first(self, mechanism: str, client_first: bytes) -> bytes:
        if mechanism not in self.mechanisms():
            raise ScramError(f"unsupported SASL mechanism {mechanism!r}")
        self.gs2_header, self.client_first_bare = self._split_gs2(mechanism, client_first)
        attrs = parse_attributes(self.client_first_bare)
        client_nonce = attrs.get("r", "")
        if not client_nonce or "m" in attrs:
            raise ScramError("client-first-message lacks a nonce")
        self.nonce = client_nonce + b64(secrets.token_bytes(NONCE_BYTES))
        self.server_first = f"r={self.nonce},s={b64(self.salt)},i={self.iterations}".encode("ascii")
        return self.server_first

    def _split_gs2(self, mechanism: str, client_first: bytes) -> tuple[bytes, bytes]:
        parts = client_first.split(b",", 2)
        if len(parts) != 3:
            raise ScramError("malformed client-first-message")
        flag, authzid, bare = parts
        if authzid:
            raise ScramError("authorization identities are not supported")
        if mechanism == MECHANISM_PLUS:
            if flag != b"p=tls-server-end-point":
                raise ScramError("unsupported channel binding type")
        elif flag == b"y":
            # The client could bind but believes we cannot; true only off TLS.
            if self.channel_binding is not None:
                raise ScramError("channel binding downgrade detected")
        elif flag != b"n":
            raise ScramError("malformed GS2 header")
        return flag + b"," + authzid + b",", bare

    def handle_final(self, client_final: bytes) -> tuple[object, bytes]:
        """Check the proof; return the matching candidate and the server-final message."""
        attrs = parse_attributes(client_final)
        without_proof, sep, _ = client_final.rpartition(b",p=")
        if not sep or attrs.get("r") != self.nonce or "p" not in attrs:
            raise ScramError("malformed client-final-message")
        if b64decode(attrs.get("c", "")) != self._expected_binding():
            raise ScramError("channel binding mismatch")
        proof = b64decode(attrs["p"])
        auth_message = self.client_first_bare + b"," + self.server_first + b"," + without_proof
        for owner, verifier in self.candidates:
            signature = _hmac(verifier.stored_key, auth_message)
            if len(proof) != len(signature):
                break
            client_key = bytes(a ^ b for a, b in zip(proof, signature, strict=True))
            if hmac.compare_digest(hashlib.sha256(client_key).digest(), verifier.stored_key):
                server_signature = _hmac(verifier.server_key, auth_message)
                return owner, b"v=" + b64(server_signature).encode("ascii")
        raise ScramError("password authentication failed")

    def _expected_binding(self) -> bytes:
        if self.gs2_header.startswith(b"p="):
            return self.gs2_header + (self.channel_binding or b"")
        return self.gs2_header


class ScramClientExchange:
    """The client side, used to log in to an upstream PostgreSQL server."""

    def __init__(self, password: str) -> None:
        self.password = password
        self.client_nonce = b64(secrets.token_bytes(NONCE_BYTES))
        self.client_first_bare = f"n=,r={self.client_nonce}".encode("ascii")
        self.server_signature = b""

    def first_message(self) -> bytes:
        return b"n,," + self.client_first_bare

    def final_message(self, server_first: bytes) -> bytes:
        attrs = parse_attributes(server_first)
        nonce, salt, iterations = attrs.get("r", ""), attrs.get("s", ""), attrs.get("i", "")
        if not nonce.startswith(self.client_nonce) or not salt or not iterations.isdigit():
            raise ScramError("malformed server-first-message")
        salted = salted_password(self.password, b64decode(salt), int(iterations))
        without_proof = f"c=biws,r={nonce}".encode("ascii")
        auth_message = self.client_first_bare + b"," + server_first + b"," + without_proof
        client_key = _hmac(salted, b"Client Key")
        signature = _hmac(hashlib.sha256(client_key).digest(), auth_message)
        proof = bytes(a ^ b for a, b in zip(client_key, signature, strict=True))
        self.server_signature = _hmac(_hmac(salted, b"Server Key"), auth_message)
        return without_proof + b",p=" + b64(proof).encode("ascii")

    def check_server_final(self, server_final: bytes) -> None:
        attrs = parse_attributes(server_final)
        if "e" in attrs:
            raise ScramError(f"server rejected SCRAM: {attrs['e']}")
        if not hmac.compare_digest(b64decode(attrs.get("v", "")), self.server_signature):
            raise ScramError("server signature mismatch: the upstream may be an impostor")
