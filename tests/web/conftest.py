"""Personas and recorded sessions for the reviewer pages, as real rows and real recording files.

- requester: the user behind the agent `ci-bot`, whose sessions run on
  `warehouse`; it may connect and review there (so four eyes is what stops
  it deciding its own statements) but not view sessions.
- reviewer: the person `alice`, with `review` and `view_sessions` on `warehouse`.
- outsider: the person `mallory`, with `review` and `view_sessions` on `billing` only.
"""

from dataclasses import dataclass

import pytest
from django.contrib.auth import get_user_model
from guardian.shortcuts import assign_perm

from approvals.actions import do_request_review
from approvals.models import Review
from connections.actions import do_create_service_account, do_grant_connect
from connections.models import Connection, ServiceAccount
from recordings.actions import open_session, seal_session
from recordings.models import Session
from tests.support.recording_store import recording_store  # noqa: F401 (an autouse fixture)

COUNTERS = {"statements": 2, "errors": 0, "bytes_from_client": 120, "bytes_to_client": 480}


@dataclass
class Personas:
    warehouse: Connection
    billing: Connection
    agent: ServiceAccount
    requester: object
    reviewer: object
    outsider: object


def make_user(username: str, **fields):
    return get_user_model().objects.create_user(username, f"{username}@example.com", **fields)


@pytest.fixture
def personas(db) -> Personas:
    warehouse = Connection.objects.create(name="warehouse", host="db.internal", database="app", username="etl")
    billing = Connection.objects.create(name="billing", host="db.internal", database="billing", username="etl")
    agent = do_create_service_account("ci-bot")
    do_grant_connect(agent, warehouse)
    assign_perm("connections.review", agent.user, warehouse)
    reviewer = make_user("alice")
    assign_perm("connections.review", reviewer, warehouse)
    assign_perm("connections.view_sessions", reviewer, warehouse)
    outsider = make_user("mallory")
    assign_perm("connections.review", outsider, billing)
    assign_perm("connections.view_sessions", outsider, billing)
    return Personas(warehouse, billing, agent, agent.user, reviewer, outsider)


@pytest.fixture
def record_session(personas):
    """Record a session as the gateway does: open it, write events, close, flush and seal (unless live)."""

    def record(
        events=(),
        *,
        connection: Connection | None = None,
        account: ServiceAccount | None = None,
        status: str = Session.Status.ENDED,
        kind: str = "postgres",
        counters: dict | None = None,
    ) -> Session:
        account = account or personas.agent
        session, writer = open_session(
            connection=connection or personas.warehouse,
            account=account,
            actor=f"agent:{account.name}",
            client_addr="10.0.0.7:51544",
            application_name="psql",
            kind=kind,
        )
        for event_kind, data in events:
            writer.event(event_kind, data)
        if status != Session.Status.LIVE:
            writer.close(status, counters or COUNTERS)
        writer.flush_now()
        if status != Session.Status.LIVE:
            seal_session(writer, status=status, counters=counters or COUNTERS)
        session.refresh_from_db()
        return session

    return record


@pytest.fixture
def request_review(personas, record_session):
    """Hold a statement of a ci-bot session on warehouse, as the gateway does."""

    def request(statement: str = "DELETE FROM orders WHERE id = 7", **overrides) -> Review:
        fields = {
            "connection_id": personas.warehouse.pk,
            "session_public_id": None,
            "account_id": personas.agent.pk,
            "rule": "deletes",
            "statement": statement,
            "timeout_seconds": 300,
            "approvals_required": 1,
        }
        fields.update(overrides)
        return do_request_review(**fields)

    return request
