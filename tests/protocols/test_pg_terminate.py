"""A reviewer ends a bot's live session: both sides close, and the recording says who and when.

The reviewer uses `manage.py sessions terminate`, a separate process beside
a node on the in-memory channel layer, so the node finds the request in the
database (the path that also catches a lost announcement).
"""

import time

import psycopg
import pytest

from tests.protocols.nodes import public_id, read_recording, unique_name, wait_for_session
from tests.support.gateway_process import GatewayProcess

TERMINATE_TIMEOUT = 15.0

_PEOPLE_SCRIPT = """
import os
from django.contrib.auth.models import User
from guardian.shortcuts import assign_perm
from connections.models import Connection
connection = Connection.objects.get(name="pg-main")
assign_perm("review", User.objects.create_user(os.environ["GATEHOUSE_TEST_REVIEWER"]), connection)
assign_perm("view_sessions", User.objects.create_user(os.environ["GATEHOUSE_TEST_OUTSIDER"]), connection)
"""


@pytest.fixture(scope="module")
def people(gateway: GatewayProcess) -> tuple[str, str]:
    reviewer, outsider = unique_name("ender"), unique_name("watcher")
    env = {"GATEHOUSE_TEST_REVIEWER": reviewer, "GATEHOUSE_TEST_OUTSIDER": outsider}
    gateway.manage("shell", "-c", _PEOPLE_SCRIPT, env=env, check=True)
    return reviewer, outsider


def test_it_ends_a_live_session_for_a_reviewer(gateway: GatewayProcess, people, app_name: str) -> None:
    reviewer, outsider = people
    with psycopg.connect(gateway.dsn(), application_name=app_name, autocommit=True) as conn:
        conn.execute("SELECT 'before the end'")
        session_id = public_id(wait_for_session(gateway, app_name, sealed=False))
        refused = gateway.manage("sessions", "terminate", session_id, "--as", outsider)
        assert refused.returncode != 0 and "no session" in refused.stderr.lower()
        ended = gateway.manage("sessions", "terminate", session_id, "--as", reviewer, "--reason", "runaway job")
        assert ended.returncode == 0, ended.stderr
        started = time.monotonic()
        with pytest.raises(psycopg.OperationalError) as closed:
            while time.monotonic() - started < TERMINATE_TIMEOUT:
                conn.execute("SELECT 1")
                time.sleep(0.1)
    assert f"terminated by {reviewer}" in str(closed.value)
    row = wait_for_session(gateway, app_name, sealed=True)
    assert (row["status"], row["terminated_by"]) == ("terminated", reviewer)
    recording = read_recording(gateway, row)
    assert [event["by"] for event in recording.data("terminated")] == [reviewer]
    assert recording.data("end")[-1]["status"] == "terminated"


def test_it_refuses_to_end_a_missing_or_finished_session(gateway: GatewayProcess, people, app_name: str) -> None:
    reviewer, _outsider = people
    with psycopg.connect(gateway.dsn(), application_name=app_name, autocommit=True) as conn:
        conn.execute("SELECT 1")
    session_id = public_id(wait_for_session(gateway, app_name, sealed=True))
    finished = gateway.manage("sessions", "terminate", session_id, "--as", reviewer)
    assert finished.returncode != 0 and "already ended" in finished.stderr
    missing = gateway.manage("sessions", "terminate", "00000000-0000-0000-0000-000000000000", "--as", reviewer)
    malformed = gateway.manage("sessions", "terminate", "not-a-session", "--as", reviewer)
    assert missing.returncode != 0 and malformed.returncode != 0
    assert "no session" in missing.stderr.lower() and "no session" in malformed.stderr.lower()
