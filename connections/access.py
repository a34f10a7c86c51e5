"""The one access funnel for connections: the only code that asks django-guardian about them.

"Not found" and "forbidden" look the same to every caller, so nobody can
probe which connection names exist.
"""

import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from functools import cache

from django.apps import apps
from django.contrib.auth.models import Permission, User
from django.contrib.contenttypes.models import ContentType
from django.db import connection
from django.db.models import Q, QuerySet
from django.utils import timezone
from guardian.core import ObjectPermissionChecker
from guardian.models import GroupObjectPermission, UserObjectPermission
from guardian.shortcuts import get_objects_for_user

from connections.models import AccessToken, AgentKey, Connection, Policy, ServiceAccount

# action -> the guardian permission it needs.
ACTION_PERMISSIONS = {"connect": "connect", "review": "review", "view_sessions": "view_sessions"}

GATEWAY_CONNECTION_FIELDS = (
    "id",
    "name",
    "kind",
    "host",
    "port",
    "database",
    "username",
    "encrypted_credentials",
    "tls_mode",
    "tls_ca_pem",
    "record_max_rows",
    "record_max_bytes",
    "retention_days",
    "known_host",
    "allow_forwarding",
    "allow_remote_forwarding",
    "allow_agent_forwarding",
    "allow_x11_forwarding",
    "record_file_content",
)
_LOGIN_MODELS = (AccessToken, AgentKey, ServiceAccount, User, Connection, Policy, Permission, ContentType)
_LOGIN_MODELS += (UserObjectPermission, GroupObjectPermission)


def _codename(action: str) -> str:
    try:
        return ACTION_PERMISSIONS[action]
    except KeyError:
        raise ValueError(f"unknown connection action {action!r}") from None


def access_connection(actor_user, name: str, action: str) -> Connection:
    """Return the connection named `name` if `actor_user` may do `action` on it.

    Raises Connection.DoesNotExist both when it does not exist and when the
    actor lacks the permission (directly or through a group). Superusers may
    do everything; inactive users nothing. An active just-in-time grant
    (see `_active_grants`) allows `connect`.
    """
    codename = _codename(action)
    connection = Connection.objects.filter(name=name).first()
    if connection is None or not (
        ObjectPermissionChecker(actor_user).has_perm(codename, connection)
        or (codename == "connect" and _active_grants(actor_user).filter(connection=connection).exists())
    ):
        raise Connection.DoesNotExist(f"no connection named {name!r}")
    return connection


def connections_for(actor_user, action: str) -> QuerySet[Connection]:
    """The connections `actor_user` may do `action` on (directly, through a group, or as a superuser).

    For `connect`, also those of the actor's active just-in-time grants.
    """
    codename = _codename(action)
    if not actor_user.is_active:
        return Connection.objects.none()
    allowed = get_objects_for_user(actor_user, f"connections.{codename}", klass=Connection, accept_global_perms=False)
    if codename != "connect":
        return allowed
    granted = _active_grants(actor_user).values("connection_id")
    return Connection.objects.filter(Q(pk__in=allowed.values("pk")) | Q(pk__in=granted))


def _active_grants(actor_user) -> QuerySet:
    """The actor's own granted access requests that have not run out: each is a time-bound `connect`.

    Looked up through the app registry: approvals builds on connections, not the other way round.
    """
    access_request = apps.get_model("approvals", "AccessRequest")
    if not actor_user.is_active:
        return access_request.objects.none()
    return access_request.objects.filter(
        requester_id=actor_user.pk, status=access_request.Status.GRANTED, granted_until__gt=timezone.now()
    )


@dataclass(frozen=True)
class GatewayToken:
    """One usable token of an agent, as the gateway checks a login against it."""

    id: int
    token_hash: str
    scram_verifier: str


@dataclass(frozen=True)
class GatewayLogin:
    """What the gateway needs to open a session; `connection` is None when unknown or forbidden."""

    account_id: int
    account_name: str
    tokens: list[GatewayToken]
    connection: dict | None
    policy: Policy | None = None  # the connection's policy (id, name, rules, revision only)


