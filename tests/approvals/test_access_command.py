"""`manage.py access` end to end through call_command: the same funnel, four eyes and effects as the actions."""

import io
import uuid
from datetime import timedelta

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from approvals.models import AccessRequest
from connections.access import access_connection
from connections.actions import do_grant_connect

from .access_personas import REASON, make_access_personas, run_out


@pytest.fixture
def personas(db):
    return make_access_personas()


def run(*args) -> str:
    out = io.StringIO()
    call_command("access", *args, stdout=out, stderr=io.StringIO())
    return out.getvalue()


def refused(*args) -> CommandError:
    with pytest.raises(CommandError) as error:
        run(*args)
    return error.value


def request(connection: str = "warehouse", duration: str = "2h") -> AccessRequest:
    run("request", "ci-bot", connection, "--for", duration, "--reason", REASON)
    return AccessRequest.objects.filter(connection__name=connection).latest("created_at")


def test_it_asks_for_access_for_an_agent(personas):
    out = run("request", "ci-bot", "warehouse", "--for", "1h30m", "--reason", REASON)
    made = AccessRequest.objects.get()
    assert out == f"Access request {made.public_id}: agent ci-bot asks for warehouse for 1h30m; pending.\n"
    assert (made.account, made.requester, made.duration_seconds) == (personas.requester, personas.requester.user, 5400)


def test_it_explains_a_bad_request(personas):
    assert str(refused("request", "nobody", "warehouse", "--for", "1h", "--reason", REASON)) == (
        "no agent named 'nobody'; create it with: manage.py agents add nobody"
    )
    assert str(refused("request", "ci-bot", "nowhere", "--for", "1h", "--reason", REASON)) == (
        "no connection named 'nowhere'; see: manage.py connections list"
    )
    assert "--for: 'soon' is not a duration" in str(
        refused("request", "ci-bot", "warehouse", "--for", "soon", "--reason", REASON)
    )
    assert (
        str(refused("request", "ci-bot", "warehouse", "--for", "8d", "--reason", REASON))
        == "access lasts 1m to 7d, not 8d"
    )
    assert (
        str(refused("request", "ci-bot", "warehouse", "--for", "1h", "--reason", " "))
        == "an access request needs a reason"
    )
    do_grant_connect(personas.requester, personas.billing)
    assert "may already connect to billing" in str(
        refused("request", "ci-bot", "billing", "--for", "1h", "--reason", "x")
    )
    assert not AccessRequest.objects.exists()


def test_it_says_when_there_are_no_requests(db):
    assert run("list") == "No access requests.\n"
    assert run("list", "--pending") == "No pending access requests.\n"


def test_it_lists_requests_as_a_table(personas):
    made = request()
    AccessRequest.objects.filter(pk=made.pk).update(created_at=timezone.now() - timedelta(minutes=7))
    header, row = run("list").splitlines()
    assert header.split() == ["ID", "STATUS", "CONNECTION", "REQUESTER", "FOR", "AGE", "UNTIL", "REASON"]
    assert row.split()[:7] == [str(made.public_id), "pending", "warehouse", "ci-bot", "2h", "7m", "-"]
    assert row.endswith(REASON)


def test_it_lists_only_what_a_user_may_see(personas):
    made = request()
    assert str(made.public_id) in run("list", "--pending", "--as", "alice")
    assert run("list", "--as", "mallory") == "No access requests.\n"
    assert str(refused("list", "--as", "nobody")) == "no user named 'nobody'"
    assert str(refused("list", "--limit", "0")) == "--limit must be at least 1"


def test_it_grants_as_a_reviewer(personas):
    made = request()
    out = run("grant", str(made.public_id), "--as", "alice", "--comment", "ok")
    made.refresh_from_db()
    assert made.status == "granted" and made.comment == "ok"
    assert out.startswith(f"Access request {made.public_id} is granted (by alice) until ")
    assert access_connection(personas.requester.user, "warehouse", "connect") == personas.warehouse
    assert run("list", "--pending") == "No pending access requests.\n"


def test_it_refuses_as_a_reviewer(personas):
    made = request()
    out = run("refuse", str(made.public_id), "--as", "alice", "--comment", "use the replica")
    assert out == f"Access request {made.public_id} is refused (by alice).\n"


def test_it_applies_the_funnel_and_four_eyes(personas):
    made = request()
    for public_id in (str(made.public_id), str(uuid.uuid4()), "12"):
        assert str(refused("grant", public_id, "--as", "mallory")) == (
            f"no access request {public_id}; see: manage.py access list --pending --as mallory"
        )
    assert str(refused("grant", str(made.public_id), "--as", "agent:ci-bot")) == (
        "four eyes: agent:ci-bot may not decide their own access request"
    )
    run("refuse", str(made.public_id), "--as", "alice")
    assert (
        str(refused("grant", str(made.public_id), "--as", "alice"))
        == f"access request {made.public_id} is already refused"
    )
    assert str(refused("grant", str(made.public_id), "--as", "nobody")) == "no user named 'nobody'"


def test_it_revokes_a_grant(personas):
    made = request()
    run("grant", str(made.public_id), "--as", "alice")
    assert str(refused("revoke", str(made.public_id), "--as", "mallory")).startswith("no access request")
    assert (
        run("revoke", str(made.public_id), "--as", "alice")
        == f"Access request {made.public_id} is revoked (by alice).\n"
    )
    assert str(refused("revoke", str(made.public_id), "--as", "alice")) == (
        f"access request {made.public_id} is revoked, not an active grant"
    )


def test_it_shows_a_run_out_grant_as_expired(personas):
    made = request()
    run("grant", str(made.public_id), "--as", "alice")
    run_out(made)
    row = run("list").splitlines()[1]
    assert row.split()[1] == "expired"
