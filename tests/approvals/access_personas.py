"""Personas for the just-in-time access tests, as real rows on the test database.

- requester: the agent `ci-bot`, without `connect` on `warehouse`; its user
  holds `review` on warehouse, so four eyes is what stops it deciding its own.
- reviewer: the person `alice`, with `review` on `warehouse` (directly).
- outsider: the person `mallory`, with `review` on `billing` only and
  `view_sessions` on `warehouse`: close, but not allowed.
"""

from dataclasses import dataclass
from datetime import timedelta

from django.utils import timezone
from guardian.shortcuts import assign_perm

from approvals.access_request_actions import do_decide_access_request, do_request_access
from approvals.models import AccessRequest
from connections.actions import do_create_service_account, do_issue_token
from connections.models import Connection, ServiceAccount
from recordings.models import Session

from .conftest import make_user

REASON = "backfill the orders table after incident 4711"
TWO_HOURS = 2 * 3600


@dataclass
class AccessPersonas:
    warehouse: Connection
    billing: Connection
    requester: ServiceAccount
    reviewer: object
    outsider: object
    token: str  # the requester's gateway token


def make_access_personas() -> AccessPersonas:
    warehouse = Connection.objects.create(name="warehouse", host="db.internal", database="app", username="etl")
    billing = Connection.objects.create(name="billing", host="db.internal", database="billing", username="etl")
    requester = do_create_service_account("ci-bot")
    assign_perm("connections.review", requester.user, warehouse)
    reviewer = make_user("alice")
    assign_perm("connections.review", reviewer, warehouse)
    outsider = make_user("mallory")
    assign_perm("connections.review", outsider, billing)
    assign_perm("connections.view_sessions", outsider, warehouse)
    _, token = do_issue_token(requester, timedelta(hours=1))
    return AccessPersonas(warehouse, billing, requester, reviewer, outsider, token)


def ask(personas: AccessPersonas, connection: str = "warehouse", seconds: int = TWO_HOURS) -> AccessRequest:
    """The requester agent asks for `connection`."""
    return do_request_access(personas.requester.user, connection, REASON, seconds, account=personas.requester)


def granted(personas: AccessPersonas, seconds: int = TWO_HOURS) -> AccessRequest:
    """A grant of warehouse to the requester agent, given by the reviewer."""
    return do_decide_access_request(ask(personas, seconds=seconds).public_id, personas.reviewer, grant=True)


def run_out(grant: AccessRequest) -> AccessRequest:
    """Move a grant's end into the past, as if its time had passed."""
    AccessRequest.objects.filter(pk=grant.pk).update(granted_until=timezone.now() - timedelta(seconds=1))
    grant.refresh_from_db()
    return grant


def live_session(personas: AccessPersonas, connection: Connection | None = None, **fields) -> Session:
    """A live session of the requester agent (on warehouse unless given)."""
    now = timezone.now()
    values = {
        "connection": connection or personas.warehouse,
        "account": personas.requester,
        "actor": "agent:ci-bot",
        "client_addr": "10.0.0.7:51544",
        "started_at": now,
        "retain_until": now + timedelta(days=30),
        "recording_path": "2026/01/01/session.jsonl",
    }
    values.update(fields)
    return Session.objects.create(**values)
