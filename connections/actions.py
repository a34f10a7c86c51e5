"""State changes of connections, service accounts and tokens.

Every mutation goes through a `do_*` function here, each in a transaction,
so the CLI and the admin share one path and one set of checks.
"""

import logging
from datetime import timedelta

from cryptography import x509
from django.contrib.auth import get_user_model
from django.contrib.contenttypes.models import ContentType
from django.core.exceptions import ValidationError
from django.core.validators import validate_slug
from django.db import transaction
from django.utils import timezone
from guardian.models import GroupObjectPermission, UserObjectPermission
from guardian.shortcuts import assign_perm

from connections.credentials import CredentialsError, decrypt_credentials, encrypt_credentials
from connections.models import AccessToken, Connection, ServiceAccount
from connections.tokens import generate_token, hash_token, new_scram_salt, scram_verifier_for

logger = logging.getLogger(__name__)

AGENT_USERNAME_PREFIX = "agent:"
NAME_MAX_LENGTH = 63


def validate_name(name: str, what: str) -> None:
    """A connection or agent name: a slug of at most 63 characters (it goes in dbname= / user=)."""
    try:
        validate_slug(name)
    except ValidationError:
        raise ValidationError(
            f"{what} name {name!r} is not a slug: use letters, digits, hyphens and underscores"
        ) from None
    if len(name) > NAME_MAX_LENGTH:
        raise ValidationError(f"{what} name {name!r} is longer than {NAME_MAX_LENGTH} characters")


def validate_port(port: int) -> None:
    """A TCP port number, 1 to 65535."""
    if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
        raise ValidationError(f"port {port!r} is out of range: use a number from 1 to 65535")


def validate_ca_pem(pem: str) -> None:
    """Empty, or one or more PEM certificates."""
    if not pem:
        return
    try:
        x509.load_pem_x509_certificates(pem.encode("utf-8"))
    except ValueError:
        raise ValidationError("the TLS CA bundle is not a PEM certificate") from None


def _validate_connection(*, name, kind, host, port, database, username, password, tls_mode) -> None:
    validate_name(name, "connection")
    if kind not in Connection.Kind.values:
        raise ValidationError(f"kind {kind!r} is not supported; use one of: {', '.join(Connection.Kind.values)}")
    validate_port(port)
    if tls_mode not in Connection.TlsMode.values:
        choices = ", ".join(Connection.TlsMode.values)
        raise ValidationError(f"TLS mode {tls_mode!r} is unknown; use one of: {choices}")
    for label, value in (("host", host), ("database", database), ("user", username)):
        if not value or not value.strip():
            raise ValidationError(f"the upstream {label} must not be empty")
    if not password:
        raise ValidationError("the upstream password must not be empty")


@transaction.atomic
def do_create_connection(
    *,
    name: str,
    kind: str,
    host: str,
    port: int,
    database: str,
    username: str,
    password: str,
    tls_mode: str,
    tls_ca_pem: str = "",
    retention_days: int | None = None,
) -> Connection:
    """Register an upstream; the password is stored encrypted. Raises ValidationError on bad input."""
    _validate_connection(
        name=name,
        kind=kind,
        host=host,
        port=port,
        database=database,
        username=username,
        password=password,
        tls_mode=tls_mode,
    )
    validate_ca_pem(tls_ca_pem)
    if retention_days is not None and retention_days < 1:
        raise ValidationError(f"retention must be at least 1 day, not {retention_days}")
    if Connection.objects.filter(name=name).exists():
        raise ValidationError(f"a connection named {name!r} already exists")
    connection = Connection(
        name=name,
        kind=kind,
        host=host.strip(),
        port=port,
        database=database,
        username=username,
        encrypted_credentials=encrypt_credentials({"password": password}),
        tls_mode=tls_mode,
        tls_ca_pem=tls_ca_pem,
    )
    if retention_days is not None:
        connection.retention_days = retention_days
    connection.save()
    logger.info("created connection %s (%s:%s/%s)", name, connection.host, port, database)
    return connection


