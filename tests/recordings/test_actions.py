"""Opening, sealing, verifying, recovering and purging sessions, with real files and a real key."""

import asyncio
import datetime
import json
import re

import pytest
from django.conf import settings
from django.contrib.auth.models import User
from django.utils import timezone

from connections.models import Connection, ServiceAccount
from recordings.actions import (
    mark_interrupted_sessions,
    open_session,
    purge_expired,
    recording_file,
    seal_finished_writer,
    seal_session,
    verify_session,
)
from recordings.chain import ChainWriter, Problem, verify_file
from recordings.models import Session
from recordings.signing import sign_seal, verify_seal
from recordings.writer import RecordingFlusher
from tests.recordings.recording_files import STATEMENTS, read_lines, write_lines

pytestmark = pytest.mark.django_db

SEALED_LINES = 1 + len(STATEMENTS) + 1  # header, events, end


def open_live(connection, **overrides):
    fields = {
        "connection": connection,
        "account": None,
        "actor": "agent:ci-bot",
        "client_addr": "10.0.0.7:51544",
        "application_name": "pgbench",
    }
    return open_session(**(fields | overrides))


def test_it_opens_a_live_session_with_its_header_on_disk(connection, recording_store):
    session, writer = open_live(connection)

    session.refresh_from_db()
    assert session.status == Session.Status.LIVE
    assert session.retain_until - session.started_at == datetime.timedelta(days=30)
    assert re.fullmatch(rf"\d{{4}}/\d{{2}}/\d{{2}}/{session.public_id}\.jsonl", session.recording_path)
    path = recording_file(session)
    assert path == writer.path and path.is_relative_to(recording_store)
    header = json.loads(path.read_bytes())
    assert header["gatehouse"] == {
        "session": str(session.public_id),
        "actor": "agent:ci-bot",
        "account": None,
        "connection": "warehouse",
        "kind": "postgres",
        "client_addr": "10.0.0.7:51544",
        "node": settings.GATEHOUSE_NODE_ID,
        "application_name": "pgbench",
        "started_at": session.started_at.isoformat(),
    }
    assert session.node == settings.GATEHOUSE_NODE_ID
    assert verify_file(session.public_id, path).line_count == 1


def test_it_opens_a_session_with_one_insert_from_preloaded_values(connection, django_assert_num_queries):
    user = User.objects.create(username="sa-ci-bot")
    account = ServiceAccount.objects.create(name="ci-bot", user=user, scram_salt="c2FsdA==")
    # The gateway builds these from its login lookup instead of loading them again.
    preloaded = Connection(id=connection.id, name=connection.name, retention_days=7)

    with django_assert_num_queries(1):
        session, writer = open_live(preloaded, account=ServiceAccount(id=account.id, name=account.name))

    session.refresh_from_db()
    assert (session.connection_id, session.account_id) == (connection.id, account.id)
    assert session.retain_until - session.started_at == datetime.timedelta(days=7)
    assert json.loads(writer.path.read_bytes())["gatehouse"]["account"] == "ci-bot"


def test_it_seals_a_session_with_its_counters_and_a_valid_signature(record_session):
    session = record_session()

    assert session.status == Session.Status.ENDED
    assert session.ended_at is not None
    assert (session.statements, session.errors, session.bytes_from_client, session.bytes_to_client) == (3, 1, 310, 920)
    assert session.line_count == SEALED_LINES
    assert session.chain_head == verify_file(session.public_id, recording_file(session)).chain_head
    assert verify_seal(session.public_id, session.chain_head, session.line_count, session.seal)
    result = verify_session(session)
    assert result.ok and result.line_count == SEALED_LINES and result.problem is Problem.OK


def test_it_seals_only_once_and_only_with_a_final_status(connection, record_session):
    _, writer = open_live(connection)
    with pytest.raises(RuntimeError, match="flush"):
        seal_session(writer, status="ended", counters={})
    writer.close()
    writer.flush_now()
    with pytest.raises(ValueError, match="live"):
        seal_session(writer, status="live", counters={})
    with pytest.raises(ValueError, match="unknown counters: rows"):
        seal_session(writer, status="ended", counters={"rows": 5})

    assert seal_session(writer, status="terminated", counters={"statements": 1})
    sealed = Session.objects.get(public_id=writer.session_id)
    assert not seal_session(writer, status="ended", counters={"statements": 99})

    again = Session.objects.get(public_id=writer.session_id)
    assert (again.status, again.statements, again.seal) == ("terminated", 1, sealed.seal)


