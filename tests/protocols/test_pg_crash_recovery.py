"""kill -9 of a gateway node mid-session, and tampering with a sealed recording.

After a crash, the next start marks the open session `interrupted` and seals
what was written, so it verifies; an edited byte in a sealed recording is
found and its line named.
"""

import contextlib
from collections.abc import Iterator

import psycopg
import pytest

from tests.protocols.nodes import (
    assert_serves,
    assert_verifies,
    public_id,
    recording_path,
    running_node,
    session_rows,
    unique_name,
    wait_for_recorded,
    wait_for_session,
)
from tests.support.gateway_process import GatewayProcess
from tests.support.pg_cluster import PgCluster


@pytest.fixture(scope="module")
def crash_node(pg_cluster: PgCluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    """A node of this module's own to kill -9 and tamper with (each test starts it again if it is down)."""
    with running_node(tmp_path_factory.mktemp("gateway-crash"), pg_cluster, start=False) as gateway:
        yield gateway


@pytest.fixture
def node(crash_node: GatewayProcess) -> GatewayProcess:
    crash_node.start()
    return crash_node


def open_session_with_statements(node: GatewayProcess, application_name: str, marker: str) -> psycopg.Connection:
    """A session that ran a few statements, the last selecting `marker`, and stays open."""
    conn = psycopg.connect(node.dsn(), application_name=application_name, autocommit=True, connect_timeout=15)
    conn.execute("CREATE TEMP TABLE crash_notes (note text)")
    conn.execute("INSERT INTO crash_notes VALUES (%s), (%s)", ("first", "second"))
    assert conn.execute("SELECT count(*) FROM crash_notes").fetchone() == (2,)
    assert conn.execute(f"SELECT '{marker}'").fetchone() == (marker,)
    return conn


def crash_mid_session(node: GatewayProcess, application_name: str, marker: str) -> dict:
    """Run a session, wait for its statements to be flushed, then kill -9 the node; the session's row."""
    conn = open_session_with_statements(node, application_name, marker)
    row = wait_for_session(node, application_name, sealed=False)
    wait_for_recorded(node, row, marker)
    node.kill9()
    with contextlib.suppress(psycopg.Error):
        conn.close()
    assert session_rows(node, application_name)[0]["status"] == "live"
    return row


def test_it_marks_a_session_open_at_a_crash_interrupted_and_it_verifies(node: GatewayProcess) -> None:
    application_name, marker = unique_name("crash"), unique_name("crash-marker")
    row = crash_mid_session(node, application_name, marker)
    node.start()
    (after,) = session_rows(node, application_name)
    assert after["status"] == "interrupted"
    assert after["seal"] and after["chain_head"] and after["ended_at"]
    session_id = public_id(row)
    assert f"OK {session_id}" in assert_verifies(node, "--all").stdout
    assert_verifies(node, session_id)
    # What was flushed before the crash is still there, and covered by the seal.
    lines = recording_path(node, after).read_text().splitlines()
    assert len(lines) == after["line_count"]
    assert any(marker in line for line in lines)
    assert_serves(node)


def test_it_cuts_a_half_written_last_line_after_a_crash(node: GatewayProcess) -> None:
    application_name, marker = unique_name("crash-torn"), unique_name("torn-marker")
    row = crash_mid_session(node, application_name, marker)
    path = recording_path(node, row)
    whole = path.read_bytes()
    # The crash hit in the middle of an append.
    path.write_bytes(whole + b'[9.5,"sql",{"text":"SELECT half-writ')
    node.start()
    (after,) = session_rows(node, application_name)
    assert after["status"] == "interrupted"
    assert path.read_bytes() == whole
    assert after["line_count"] == len(whole.splitlines())
    assert_verifies(node, public_id(row))
    assert_serves(node)


def test_it_names_the_line_of_an_edited_byte_in_a_sealed_recording(node: GatewayProcess) -> None:
    application_name, marker = unique_name("tamper"), unique_name("tamper-marker")
    conn = open_session_with_statements(node, application_name, marker)
    conn.close()
    row = wait_for_session(node, application_name, sealed=True)
    session_id = public_id(row)
    assert_verifies(node, session_id)
    path = recording_path(node, row)
    original = path.read_bytes()
    lines = original.splitlines(keepends=True)
    number = next(i for i, line in enumerate(lines, start=1) if marker.encode() in line)
    # One byte of the recorded statement: "tamper-marker" becomes "tamper-markex".
    lines[number - 1] = lines[number - 1].replace(b"tamper-marker", b"tamper-markex", 1)
    path.write_bytes(b"".join(lines))
    try:
        assert_tamper_found(node, session_id, number)
    finally:
        path.write_bytes(original)  # the other tests on this node run `verify --all`
    assert_verifies(node, session_id)


def assert_tamper_found(node: GatewayProcess, session_id: str, number: int) -> None:
    after = node.manage("recordings", "verify", session_id)
    assert after.returncode != 0
    assert f"FAILED {session_id}: line {number}:" in after.stdout
    every = node.manage("recordings", "verify", "--all")
    assert every.returncode != 0
    assert f"FAILED {session_id}: line {number}:" in every.stdout
    assert "1 of" in every.stderr and "failed verification" in every.stderr
