"""Encrypt upstream credentials at rest with a Fernet key kept in a file.

The key file is made on first use. Only the gateway's memory ever holds the
decrypted form, and no error raised here carries a plaintext.
"""

import json
import logging
import os
import tempfile
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken
from django.conf import settings

logger = logging.getLogger(__name__)


class CredentialsError(Exception):
    """The credentials cannot be encrypted or decrypted (wrong key, corrupt value or key file)."""


def encrypt_credentials(credentials: dict) -> str:
    """Encrypt a dict such as {"password": "..."} into a text token for the database."""
    if not isinstance(credentials, dict):
        raise CredentialsError("credentials must be a dict")
    payload = json.dumps(credentials, separators=(",", ":"), sort_keys=True).encode("utf-8")
    return _fernet().encrypt(payload).decode("ascii")


def decrypt_credentials(encrypted: str) -> dict:
    """Decrypt what encrypt_credentials made; raise CredentialsError on a wrong key or corrupt value."""
    try:
        payload = _fernet().decrypt(encrypted.encode("ascii"))
    except (InvalidToken, UnicodeEncodeError, AttributeError):
        raise CredentialsError(
            "cannot decrypt connection credentials: the key is wrong or the stored value is corrupt"
        ) from None
    try:
        credentials = json.loads(payload)
    except ValueError:
        raise CredentialsError("decrypted connection credentials are not valid JSON") from None
    if not isinstance(credentials, dict):
        raise CredentialsError("decrypted connection credentials are not a JSON object")
    return credentials


def _fernet() -> Fernet:
    key_file = Path(settings.GATEHOUSE_CREDENTIALS_KEY_FILE)
    key = load_or_create_key(key_file)
    try:
        return Fernet(key)
    except ValueError:
        raise CredentialsError(f"credentials key file {key_file} does not hold a valid Fernet key") from None


def load_or_create_key(key_file: Path) -> bytes:
    """Read the key file, creating it (0600, in a 0700 folder) if it does not exist yet."""
    try:
        return key_file.read_bytes().strip()
    except FileNotFoundError:
        pass
    except OSError as exc:
        raise CredentialsError(f"cannot read credentials key file {key_file}: {exc.strerror}") from None
    try:
        _create_key_file(key_file)
        return key_file.read_bytes().strip()
    except OSError as exc:
        raise CredentialsError(f"cannot create credentials key file {key_file}: {exc.strerror}") from None


def _create_key_file(key_file: Path) -> None:
    # The key is written to a private temporary file (mkstemp: O_EXCL, 0600)
    # and then hard-linked into place. link() fails if the name exists, so of
    # two processes racing here exactly one key wins, and nobody can read a
    # half-written key file.
    if not key_file.parent.exists():
        key_file.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(key_file.parent, 0o700)
    fd, temp_name = tempfile.mkstemp(dir=key_file.parent, prefix=".credentials-key-")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(Fernet.generate_key() + b"\n")
            handle.flush()
            os.fsync(handle.fileno())
        try:
            os.link(temp_name, key_file)
        except FileExistsError:
            return
        logger.info("created credentials key file %s", key_file)
    finally:
        os.unlink(temp_name)
