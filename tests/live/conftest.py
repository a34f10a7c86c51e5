"""Personas and live sessions for the websocket tests.

- requester: the agent `ci-bot`, whose session on `warehouse` is recorded;
- reviewer: `alice`, with `view_sessions` and `review` on `warehouse`;
- outsider: `mallory`, with `view_sessions` on `billing` only.

Consumer tests run their own event loop and reach the database from
channels' worker threads, so they use transactional test databases.
"""

from dataclasses import dataclass

import pytest
from django.contrib.auth import get_user_model
from guardian.shortcuts import assign_perm

from connections.actions import do_create_service_account, do_grant_connect
from connections.models import Connection, ServiceAccount
from recordings.actions import open_session
from tests.support.recording_store import recording_store  # noqa: F401 (an autouse fixture)


@dataclass
class Personas:
    warehouse: Connection
    billing: Connection
    requester: ServiceAccount
    reviewer: object
    outsider: object


@pytest.fixture
def personas(transactional_db) -> Personas:
    warehouse = Connection.objects.create(name="warehouse", host="db.internal", database="app", username="etl")
    billing = Connection.objects.create(name="billing", host="db.internal", database="billing", username="etl")
    requester = do_create_service_account("ci-bot")
    do_grant_connect(requester, warehouse)
    reviewer = get_user_model().objects.create_user("alice", "alice@example.com")
    assign_perm("connections.view_sessions", reviewer, warehouse)
    assign_perm("connections.review", reviewer, warehouse)
    outsider = get_user_model().objects.create_user("mallory", "mallory@example.com")
    assign_perm("connections.view_sessions", outsider, billing)
    return Personas(warehouse, billing, requester, reviewer, outsider)


@pytest.fixture
def live_session(personas):
    """A live session of ci-bot on warehouse, as the gateway opens it: (Session, RecordingWriter)."""
    return open_session(
        connection=personas.warehouse,
        account=personas.requester,
        actor="agent:ci-bot",
        client_addr="10.0.0.7:51544",
        application_name="psql",
    )
