"""The deployment's Ed25519 key that seals recordings.

A seal signs (session id, final chain link, line count). The chain alone is
keyless, so anyone could rewrite a whole file with fresh links; the signed
seal is what makes a rewrite, or a cut tail, detectable.

The private key lives in settings.GATEHOUSE_SIGNING_KEY_FILE (PEM, mode
0600, parent directory 0700) and is made on first use.
"""

import base64
import binascii
import logging
import os
import tempfile
import threading
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from django.conf import settings

from recordings.chain import LINK_HEX_LENGTH, canonical_session_id

logger = logging.getLogger(__name__)

SEAL_PREFIX = b"gatehouse-recording-seal-v1\n"

_keys: dict[Path, Ed25519PrivateKey] = {}
_keys_lock = threading.Lock()


class SigningKeyMissing(Exception):
    """The signing key file does not exist, so no seal can be checked."""


def seal_message(session_id: object, chain_head: str, line_count: int) -> bytes:
    """The canonical bytes a seal signs."""
    head = chain_head.lower()
    if len(head) != LINK_HEX_LENGTH or any(c not in "0123456789abcdef" for c in head):
        raise ValueError("chain_head must be 64 hex digits")
    if line_count < 0:
        raise ValueError("line_count cannot be negative")
    return SEAL_PREFIX + f"{canonical_session_id(session_id)}\n{head}\n{int(line_count)}\n".encode()


def sign_seal(session_id: object, chain_head: str, line_count: int) -> str:
    """A base64 Ed25519 signature of the seal, made with the deployment key (created if absent)."""
    key = _private_key(create=True)
    return base64.b64encode(key.sign(seal_message(session_id, chain_head, line_count))).decode()


def verify_seal(session_id: object, chain_head: str, line_count: int, signature: str) -> bool:
    """Whether `signature` is the deployment key's seal of these values.

    Raises SigningKeyMissing rather than making a new key: a fresh key could
    only ever say "forged".
    """
    try:
        raw = base64.b64decode(signature, validate=True)
        message = seal_message(session_id, chain_head, line_count)
    except (binascii.Error, ValueError):
        return False
    try:
        _private_key(create=False).public_key().verify(raw, message)
    except InvalidSignature:
        return False
    return True


def _private_key(*, create: bool) -> Ed25519PrivateKey:
    path = Path(settings.GATEHOUSE_SIGNING_KEY_FILE)
    with _keys_lock:
        key = _keys.get(path)
        if key is None:
            key = _load_or_create(path, create=create)
            _keys[path] = key
        return key


def _load_or_create(path: Path, *, create: bool) -> Ed25519PrivateKey:
    if not path.exists():
        if not create:
            raise SigningKeyMissing(f"recording signing key {path} does not exist")
        _create_key_file(path)
    key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise ValueError(f"{path} does not hold an Ed25519 private key")
    return key


def _create_key_file(path: Path) -> None:
    """Write a new key so that it appears whole and at most once.

    The PEM goes to a temporary file (created with O_EXCL, mode 0600), then
    is hard-linked into place: link() fails if the name exists, so when two
    processes race, one key wins and the other process reads it, never a
    half-written file.
    """
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    pem = Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    fd, temp_name = tempfile.mkstemp(dir=path.parent, prefix=".signing-key-")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(pem)
            handle.flush()
            os.fsync(handle.fileno())
        os.link(temp_name, path)
        logger.info("Created the recording signing key %s", path)
    except FileExistsError:
        pass  # another process made it first; use theirs
    finally:
        os.unlink(temp_name)