def test_it_names_an_edited_line(record_session):
    session = record_session()
    lines = read_lines(session)
    lines[2] = lines[2].replace(b"***", b"bob@example.com"[:3])
    write_lines(session, lines)

    result = verify_session(session)

    assert (result.ok, result.bad_line, result.problem) == (False, 3, Problem.MISMATCH)


def test_it_names_an_edited_byte_of_a_multibyte_character(record_session):
    session = record_session()
    raw = bytearray(recording_file(session).read_bytes())
    raw[raw.index("☕".encode()) + 2] ^= 0x01  # still valid UTF-8 text, different character
    recording_file(session).write_bytes(bytes(raw))

    result = verify_session(session)

    assert (result.ok, result.bad_line) == (False, 6)


def test_it_names_the_line_after_a_deleted_one(record_session):
    session = record_session()
    lines = read_lines(session)
    del lines[4]
    write_lines(session, lines)

    result = verify_session(session)

    assert (result.ok, result.bad_line, result.problem) == (False, 5, Problem.MISMATCH)


def test_it_names_the_first_of_two_swapped_lines(record_session):
    session = record_session()
    lines = read_lines(session)
    lines[3], lines[5] = lines[5], lines[3]
    write_lines(session, lines)

    result = verify_session(session)

    assert (result.ok, result.bad_line, result.problem) == (False, 4, Problem.MISMATCH)


def test_it_detects_a_deleted_header(record_session):
    session = record_session()
    write_lines(session, read_lines(session)[1:])

    result = verify_session(session)

    assert (result.ok, result.bad_line) == (False, 1)


def test_it_detects_a_cut_tail(record_session):
    session = record_session()
    write_lines(session, read_lines(session)[:-2])

    result = verify_session(session)

    assert (result.ok, result.problem, result.bad_line) == (False, Problem.TRUNCATED, SEALED_LINES - 1)
    assert result.reason == f"recording ends at line {SEALED_LINES - 2} but the seal covers {SEALED_LINES} lines"


def test_it_detects_a_tail_cut_mid_line(record_session):
    session = record_session()
    path = recording_file(session)
    path.write_bytes(path.read_bytes()[:-30])

    result = verify_session(session)

    assert (result.ok, result.problem, result.bad_line) == (False, Problem.INCOMPLETE, SEALED_LINES)


def test_it_detects_lines_added_after_the_seal(record_session):
    session = record_session()
    lines = read_lines(session)
    result = verify_file(session.public_id, recording_file(session))
    # Anyone can extend a keyless chain; the seal is what gives it away.
    chain = ChainWriter(session.public_id, bytes.fromhex(result.chain_head), result.line_count)
    write_lines(session, [*lines, chain.encode_line([99.0, "sql", {"text": "DROP TABLE audit"}])])

    result = verify_session(session)

    assert (result.ok, result.problem, result.bad_line) == (False, Problem.EXTRA_LINES, SEALED_LINES + 1)


def test_it_detects_a_recording_rewritten_with_fresh_links(record_session):
    session = record_session()
    chain = ChainWriter(session.public_id)
    forged = []
    for line in read_lines(session):
        value = json.loads(line)
        if isinstance(value, dict):
            value.pop("chain")
        else:
            value = value[:3]
            if value[1] == "sql":
                value[2]["text"] = "SELECT 1"
        forged.append(chain.encode_line(value))
    write_lines(session, forged)
    assert verify_file(session.public_id, recording_file(session)).ok

    result = verify_session(session)

    assert (result.ok, result.problem) == (False, Problem.HEAD_MISMATCH)
    assert "rewritten" in result.reason


def test_it_detects_a_forged_seal(record_session):
    session = record_session()
    cut = read_lines(session)[:-3]
    write_lines(session, cut)
    head = verify_file(session.public_id, recording_file(session)).chain_head
    # The row now matches the cut file, but the signature was not made for it.
    Session.objects.filter(pk=session.pk).update(line_count=len(cut), chain_head=head)
    session.refresh_from_db()

    result = verify_session(session)

    assert (result.ok, result.problem, result.bad_line) == (False, Problem.BAD_SEAL, None)
    assert "forged seal" in result.describe()