@transaction.atomic
def do_set_connection_password(connection: Connection, password: str) -> None:
    """Replace the upstream password, keeping any other stored credential fields."""
    if not password:
        raise ValidationError("the upstream password must not be empty")
    credentials: dict = {}
    if connection.encrypted_credentials:
        try:
            credentials = decrypt_credentials(connection.encrypted_credentials)
        except CredentialsError:
            # The old value is unreadable (lost key); the new password replaces it whole.
            logger.warning("replacing unreadable credentials of connection %s", connection.name)
    credentials["password"] = password
    connection.encrypted_credentials = encrypt_credentials(credentials)
    if connection.pk is not None:
        connection.save(update_fields=["encrypted_credentials"])
    logger.info("changed the upstream password of connection %s", connection.name)


@transaction.atomic
def do_delete_connection(connection: Connection) -> None:
    """Delete a connection and every object permission on it, so no grant outlives it."""
    content_type = ContentType.objects.get_for_model(Connection)
    object_pk = str(connection.pk)
    UserObjectPermission.objects.filter(content_type=content_type, object_pk=object_pk).delete()
    GroupObjectPermission.objects.filter(content_type=content_type, object_pk=object_pk).delete()
    connection.delete()
    logger.info("deleted connection %s", connection.name)


@transaction.atomic
def do_create_service_account(name: str, description: str = "") -> ServiceAccount:
    """Create an agent with its backing Django user (`agent:<name>`, no password) and its SCRAM salt."""
    validate_name(name, "agent")
    username = AGENT_USERNAME_PREFIX + name
    user_model = get_user_model()
    if ServiceAccount.objects.filter(name=name).exists():
        raise ValidationError(f"an agent named {name!r} already exists")
    if user_model.objects.filter(username=username).exists():
        raise ValidationError(f"a user named {username!r} already exists; remove it or pick another name")
    user = user_model(username=username, is_staff=False, is_superuser=False)
    user.set_unusable_password()
    user.save()
    account = ServiceAccount.objects.create(name=name, user=user, scram_salt=new_scram_salt(), description=description)
    logger.info("created agent %s", name)
    return account


@transaction.atomic
def do_delete_service_account(account: ServiceAccount) -> None:
    """Delete an agent with its backing user, tokens and permissions."""
    account.user.delete()  # cascades to the account, its tokens and its object permissions
    logger.info("deleted agent %s", account.name)


@transaction.atomic
def do_issue_token(account: ServiceAccount, ttl: timedelta) -> tuple[AccessToken, str]:
    """Issue a token valid for `ttl`; returns it with its plaintext, which is not stored anywhere."""
    if ttl <= timedelta(0):
        raise ValidationError("a token's lifetime must be positive")
    token, prefix = generate_token()
    while AccessToken.objects.filter(prefix=prefix).exists():
        token, prefix = generate_token()
    access_token = AccessToken.objects.create(
        account=account,
        prefix=prefix,
        token_hash=hash_token(token),
        scram_verifier=scram_verifier_for(token, account),
        expires_at=timezone.now() + ttl,
    )
    logger.info("issued token %s for agent %s, expires %s", prefix, account.name, access_token.expires_at)
    return access_token, token


@transaction.atomic
def do_revoke_tokens(account: ServiceAccount) -> int:
    """Revoke every unrevoked token of the account; returns how many were revoked."""
    count = account.tokens.filter(revoked=False).update(revoked=True, revoked_at=timezone.now())
    logger.info("revoked %d token(s) of agent %s", count, account.name)
    return count


@transaction.atomic
def do_revoke_token(token: AccessToken) -> None:
    """Revoke one token; revoking is final."""
    if token.revoked and token.revoked_at:
        return
    token.revoked = True
    token.revoked_at = timezone.now()
    token.save(update_fields=["revoked", "revoked_at"])
    logger.info("revoked token %s of agent %s", token.prefix, token.account.name)


@transaction.atomic
def do_grant_connect(account: ServiceAccount, connection: Connection) -> None:
    """Let the agent open sessions on the connection (a django-guardian object permission)."""
    assign_perm("connections.connect", account.user, connection)
    logger.info("granted agent %s connect on %s", account.name, connection.name)