@cache
def _login_sql(by_key: bool) -> str:
    """The gateway's login lookup as one statement (built once: the ORM would recompile it per login).

    Rows of the agent, each joined to the requested connection if and only if
    the connection is of the requested kind and the agent's user holds
    `connections.connect` on it, directly or through a group, or has a
    granted access request on it that has not run out. Portable between
    SQLite and PostgreSQL. By name (`by_key` False): one row per usable token,
    newest first; parameters: connection name, kind, now (grants), agent
    name, now (tokens). By key: one row for the key's agent; parameters:
    connection name, kind, now (grants), key fingerprint.
    """
    table = {model: connection.ops.quote_name(model._meta.db_table) for model in _LOGIN_MODELS}
    grants = connection.ops.quote_name(apps.get_model("approvals", "AccessRequest")._meta.db_table)
    groups = connection.ops.quote_name(User.groups.through._meta.db_table)
    columns = ", ".join(f"c.{connection.ops.quote_name(name)}" for name in GATEWAY_CONNECTION_FIELDS)
    # Only quoted table and column names from model metadata are interpolated (hence the noqa).
    connect_permission = f"""(SELECT p.id FROM {table[Permission]} p
        JOIN {table[ContentType]} ct ON ct.id = p.content_type_id
        WHERE ct.app_label = 'connections' AND ct.model = 'connection' AND p.codename = 'connect')"""  # noqa: S608
    if by_key:
        source = f"""SELECT NULL, NULL, NULL, a.id, a.name, pol.id, pol.name, pol.rules, pol.revision, {columns}
        FROM {table[AgentKey]} k JOIN {table[ServiceAccount]} a ON a.id = k.account_id"""  # noqa: S608
        condition = "k.fingerprint = %s AND u.is_active"
    else:
        source = f"""SELECT t.id, t.token_hash, t.scram_verifier, a.id, a.name, pol.id, pol.name, pol.rules,
        pol.revision, {columns}
        FROM {table[AccessToken]} t JOIN {table[ServiceAccount]} a ON a.id = t.account_id"""  # noqa: S608
        condition = "a.name = %s AND u.is_active AND NOT t.revoked AND t.expires_at > %s ORDER BY t.id DESC"
    return f"""{source}
        JOIN {table[User]} u ON u.id = a.user_id
        LEFT JOIN {table[Connection]} c ON c.name = %s AND c.kind = %s AND (
            EXISTS (SELECT 1 FROM {table[UserObjectPermission]} up
                    WHERE up.user_id = u.id AND up.object_pk = CAST(c.id AS TEXT)
                    AND up.permission_id = {connect_permission})
            OR EXISTS (SELECT 1 FROM {table[GroupObjectPermission]} gp
                    JOIN {groups} ug ON ug.group_id = gp.group_id
                    WHERE ug.user_id = u.id AND gp.object_pk = CAST(c.id AS TEXT)
                    AND gp.permission_id = {connect_permission})
            OR EXISTS (SELECT 1 FROM {grants} ar
                    WHERE ar.connection_id = c.id AND ar.requester_id = u.id
                    AND ar.status = 'granted' AND ar.granted_until > %s))
        LEFT JOIN {table[Policy]} pol ON pol.id = c.policy_id
        WHERE {condition}
    """  # noqa: S608


def lookup_gateway_login(
    agent_name: str, connection_name: str, now: datetime, kind: str = Connection.Kind.POSTGRES
) -> GatewayLogin | None:
    """Load an agent's usable tokens and, if it may connect, the connection: one SQL query.

    Returns None when the agent is unknown, inactive, or has no unrevoked,
    unexpired token. An unknown connection, a forbidden one and one of
    another kind all give `connection=None`. The credentials stay encrypted.
    """
    when = connection.ops.adapt_datetimefield_value(now)
    return _login(_login_sql(False), [connection_name, kind, when, agent_name, when])


def lookup_key_login(fingerprint: str, connection_name: str, now: datetime, kind: str) -> GatewayLogin | None:
    """`lookup_gateway_login` for an agent that logs in with an SSH key: None if no active agent has that key.

    The login's token list is empty: the key, not a token, proved who it is.
    """
    when = connection.ops.adapt_datetimefield_value(now)
    login = _login(_login_sql(True), [connection_name, kind, when, fingerprint])
    if login is None:
        return None
    return GatewayLogin(login.account_id, login.account_name, [], login.connection, login.policy)


def _login(sql: str, params: list) -> GatewayLogin | None:
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        rows = cursor.fetchall()
    if not rows:
        return None
    first = rows[0]
    granted = None if first[9] is None else dict(zip(GATEWAY_CONNECTION_FIELDS, first[9:], strict=True))
    return GatewayLogin(
        account_id=first[3],
        account_name=first[4],
        tokens=[GatewayToken(row[0], row[1], row[2]) for row in rows],
        connection=granted,
        policy=_policy(*first[5:9]),
    )


def _policy(policy_id: int | None, name: str, rules: str | dict, revision: int) -> Policy | None:
    if policy_id is None:
        return None
    # A raw cursor gives JSON as text; decode it as the field itself would.
    decoded = json.loads(rules) if isinstance(rules, str) else rules
    return Policy(id=policy_id, name=name, rules=decoded, revision=revision)


def record_token_use(token_ids: Iterable[int], when: datetime) -> int:
    """Set last_used_at on the given tokens in one UPDATE; returns the number of rows changed."""
    ids = list(token_ids)
    if not ids:
        return 0
    return AccessToken.objects.filter(id__in=ids).update(last_used_at=when)