def test_it_detects_a_seal_signed_by_another_key(record_session, settings, tmp_path):
    session = record_session()
    settings.GATEHOUSE_SIGNING_KEY_FILE = tmp_path / "attacker.key"
    forged = sign_seal(session.public_id, session.chain_head, session.line_count)
    settings.GATEHOUSE_SIGNING_KEY_FILE = tmp_path / "keys" / "recording-signing.key"
    Session.objects.filter(pk=session.pk).update(seal=forged)
    session.refresh_from_db()

    assert verify_session(session).problem is Problem.BAD_SEAL


def test_it_reports_a_missing_file(record_session):
    session = record_session()
    recording_file(session).unlink()

    result = verify_session(session)

    assert (result.ok, result.problem) == (False, Problem.MISSING_FILE)
    assert result.describe() == f"recording file {session.recording_path} is missing"


def test_it_verifies_a_live_session_so_far_and_says_it_is_unsealed(connection):
    session, writer = open_live(connection)
    writer.event("sql", {"text": "SELECT 1"})
    writer.flush_now()
    # A batch being appended right now: its last line has no newline yet.
    with recording_file(session).open("ab") as handle:
        handle.write(b'[0.5,"result",{"tag":')

    result = verify_session(session)

    assert result.ok and result.problem is Problem.UNSEALED and result.line_count == 2
    assert "not sealed" in result.reason


