"""Fixtures for the recording tests: a private recordings directory and signing key, and real sessions."""

import pytest

from connections.models import Connection
from recordings.actions import open_session, seal_session
from recordings.models import Session
from tests.recordings.recording_files import STATEMENTS
from tests.support.recording_store import recording_store  # noqa: F401 (an autouse fixture)


@pytest.fixture
def connection(db):
    return Connection.objects.create(
        name="warehouse", host="db.internal", port=5432, database="warehouse", username="etl", retention_days=30
    )


@pytest.fixture
def record_session(connection):
    """Open a session, record events, close it, write it out and seal it, as the gateway does."""

    def record(events=STATEMENTS, status=Session.Status.ENDED, actor="agent:ci-bot") -> Session:
        session, writer = open_session(
            connection=connection, account=None, actor=actor, client_addr="10.0.0.7:51544", application_name="psql"
        )
        for kind, data in events:
            writer.event(kind, data)
        counters = {"statements": 3, "errors": 1, "bytes_from_client": 310, "bytes_to_client": 920}
        writer.close(status, counters)
        writer.flush_now()
        seal_session(writer, status=status, counters=counters)
        session.refresh_from_db()
        return session

    return record
