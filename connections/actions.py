"""State changes of connections, service accounts, tokens and policies.

Every mutation goes through a `do_*` function here, each in a transaction,
so the CLI and the admin share one path and one set of checks.
"""

import logging
import time
from dataclasses import dataclass, field
from datetime import timedelta

from cryptography import x509
from django.contrib.auth import get_user_model
from django.contrib.contenttypes.models import ContentType
from django.core.exceptions import ValidationError
from django.core.validators import validate_slug
from django.db import connection as db_connection
from django.db import transaction
from django.db.models import Max
from django.utils import timezone
from guardian.models import GroupObjectPermission, UserObjectPermission
from guardian.shortcuts import assign_perm

from connections.credentials import CredentialsError, decrypt_credentials, encrypt_credentials
from connections.models import AccessToken, Connection, Policy, ServiceAccount
from connections.policy.policy_file import PolicyEntry, PolicyFileError, PolicyProblem, parse_policy_file, spec_to_dict
from connections.policy.rules import PolicySpec
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


NO_POLICY_MEANING = "every statement is allowed and nothing is masked"


def _actor_name(actor) -> str:
    return getattr(actor, "username", "") or "the command line"


def _lock_policies() -> None:
    """Serialize policy changes so revisions are given in commit order.

    A node polling max(revision) could otherwise miss a change whose
    transaction took its revision first and committed last. SQLite's
    IMMEDIATE transactions are serialized already.
    """
    if db_connection.vendor == "postgresql":
        table = db_connection.ops.quote_name(Policy._meta.db_table)
        with db_connection.cursor() as cursor:
            cursor.execute(f"LOCK TABLE {table} IN SHARE ROW EXCLUSIVE MODE")