def crash_mid_write(session, writer, events):
    """Write all but the second half of the last of `events`, as a kill -9 mid-append would leave it."""
    for kind, data in events:
        writer.event(kind, data)
    batch = writer.take_pending()
    writer.write_batch(batch[:-1])
    t, kind, data = batch[-1]
    partial = ChainWriter(writer.session_id, bytes.fromhex(writer.chain_head), writer.line_count).encode_line(
        [round(t, 6), kind, data]
    )
    with recording_file(session).open("ab") as handle:
        handle.write(partial[: len(partial) // 2])


def test_it_recovers_a_session_cut_off_mid_write(connection):
    session, writer = open_live(connection)
    crash_mid_write(session, writer, STATEMENTS)
    assert verify_file(session.public_id, recording_file(session)).problem is Problem.INCOMPLETE

    assert mark_interrupted_sessions() == 1

    session.refresh_from_db()
    assert session.status == Session.Status.INTERRUPTED and session.ended_at is not None
    assert session.line_count == len(STATEMENTS)  # header + all but the cut event
    result = verify_session(session)
    assert result.ok and result.line_count == len(STATEMENTS)
    assert recording_file(session).read_bytes().endswith(b"]\n")


def test_it_recovers_a_session_that_crashed_before_its_first_flush(connection):
    session, writer = open_live(connection)
    writer.event("sql", {"text": "never written"})

    assert mark_interrupted_sessions() == 1

    session.refresh_from_db()
    assert (session.status, session.line_count) == (Session.Status.INTERRUPTED, 1)
    assert verify_session(session).ok


@pytest.mark.parametrize("status", [Session.Status.ENDED, Session.Status.TERMINATED])
def test_it_keeps_the_end_a_session_recorded_before_its_seal_was_lost(connection, status):
    session, writer = open_live(connection)
    writer.event("sql", {"n": 1, "text": "SELECT 1"})
    writer.close(status, {"statements": 1})
    writer.flush_now()  # the "end" event is on disk; the node dies before sealing

    assert mark_interrupted_sessions() == 1

    session.refresh_from_db()
    assert (session.status, session.line_count) == (status, 3)
    assert verify_session(session).ok


def test_it_leaves_the_live_sessions_of_other_nodes_alone(connection, settings):
    ours, _ = open_live(connection)
    settings.GATEHOUSE_NODE_ID = "node-b"
    theirs, _ = open_live(connection)
    settings.GATEHOUSE_NODE_ID = ours.node

    assert mark_interrupted_sessions() == 1

    ours.refresh_from_db()
    theirs.refresh_from_db()
    assert (ours.status, theirs.status) == (Session.Status.INTERRUPTED, Session.Status.LIVE)
    assert theirs.node == "node-b" and not theirs.seal


def test_it_leaves_sealed_sessions_alone_when_recovering(record_session):
    ended = record_session()
    terminated = record_session(status=Session.Status.TERMINATED)

    assert mark_interrupted_sessions() == 0

    for before in (ended, terminated):
        after = Session.objects.get(pk=before.pk)
        assert (after.status, after.seal, after.ended_at) == (before.status, before.seal, before.ended_at)


def test_it_seals_only_the_intact_part_of_a_damaged_live_recording(connection):
    session, writer = open_live(connection)
    for kind, data in STATEMENTS:
        writer.event(kind, data)
    writer.flush_now()
    lines = read_lines(session)
    lines[3] = lines[3].replace(b"shipped", b"pending")
    write_lines(session, lines)

    assert mark_interrupted_sessions() == 1

    session.refresh_from_db()
    assert session.line_count == 3
    result = verify_session(session)
    assert (result.ok, result.bad_line, result.problem) == (False, 4, Problem.MISMATCH)


def age(session, *, days_left, started_days_ago=40):
    now = timezone.now()
    Session.objects.filter(pk=session.pk).update(
        started_at=now - datetime.timedelta(days=started_days_ago),
        retain_until=now + datetime.timedelta(days=days_left),
    )
    session.refresh_from_db()
    return session


def test_it_purges_only_expired_sessions_without_a_hold(connection, record_session):
    expired = age(record_session(), days_left=-1)
    held = age(record_session(), days_left=-1)
    Session.objects.filter(pk=held.pk).update(legal_hold=True)
    young = age(record_session(), days_left=1)
    live, _ = open_live(connection)
    live = age(live, days_left=-5)
    expired_path = recording_file(expired)

    purged = purge_expired(dry_run=False)

    assert [session.public_id for session in purged] == [expired.public_id]
    assert not expired_path.exists()
    assert expired_path.parent.is_dir()  # the other recordings of that day are still there
    assert not Session.objects.filter(public_id=expired.public_id).exists()
    for kept in (held, young, live):
        assert Session.objects.filter(pk=kept.pk).exists()
        assert recording_file(kept).exists()


def test_it_removes_emptied_date_directories_but_not_the_root(record_session, recording_store):
    expired = age(record_session(), days_left=-1)
    path = recording_file(expired)

    purge_expired(dry_run=False)

    assert not path.exists()
    assert list(recording_store.iterdir()) == []  # YYYY/MM/DD all gone
    assert recording_store.is_dir()


def test_it_deletes_nothing_on_a_dry_run(record_session):
    expired = age(record_session(), days_left=-1)
    young = age(record_session(), days_left=3)

    would_go = purge_expired(dry_run=True)

    assert [session.pk for session in would_go] == [expired.pk]
    for session in (expired, young):
        assert Session.objects.filter(pk=session.pk).exists()
        assert recording_file(session).exists()


def test_it_purges_a_session_whose_file_is_already_gone(record_session):
    expired = age(record_session(), days_left=-1)
    recording_file(expired).unlink()

    assert [session.pk for session in purge_expired(dry_run=False)] == [expired.pk]
    assert not Session.objects.filter(pk=expired.pk).exists()


@pytest.mark.django_db(transaction=True)
def test_it_seals_through_the_flusher_like_the_gateway(connection):
    session, writer = open_live(connection)

    async def run_session():
        flusher = RecordingFlusher(60, seal_finished_writer)
        flusher.register(writer)
        for kind, data in STATEMENTS:
            writer.event(kind, data)
        await flusher.flush_once()
        writer.close("terminated", {"statements": 3, "errors": 1, "rows": 17})
        await flusher.drain()

    asyncio.run(run_session())

    session.refresh_from_db()
    assert (session.status, session.statements, session.errors) == (Session.Status.TERMINATED, 3, 1)
    assert session.line_count == SEALED_LINES
    assert verify_session(session).ok
    end = json.loads(read_lines(session)[-1])
    assert end[1:3] == ["end", {"status": "terminated", "statements": 3, "errors": 1, "rows": 17}]
