"""State changes for SSH: connections to hosts, their pinned host keys, and agents' login keys.

Like connections.actions, each runs in a transaction, validates its input
and raises ValidationError with a message fit for the command line.
"""

import logging

import asyncssh
from django.core.exceptions import ValidationError
from django.db import transaction

from connections.actions import validate_name, validate_port
from connections.credentials import encrypt_credentials
from connections.models import AgentKey, Connection, ServiceAccount
from connections.ssh_directory import key_fingerprint

logger = logging.getLogger(__name__)

MAX_FORWARDING_ENTRIES = 64


def normalize_public_key(line: str) -> str:
    """A public key as `type base64` (host patterns, options and comment dropped); ValidationError if it is not one."""
    parts = line.split()
    for start in range(len(parts) - 1):  # a known_hosts line may start with host patterns
        candidate = f"{parts[start]} {parts[start + 1]}"
        try:
            asyncssh.import_public_key(candidate)
        except (asyncssh.KeyImportError, ValueError):
            continue
        return candidate
    raise ValidationError(f"not an SSH public key: {line[:60]!r}")


def validate_private_key(text: str) -> str:
    """The key as given, if asyncssh can use it without a passphrase."""
    try:
        asyncssh.import_private_key(text)
    except asyncssh.KeyEncryptionError:
        raise ValidationError("the private key has a passphrase; give the gateway a key without one") from None
    except (asyncssh.KeyImportError, ValueError) as exc:
        raise ValidationError(f"not an SSH private key: {exc}") from None
    return text


def parse_forwarding(text: str) -> str:
    """`HOST:PORT,...` checked and normalized (PORT may be `*`); an empty string allows no forwarding."""
    entries = [item.strip() for item in text.split(",") if item.strip()]
    if len(entries) > MAX_FORWARDING_ENTRIES:
        raise ValidationError(f"at most {MAX_FORWARDING_ENTRIES} forwarding destinations")
    for entry in entries:
        host, sep, port = entry.rpartition(":")
        if not sep or not host or not (port == "*" or (port.isdigit() and 0 < int(port) < 65536)):
            raise ValidationError(f"forwarding destination {entry!r} is not HOST:PORT")
    return ",".join(entries)


@transaction.atomic
def do_create_ssh_connection(
    *,
    name: str,
    host: str,
    port: int,
    username: str,
    private_key: str = "",
    password: str = "",
    known_host: str = "",
    allow_forwarding: str = "",
    allow_remote_forwarding: str = "",
    allow_agent_forwarding: bool = False,
    allow_x11_forwarding: bool = False,
    record_file_content: bool = False,
    retention_days: int | None = None,
) -> Connection:
    """Register an SSH host; the key and password are stored encrypted. Raises ValidationError on bad input."""
    validate_name(name, "connection")
    validate_port(port)
    if not host.strip() or not username.strip():
        raise ValidationError("the upstream host and user must not be empty")
    if not private_key and not password:
        raise ValidationError("give the gateway a key (--key-file) or a password (--password-env) for the host")
    if retention_days is not None and retention_days < 1:
        raise ValidationError(f"retention must be at least 1 day, not {retention_days}")
    if Connection.objects.filter(name=name).exists():
        raise ValidationError(f"a connection named {name!r} already exists")
    credentials = {"private_key": validate_private_key(private_key)} if private_key else {}
    if password:
        credentials["password"] = password
    connection = Connection(
        name=name,
        kind=Connection.Kind.SSH,
        host=host.strip(),
        port=port,
        database="",
        username=username.strip(),
        encrypted_credentials=encrypt_credentials(credentials),
        tls_mode=Connection.TlsMode.DISABLE,  # SSH brings its own encryption
        known_host=normalize_public_key(known_host) if known_host else "",
        allow_forwarding=parse_forwarding(allow_forwarding),
        allow_remote_forwarding=parse_forwarding(allow_remote_forwarding),
        allow_agent_forwarding=allow_agent_forwarding,
        allow_x11_forwarding=allow_x11_forwarding,
        record_file_content=record_file_content,
    )
    if retention_days is not None:
        connection.retention_days = retention_days
    connection.save()
    logger.info("created SSH connection %s (%s@%s:%s)", name, connection.username, connection.host, port)
    return connection


@transaction.atomic
def do_pin_host_key(connection: Connection, host_key: str) -> str:
    """Trust exactly `host_key` for the connection's host from now on; returns its fingerprint."""
    if connection.kind != Connection.Kind.SSH:
        raise ValidationError(f"connection {connection.name!r} is not an SSH connection")
    connection.known_host = normalize_public_key(host_key)
    connection.save(update_fields=["known_host"])
    fingerprint = key_fingerprint(connection.known_host)
    logger.info("pinned host key %s for connection %s", fingerprint, connection.name)
    return fingerprint


@transaction.atomic
def do_add_agent_key(account: ServiceAccount, public_key: str) -> AgentKey:
    """Let `account` log in to the SSH gateway with this public key (one account per key)."""
    parts = public_key.split()
    key_line = normalize_public_key(public_key)
    comment = " ".join(parts[parts.index(key_line.split()[1]) + 1 :])[:200]
    fingerprint = key_fingerprint(key_line)
    if AgentKey.objects.filter(fingerprint=fingerprint).exists():
        raise ValidationError(f"the key {fingerprint} is registered already")
    key = AgentKey.objects.create(account=account, public_key=key_line, fingerprint=fingerprint, comment=comment)
    logger.info("added SSH key %s for agent %s", fingerprint, account.name)
    return key


@transaction.atomic
def do_remove_agent_key(account: ServiceAccount, fingerprint: str) -> int:
    """Stop `account` logging in with the key of this fingerprint; returns how many keys were removed."""
    removed, _ = AgentKey.objects.filter(account=account, fingerprint=fingerprint).delete()
    if removed:
        logger.info("removed SSH key %s of agent %s", fingerprint, account.name)
    return removed