def _next_policy_revision() -> int:
    """A revision above every one given before, even those of deleted policies.

    The wall clock in microseconds, or the largest stored revision plus one
    if that is ahead: deleting the newest policy lowers the maximum, and a
    plain max + 1 could then repeat a revision a node has already seen.
    """
    latest = Policy.objects.aggregate(revision=Max("revision"))["revision"] or 0
    return max(latest + 1, time.time_ns() // 1000)


@dataclass
class PolicyChanges:
    """What `do_apply_policies` changed (or, in a dry run, would change)."""

    created: list[str] = field(default_factory=list)
    updated: list[tuple[str, list[str]]] = field(default_factory=list)  # policy, the keys that changed
    unchanged: list[str] = field(default_factory=list)
    attached: list[tuple[str, str, str | None]] = field(default_factory=list)  # connection, policy, previous
    detached: list[tuple[str, str]] = field(default_factory=list)  # connection, its previous policy

    @property
    def changed(self) -> bool:
        return bool(self.created or self.updated or self.attached or self.detached)

    def lines(self) -> list[str]:
        """One human sentence per change, policies first, then connections."""
        lines = [f"created policy {name}" for name in self.created]
        lines += [f"updated policy {name}: {', '.join(keys)}" for name, keys in self.updated]
        lines += [f"unchanged policy {name}" for name in self.unchanged]
        for connection, policy, previous in self.attached:
            before = f"was {previous}" if previous else "had no policy"
            lines.append(f"attached connection {connection} to policy {policy} ({before})")
        for connection, policy in self.detached:
            lines.append(
                f"detached connection {connection} from policy {policy}: it has no policy now, so {NO_POLICY_MEANING}"
            )
        return lines


@transaction.atomic
def do_apply_policies(data: str | bytes, *, actor=None, dry_run: bool = False) -> PolicyChanges:
    """Apply a policy file, all or nothing. Raises PolicyFileError (every problem, with lines) on a bad file.

    The file is authoritative for the policies it names, and only for them:
    each is created or replaced whole (rules, defaults, description). A
    policy with a `connections` key ends up attached to exactly those
    connections: listed ones are attached (moved from another policy if
    need be), unlisted ones are detached, unless the file gives them
    another policy. Without the key its attachments are left alone.
    Policies the file does not name keep their rules and lose only the
    connections the file gives to another policy; nothing is deleted.
    Applying the same file twice changes nothing and gives no new revision.
    """
    known = set(Connection.objects.values_list("name", flat=True))
    policy_file = parse_policy_file(data, known_connections=known)
    _lock_policies()  # after parsing, which may take a second for a large file
    listed = {name for entry in policy_file.policies for name in entry.connections or ()}
    connections = {c.name: c for c in Connection.objects.filter(name__in=listed).select_related("policy")}
    _check_still_there(policy_file.policies, connections)
    changes = PolicyChanges()
    touched: set[int] = set()
    for entry in policy_file.policies:
        policy = _apply_policy_entry(entry, changes, touched)
        if entry.connections is not None:
            _apply_attachments(policy, entry.connections, connections, listed, changes, touched)
    if touched:
        Policy.objects.filter(pk__in=touched).update(revision=_next_policy_revision())
    if dry_run:
        transaction.set_rollback(True)
    else:
        for line in changes.lines():
            logger.info("policies applied by %s: %s", _actor_name(actor), line)
    return changes


def _check_still_there(entries: tuple[PolicyEntry, ...], connections: dict[str, Connection]) -> None:
    """A listed connection deleted since the file was checked is still an error with its line."""
    problems = [
        PolicyProblem(line, f"no connection named {name!r}; see: manage.py connections list")
        for entry in entries
        for name, line in zip(entry.connections or (), entry.connection_lines, strict=True)
        if name not in connections
    ]
    if problems:
        raise PolicyFileError(problems)


def _apply_policy_entry(entry: PolicyEntry, changes: PolicyChanges, touched: set[int]) -> Policy:
    rules = spec_to_dict(entry.spec)
    policy = Policy.objects.filter(name=entry.spec.name).first()
    if policy is None:
        policy = Policy.objects.create(name=entry.spec.name, description=entry.description, rules=rules)
        changes.created.append(policy.name)
        touched.add(policy.pk)
        return policy
    changed = [key for key in rules if policy.rules.get(key) != rules[key]]
    if policy.description != entry.description:
        changed.append("description")
    if changed:
        policy.rules, policy.description = rules, entry.description
        policy.save(update_fields=["rules", "description", "updated_at"])
        changes.updated.append((policy.name, changed))
        touched.add(policy.pk)
    else:
        changes.unchanged.append(policy.name)
    return policy


def _apply_attachments(
    policy: Policy,
    wanted: tuple[str, ...],
    connections: dict[str, Connection],
    listed: set[str],
    changes: PolicyChanges,
    touched: set[int],
) -> None:
    """Attach `wanted` to the policy; detach its other connections unless the file gives them another policy."""
    for name in wanted:
        connection = connections[name]
        if connection.policy_id == policy.pk:
            continue
        previous = connection.policy.name if connection.policy_id else None
        if connection.policy_id:
            touched.add(connection.policy_id)
        connection.policy = policy
        connection.save(update_fields=["policy"])
        changes.attached.append((name, policy.name, previous))
        touched.add(policy.pk)
    for connection in Connection.objects.filter(policy=policy).exclude(name__in=listed):
        connection.policy = None
        connection.save(update_fields=["policy"])
        changes.detached.append((connection.name, policy.name))
        touched.add(policy.pk)


@transaction.atomic
def do_save_policy(spec: PolicySpec, *, description: str = "", policy: Policy | None = None, actor=None) -> Policy:
    """Create the policy `spec` describes (policy=None), or replace the rules and description of `policy`.

    The spec must come from connections.policy.policy_file, which validated
    it. A policy keeps its name: files and connections refer to it by name.
    """
    _lock_policies()
    rules = spec_to_dict(spec)
    if policy is None:
        validate_name(spec.name, "policy")
        if Policy.objects.filter(name=spec.name).exists():
            raise ValidationError(f"a policy named {spec.name!r} already exists")
        policy = Policy(name=spec.name)
    else:
        # Compare with the stored row: the caller's instance may already hold the new values (a ModelForm's does).
        policy = Policy.objects.select_for_update().get(pk=policy.pk)
        if spec.name != policy.name:
            raise ValidationError(f"policy {policy.name!r} cannot be renamed to {spec.name!r}")
        if policy.rules == rules and policy.description == description:
            return policy
    policy.rules, policy.description = rules, description
    policy.revision = _next_policy_revision()
    policy.save()
    logger.info("policy %s saved by %s (revision %d)", policy.name, _actor_name(actor), policy.revision)
    return policy


@transaction.atomic
def do_set_connection_policy(connection: Connection, policy: Policy | None, *, actor=None) -> None:
    """Attach a connection to a policy, or detach it (None: every statement allowed, nothing masked).

    Both the old and the new policy get a new revision, so gateway nodes
    reload the live sessions of the connection within a few seconds.
    """
    _lock_policies()
    previous_id = Connection.objects.filter(pk=connection.pk).values_list("policy_id", flat=True).first()
    new_id = policy.pk if policy is not None else None
    connection.policy = policy
    if previous_id == new_id:
        return
    connection.save(update_fields=["policy"])
    touched = {pk for pk in (previous_id, new_id) if pk is not None}
    Policy.objects.filter(pk__in=touched).update(revision=_next_policy_revision())
    if policy is None:
        logger.warning(
            "connection %s detached from its policy by %s: %s", connection.name, _actor_name(actor), NO_POLICY_MEANING
        )
    else:
        logger.info("connection %s attached to policy %s by %s", connection.name, policy.name, _actor_name(actor))


@transaction.atomic
def do_delete_policy(policy: Policy, *, actor=None) -> None:
    """Delete a policy that guards no connection; detach them first, so nothing is left unguarded by surprise."""
    _lock_policies()
    attached = list(Connection.objects.filter(policy=policy).values_list("name", flat=True))
    if attached:
        raise ValidationError(
            f"policy {policy.name!r} still guards {', '.join(attached)}; "
            "give those connections another policy or detach them first"
        )
    policy.delete()
    logger.info("policy %s deleted by %s", policy.name, _actor_name(actor))
