"""The one access funnel for connections: the only code that asks django-guardian about them.

"Not found" and "forbidden" look the same to every caller, so nobody can
probe which connection names exist.
"""

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from django.db.models import CharField, Exists, OuterRef, QuerySet, Subquery
from django.db.models.functions import Cast, JSONObject
from guardian.core import ObjectPermissionChecker
from guardian.models import GroupObjectPermission, UserObjectPermission
from guardian.shortcuts import get_objects_for_user

from connections.models import AccessToken, Connection

# action -> the guardian permission it needs. Later: "review", "view_sessions".
ACTION_PERMISSIONS = {"connect": "connect"}

GATEWAY_CONNECTION_FIELDS = (
    "id",
    "name",
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
)


def _codename(action: str) -> str:
    try:
        return ACTION_PERMISSIONS[action]
    except KeyError:
        raise ValueError(f"unknown connection action {action!r}") from None


def access_connection(actor_user, name: str, action: str) -> Connection:
    """Return the connection named `name` if `actor_user` may do `action` on it.

    Raises Connection.DoesNotExist both when it does not exist and when the
    actor lacks the permission (directly or through a group). Superusers may
    do everything; inactive users nothing.
    """
    codename = _codename(action)
    connection = Connection.objects.filter(name=name).first()
    if connection is None or not ObjectPermissionChecker(actor_user).has_perm(codename, connection):
        raise Connection.DoesNotExist(f"no connection named {name!r}")
    return connection


def connections_for(actor_user, action: str) -> QuerySet[Connection]:
    """The connections `actor_user` may do `action` on (directly, through a group, or as a superuser)."""
    codename = _codename(action)
    if not actor_user.is_active:
        return Connection.objects.none()
    return get_objects_for_user(actor_user, f"connections.{codename}", klass=Connection, accept_global_perms=False)


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


def _connect_grant(permission_model, holder_lookup: str) -> Exists:
    # object_pk is a text column in guardian's generic tables, hence the Cast.
    return Exists(
        permission_model.objects.filter(
            object_pk=Cast(OuterRef("pk"), CharField()),
            content_type__app_label="connections",
            content_type__model="connection",
            permission__codename="connect",
            permission__content_type__app_label="connections",
            **{holder_lookup: OuterRef(OuterRef("account__user"))},
        )
    )


def _granted_connection(connection_name: str) -> Subquery:
    granted = Connection.objects.filter(name=connection_name).filter(
        _connect_grant(UserObjectPermission, "user") | _connect_grant(GroupObjectPermission, "group__user")
    )
    fields = {field: field for field in GATEWAY_CONNECTION_FIELDS}
    return Subquery(granted.values(data=JSONObject(**fields))[:1])


def lookup_gateway_login(agent_name: str, connection_name: str, now: datetime) -> GatewayLogin | None:
    """Load an agent's usable tokens and, if it may connect, the connection: one SQL query.

    Returns None when the agent is unknown, inactive, or has no unrevoked,
    unexpired token. An unknown connection and a forbidden one both give
    `connection=None`. The credentials stay encrypted.
    """
    rows = list(
        AccessToken.objects.filter(
            account__name=agent_name,
            account__user__is_active=True,
            revoked=False,
            expires_at__gt=now,
        )
        .annotate(granted_connection=_granted_connection(connection_name))
        .values("id", "token_hash", "scram_verifier", "account_id", "account__name", "granted_connection")
        .order_by("-id")
    )
    if not rows:
        return None
    return GatewayLogin(
        account_id=rows[0]["account_id"],
        account_name=rows[0]["account__name"],
        tokens=[GatewayToken(row["id"], row["token_hash"], row["scram_verifier"]) for row in rows],
        connection=rows[0]["granted_connection"],
    )


def record_token_use(token_ids: Iterable[int], when: datetime) -> int:
    """Set last_used_at on the given tokens in one UPDATE; returns the number of rows changed."""
    ids = list(token_ids)
    if not ids:
        return 0
    return AccessToken.objects.filter(id__in=ids).update(last_used_at=when)
