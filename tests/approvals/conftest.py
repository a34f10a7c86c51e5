"""Personas for the review tests, as real rows on the test database.

- requester: the agent `ci-bot`, whose session's statement is held; its user
  also holds `review` on the connection, so four eyes is what stops it.
- reviewer: the person `alice`, with `review` on `warehouse` (directly).
- outsider: the person `mallory`, with `review` on `billing` only and
  `connect` and `view_sessions` on `warehouse`: close, but not allowed.
"""

from dataclasses import dataclass
from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.utils import timezone
from guardian.shortcuts import assign_perm

from approvals.actions import do_request_review
from approvals.models import Review
from connections.actions import do_create_service_account, do_grant_connect
from connections.models import Connection, ServiceAccount
from recordings.models import Session

STATEMENT = "DROP TABLE customers"


@dataclass
class Personas:
    warehouse: Connection
    billing: Connection
    requester: ServiceAccount
    reviewer: object
    outsider: object
    session: Session


def make_user(username: str):
    return get_user_model().objects.create_user(username, f"{username}@example.com")  # no password: no slow hashing


@pytest.fixture
def personas(db) -> Personas:
    warehouse = Connection.objects.create(name="warehouse", host="db.internal", database="app", username="etl")
    billing = Connection.objects.create(name="billing", host="db.internal", database="billing", username="etl")
    requester = do_create_service_account("ci-bot")
    do_grant_connect(requester, warehouse)
    assign_perm("connections.review", requester.user, warehouse)
    reviewer = make_user("alice")
    assign_perm("connections.review", reviewer, warehouse)
    outsider = make_user("mallory")
    assign_perm("connections.review", outsider, billing)
    assign_perm("connections.connect", outsider, warehouse)
    assign_perm("connections.view_sessions", outsider, warehouse)
    now = timezone.now()
    session = Session.objects.create(
        connection=warehouse,
        account=requester,
        actor="agent:ci-bot",
        client_addr="10.0.0.7:51544",
        started_at=now,
        retain_until=now + timedelta(days=30),
        recording_path="2026/01/01/session.jsonl",
    )
    return Personas(warehouse, billing, requester, reviewer, outsider, session)


@pytest.fixture
def request_review(personas):
    """Hold a statement of ci-bot's session on warehouse, as the gateway does."""

    def request(statement: str = STATEMENT, timeout: float = 300, approvals: int = 1, **overrides) -> Review:
        fields = {
            "connection_id": personas.warehouse.pk,
            "session_public_id": str(personas.session.public_id),
            "account_id": personas.requester.pk,
            "rule": "schema-changes",
            "statement": statement,
            "timeout_seconds": timeout,
            "approvals_required": approvals,
        }
        fields.update(overrides)
        return do_request_review(**fields)

    return request


def overdue(review: Review) -> Review:
    """Move a review's deadline into the past, as if its timeout had run out."""
    Review.objects.filter(pk=review.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    review.refresh_from_db()
    return review
