"""Service-account tokens: `gh_<prefix>_<secret>`, stored only as a hash and a SCRAM verifier."""

import base64
import hashlib
import secrets
import string

from django.conf import settings

from connections.models import ServiceAccount
from connections.protocols.pgwire.scram import make_verifier

SCHEME = "gh"
PREFIX_LENGTH = 8
PREFIX_ALPHABET = string.ascii_lowercase + string.digits
SALT_BYTES = 16


def generate_token() -> tuple[str, str]:
    """Return a new (token, prefix); the prefix is the token's public id."""
    prefix = "".join(secrets.choice(PREFIX_ALPHABET) for _ in range(PREFIX_LENGTH))
    return f"{SCHEME}_{prefix}_{secrets.token_urlsafe(32)}", prefix


def hash_token(token: str) -> str:
    """SHA-256 hex digest of the token; what a cleartext login is checked against."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def new_scram_salt() -> str:
    """A fresh SCRAM salt for an account, base64 of 16 random bytes."""
    return base64.b64encode(secrets.token_bytes(SALT_BYTES)).decode("ascii")


def scram_verifier_for(token: str, account: ServiceAccount) -> str:
    """The token's SCRAM-SHA-256 verifier under the account's shared salt, in PostgreSQL's text form."""
    salt = base64.b64decode(account.scram_salt)
    return str(make_verifier(token, salt, settings.GATEHOUSE_TOKEN_SCRAM_ITERATIONS))
