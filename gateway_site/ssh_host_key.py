"""The SSH listener's host key: made once, on the first start, unless one is configured."""

import logging
import os
from pathlib import Path

import asyncssh
from django.conf import settings

logger = logging.getLogger(__name__)


def ensure_ssh_host_key() -> Path:
    """The host key file (GATEHOUSE_SSH_HOST_KEY_FILE), generated as ed25519 with mode 0600 if missing."""
    path = Path(settings.GATEHOUSE_SSH_HOST_KEY_FILE)
    if path.exists():
        return path
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    key = asyncssh.generate_private_key("ssh-ed25519", comment="gatehouse")
    temporary = path.with_name(f".{path.name}.{os.getpid()}")
    with open(os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "wb") as handle:
        handle.write(key.export_private_key("openssh"))
    try:
        os.link(temporary, path)  # fails if another process made it first; theirs wins
    except FileExistsError:
        pass
    finally:
        temporary.unlink()
    logger.info("made the SSH host key %s (%s)", path, key.get_fingerprint("sha256"))
    return path
