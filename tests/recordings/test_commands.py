"""`manage.py recordings verify|purge`: output, and exit status through CommandError."""

import datetime
import io
import uuid

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.utils import timezone

from recordings.actions import open_session, recording_file
from recordings.models import Session
from tests.recordings.recording_files import read_lines, write_lines

pytestmark = pytest.mark.django_db


def run(*args):
    out = io.StringIO()
    call_command("recordings", *args, stdout=out)
    return out.getvalue()


def run_failing(*args):
    out = io.StringIO()
    with pytest.raises(CommandError) as failure:
        call_command("recordings", *args, stdout=out)
    return out.getvalue(), str(failure.value)


def expire(session, days_ago):
    now = timezone.now()
    Session.objects.filter(pk=session.pk).update(
        started_at=now - datetime.timedelta(days=days_ago, hours=2),
        retain_until=now - datetime.timedelta(days=1),
    )


def test_it_verifies_one_session(record_session):
    session = record_session()

    assert run("verify", str(session.public_id)) == f"OK {session.public_id} (9 lines)\n"


def test_it_fails_naming_the_bad_line(record_session):
    session = record_session()
    lines = read_lines(session)
    del lines[2]
    write_lines(session, lines)

    out, error = run_failing("verify", str(session.public_id))

    assert out.startswith(f"FAILED {session.public_id}: line 3: chain link mismatch")
    assert error == "1 of 1 recordings failed verification."


def test_it_verifies_all_and_fails_if_any_fails(record_session):
    good = record_session()
    cut = record_session()
    write_lines(cut, read_lines(cut)[:-1])

    out, error = run_failing("verify", "--all")

    assert out.splitlines() == [
        f"OK {good.public_id} (9 lines)",
        f"FAILED {cut.public_id}: line 9: recording ends at line 8 but the seal covers 9 lines",
    ]
    assert error == "1 of 2 recordings failed verification."


def test_it_passes_all_when_every_chain_verifies(record_session, connection):
    first = record_session()
    second = record_session(status=Session.Status.TERMINATED)
    live, _ = open_session(
        connection=connection, account=None, actor="agent:ci", client_addr="127.0.0.1", application_name=""
    )

    assert run("verify", "--all").splitlines() == [
        f"OK {first.public_id} (9 lines)",
        f"OK {second.public_id} (9 lines)",
        f"OK {live.public_id} (1 line, live: not sealed yet)",
    ]


def test_it_reports_a_missing_file_without_a_line(record_session):
    session = record_session()
    recording_file(session).unlink()

    out, _ = run_failing("verify", "--all")

    assert out == f"FAILED {session.public_id}: recording file {session.recording_path} is missing\n"


def test_it_says_so_when_there_is_nothing_to_verify():
    assert run("verify", "--all") == "No sessions to verify.\n"


def test_it_gives_clear_errors_for_bad_verify_arguments(record_session):
    unknown = uuid.uuid4()
    assert run_failing("verify", str(unknown))[1] == f"No session with id {unknown}."
    assert run_failing("verify", "42")[1] == "'42' is not a session id (a UUID)."
    assert run_failing("verify")[1] == "Give either one SESSION_ID or --all."
    session = record_session()
    assert run_failing("verify", str(session.public_id), "--all")[1] == "Give either one SESSION_ID or --all."
    assert "invalid choice" in run_failing("rewrite")[1]


def test_it_purges_and_reports_ages_and_a_total(record_session):
    old = record_session(actor="agent:nightly")
    expire(old, days_ago=95)
    kept = record_session()

    out = run("purge")

    assert out.splitlines()[0].startswith(f"Deleted {old.public_id} (agent:nightly on warehouse, age 95 days,")
    assert out.splitlines()[-1] == "Deleted 1 recording."
    assert list(Session.objects.values_list("pk", flat=True)) == [kept.pk]
    assert run("purge") == "Deleted 0 recordings.\n"


def test_it_only_reports_on_a_dry_run(record_session):
    old = record_session()
    expire(old, days_ago=31)
    held = record_session()
    expire(held, days_ago=31)
    Session.objects.filter(pk=held.pk).update(legal_hold=True)

    out = run("purge", "--dry-run")

    assert out.splitlines()[0].startswith(f"Would delete {old.public_id} (agent:ci-bot on warehouse, age 31 days,")
    assert out.splitlines()[-1] == "Would delete 1 recording (dry run: nothing was deleted)."
    assert Session.objects.count() == 2
    assert recording_file(old).exists()
