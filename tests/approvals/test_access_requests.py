"""Just-in-time access: the actions, the connection funnel's grant branch, four eyes, expiry and duration bounds."""

import uuid
from datetime import timedelta

import pytest
from django.core.exceptions import ValidationError
from django.utils import timezone
from guardian.shortcuts import assign_perm

from approvals.access_request_actions import (
    AccessRefused,
    access_requests_for,
    active_grant,
    allowed_moves,
    do_decide_access_request,
    do_expire_grants,
    do_request_access,
    do_revoke_grant,
    do_withdraw_access_request,
    end_sessions_under_grant,
    format_seconds,
    get_access_request,
    pending_requests_to_decide,
    sessions_under_grant,
    shown_status,
)
from approvals.models import AccessRequest
from connections.access import access_connection, connections_for, lookup_gateway_login
from connections.actions import do_grant_connect
from connections.models import Connection
from gateway_site.grant_sweep import sweep_expired_grants
from recordings import actions as recording_actions
from recordings.models import Session

from .access_personas import REASON, TWO_HOURS, ask, granted, live_session, make_access_personas, run_out
from .conftest import make_user


@pytest.fixture
def personas(db):
    return make_access_personas()


def may_connect(user, name: str = "warehouse") -> bool:
    try:
        access_connection(user, name, "connect")
    except Connection.DoesNotExist:
        return False
    return True


def gateway_connection(agent: str = "ci-bot", connection: str = "warehouse"):
    login = lookup_gateway_login(agent, connection, timezone.now())
    assert login is not None, "the agent has a usable token"
    return login.connection


# --- asking -----------------------------------------------------------------------


def test_it_records_a_pending_request(personas):
    made = ask(personas)
    made.refresh_from_db()
    assert made.status == AccessRequest.Status.PENDING
    assert (made.connection, made.requester, made.account) == (
        personas.warehouse,
        personas.requester.user,
        personas.requester,
    )
    assert (made.reason, made.duration_seconds) == (REASON, TWO_HOURS)
    assert made.granted_until is None and made.decided_by == ""
    assert not may_connect(personas.requester.user)


def test_it_needs_a_reason(personas):
    for reason in ("", "   \n"):
        with pytest.raises(ValidationError, match="needs a reason"):
            do_request_access(personas.requester.user, "warehouse", reason, TWO_HOURS)
    with pytest.raises(ValidationError, match="at most 1000"):
        do_request_access(personas.requester.user, "warehouse", "x" * 1001, TWO_HOURS)
    assert not AccessRequest.objects.exists()


def test_it_keeps_durations_within_bounds(personas, settings):
    settings.GATEHOUSE_ACCESS_MAX_SECONDS = 3600
    user = personas.requester.user
    for seconds in (59, 0, -5, 3601):
        with pytest.raises(ValidationError, match="access lasts 1m to 1h"):
            do_request_access(user, "warehouse", REASON, seconds)
    for seconds in (90.0, "3600", True):
        with pytest.raises(ValidationError, match="whole number of seconds"):
            do_request_access(user, "warehouse", REASON, seconds)
    assert do_request_access(user, "warehouse", REASON, 60).duration_seconds == 60
    assert do_request_access(user, "billing", REASON, 3600).duration_seconds == 3600


def test_it_caps_durations_at_seven_days_by_default(personas):
    with pytest.raises(ValidationError, match="to 7d, not 7d1s"):
        do_request_access(personas.requester.user, "warehouse", REASON, 7 * 86400 + 1)
    assert do_request_access(personas.requester.user, "warehouse", REASON, 7 * 86400).status == "pending"


def test_it_raises_does_not_exist_for_an_unknown_connection(personas):
    with pytest.raises(Connection.DoesNotExist, match="no connection named 'nowhere'"):
        ask(personas, "nowhere")


def test_it_refuses_a_request_for_a_connection_the_requester_may_use(personas, make_group):
    do_grant_connect(personas.requester, personas.billing)
    with pytest.raises(AccessRefused, match="agent ci-bot may already connect to billing"):
        ask(personas, "billing")
    group = make_group("oncall", personas.reviewer)
    assign_perm("connections.connect", group, personas.warehouse)
    with pytest.raises(AccessRefused, match="alice may already connect to warehouse"):
        do_request_access(personas.reviewer, "warehouse", REASON, TWO_HOURS)
    assert not AccessRequest.objects.exists()


def test_it_refuses_a_request_while_a_grant_is_active(personas):
    granted(personas)
    with pytest.raises(AccessRefused, match="may already connect to warehouse"):
        ask(personas)


def test_it_allows_one_pending_request_per_requester_and_connection(personas):
    first = ask(personas)
    with pytest.raises(AccessRefused, match=f"already has a pending request for warehouse: {first.public_id}"):
        ask(personas)
    assert ask(personas, "billing").status == "pending"  # another connection
    assert do_request_access(personas.outsider, "warehouse", REASON, TWO_HOURS).status == "pending"  # another person
    do_decide_access_request(first.public_id, personas.reviewer, grant=False)
    assert ask(personas, seconds=600).status == "pending"  # refused: it may ask again


def test_it_refuses_inactive_requesters_and_foreign_accounts(personas):
    with pytest.raises(ValueError, match="asks as its own user"):
        do_request_access(personas.outsider, "warehouse", REASON, TWO_HOURS, account=personas.requester)
    personas.requester.user.is_active = False
    personas.requester.user.save()
    with pytest.raises(AccessRefused, match="inactive"):
        ask(personas)
    assert not AccessRequest.objects.exists()


# --- deciding ---------------------------------------------------------------------


def test_it_grants_for_the_requested_duration_from_the_decision(personas):
    made = ask(personas, seconds=600)
    before = timezone.now()
    decided = do_decide_access_request(str(made.public_id), personas.reviewer, grant=True, comment=" ok for today ")
    decided.refresh_from_db()
    assert decided.status == AccessRequest.Status.GRANTED
    assert (decided.decided_by, decided.comment) == ("alice", "ok for today")
    assert before <= decided.granted_from <= timezone.now()
    assert decided.granted_until - decided.granted_from == timedelta(seconds=600)


def test_it_lets_a_grant_open_the_funnel_and_the_gateway_login(personas):
    user = personas.requester.user
    assert not may_connect(user) and gateway_connection() is None
    assert list(connections_for(user, "connect")) == []
    grant = granted(personas)
    assert may_connect(user)
    assert list(connections_for(user, "connect")) == [personas.warehouse]
    assert gateway_connection()["name"] == "warehouse"
    assert active_grant(user, personas.warehouse) == grant


def test_it_grants_only_connect_only_there_and_only_to_the_requester(personas):
    granted(personas)
    user = personas.requester.user
    with pytest.raises(Connection.DoesNotExist):
        access_connection(user, "warehouse", "view_sessions")
    assert not may_connect(user, "billing") and gateway_connection(connection="billing") is None
    assert list(connections_for(user, "view_sessions")) == []
    for other in (personas.reviewer, personas.outsider):
        assert not may_connect(other) and active_grant(other, personas.warehouse) is None


def test_it_combines_a_grant_with_standing_permissions(personas):
    do_grant_connect(personas.requester, personas.billing)
    granted(personas)
    assert list(connections_for(personas.requester.user, "connect")) == [personas.billing, personas.warehouse]


def test_it_ignores_the_grant_of_an_inactive_user(personas):
    granted(personas)
    personas.requester.user.is_active = False
    personas.requester.user.save()
    assert not may_connect(personas.requester.user)
    assert list(connections_for(personas.requester.user, "connect")) == []
    assert lookup_gateway_login("ci-bot", "warehouse", timezone.now()) is None


def test_it_refuses_and_keeps_the_funnel_closed(personas):
    made = ask(personas)
    decided = do_decide_access_request(made.public_id, personas.reviewer, grant=False, comment="use the replica")
    assert (decided.status, decided.decided_by, decided.comment) == ("refused", "alice", "use the replica")
    assert decided.granted_until is None
    assert not may_connect(personas.requester.user) and gateway_connection() is None


def test_it_makes_missing_malformed_and_forbidden_look_the_same(personas):
    made = ask(personas)
    messages = []
    for public_id, user in (
        (made.public_id, personas.outsider),
        (uuid.uuid4(), personas.reviewer),
        ("not-a-uuid", personas.reviewer),
    ):
        with pytest.raises(AccessRequest.DoesNotExist) as raised:
            do_decide_access_request(str(public_id), user, grant=True)
        messages.append(str(raised.value).replace(str(public_id), "ID"))
    assert messages == ["no access request ID"] * 3
    made.refresh_from_db()
    assert made.status == "pending"


def test_it_enforces_four_eyes(personas):
    made = ask(personas)
    with pytest.raises(AccessRefused, match="four eyes: agent:ci-bot may not decide their own access request"):
        do_decide_access_request(made.public_id, personas.requester.user, grant=True)
    assign_perm("connections.review", personas.outsider, personas.warehouse)
    own = do_request_access(personas.outsider, "warehouse", REASON, TWO_HOURS)
    with pytest.raises(AccessRefused, match="four eyes: mallory"):
        do_decide_access_request(own.public_id, personas.outsider, grant=True)
    assert set(AccessRequest.objects.values_list("status", flat=True)) == {"pending"}


def test_it_refuses_a_second_decision(personas):
    grant = granted(personas)
    other = make_user("bob")
    assign_perm("connections.review", other, personas.warehouse)
    with pytest.raises(AccessRefused, match=f"access request {grant.public_id} is already granted"):
        do_decide_access_request(grant.public_id, other, grant=False)
    grant.refresh_from_db()
    assert (grant.status, grant.decided_by) == ("granted", "alice")


def test_it_caps_the_comment(personas):
    made = ask(personas)
    with pytest.raises(ValidationError, match="at most 1000"):
        do_decide_access_request(made.public_id, personas.reviewer, grant=True, comment="x" * 1001)
    made.refresh_from_db()
    assert made.status == "pending"


def test_it_lets_a_group_member_decide(personas, make_group):
    assign_perm("connections.review", make_group("dbas", make_user("bob")), personas.warehouse)
    bob = type(personas.reviewer).objects.get(username="bob")
    assert do_decide_access_request(ask(personas).public_id, bob, grant=True).decided_by == "bob"


# --- withdrawing and revoking -------------------------------------------------------


def test_it_lets_only_the_requester_withdraw_a_pending_request(personas):
    made = ask(personas)
    with pytest.raises(AccessRefused, match="only the requester may withdraw"):
        do_withdraw_access_request(made.public_id, personas.reviewer)
    with pytest.raises(AccessRequest.DoesNotExist, match="no access request"):
        do_withdraw_access_request(made.public_id, personas.outsider)
    withdrawn = do_withdraw_access_request(made.public_id, personas.requester.user)
    assert (withdrawn.status, withdrawn.decided_by) == ("withdrawn", "agent:ci-bot")
    with pytest.raises(AccessRefused, match="already withdrawn"):
        do_withdraw_access_request(made.public_id, personas.requester.user)
    with pytest.raises(AccessRefused, match="already withdrawn"):
        do_decide_access_request(made.public_id, personas.reviewer, grant=True)


def test_it_lets_a_reviewer_revoke_a_grant(personas):
    grant = granted(personas)
    with pytest.raises(AccessRequest.DoesNotExist):
        do_revoke_grant(grant.public_id, personas.outsider)
    assert may_connect(personas.requester.user)
    revoked = do_revoke_grant(grant.public_id, personas.reviewer)
    revoked.refresh_from_db()
    assert (revoked.status, revoked.ended_by, revoked.decided_by) == ("revoked", "alice", "alice")
    assert revoked.granted_until <= timezone.now()
    assert not may_connect(personas.requester.user) and gateway_connection() is None
    with pytest.raises(AccessRefused, match="is revoked, not an active grant"):
        do_revoke_grant(grant.public_id, personas.reviewer)


def test_it_revokes_only_active_grants(personas):
    made = ask(personas)
    with pytest.raises(AccessRefused, match="is pending, not an active grant"):
        do_revoke_grant(made.public_id, personas.reviewer)
    grant = run_out(do_decide_access_request(made.public_id, personas.reviewer, grant=True))
    with pytest.raises(AccessRefused, match="has already run out"):
        do_revoke_grant(grant.public_id, personas.reviewer)


# --- expiry -----------------------------------------------------------------------


def test_it_stops_honouring_a_grant_once_it_runs_out(personas):
    grant = run_out(granted(personas))
    assert grant.status == "granted" and shown_status(grant) == "expired"  # the sweeper has not run yet
    assert not may_connect(personas.requester.user)
    assert list(connections_for(personas.requester.user, "connect")) == []
    assert gateway_connection() is None
    assert active_grant(personas.requester.user, personas.warehouse) is None


def test_it_expires_grants_that_ran_out_once(personas):
    current = granted(personas)
    over = run_out(do_decide_access_request(ask(personas, "billing").public_id, make_reviewer(personas), grant=True))
    pending = do_request_access(personas.outsider, "warehouse", REASON, TWO_HOURS)
    expired = do_expire_grants()
    assert [grant.public_id for grant in expired] == [over.public_id]
    assert expired[0].status == "expired"
    statuses = dict(AccessRequest.objects.values_list("public_id", "status"))
    assert statuses == {current.public_id: "granted", over.public_id: "expired", pending.public_id: "pending"}
    assert do_expire_grants() == []
    assert do_expire_grants(now=timezone.now() + timedelta(hours=3))[0].public_id == current.public_id


def make_reviewer(personas):
    """A reviewer of billing who is not the requester."""
    person = make_user("bob")
    assign_perm("connections.review", person, personas.billing)
    return person


def test_it_finds_the_live_sessions_an_ended_grant_allowed(personas):
    grant = granted(personas)
    live = live_session(personas)
    live_session(personas, status=Session.Status.ENDED)
    live_session(personas, connection=personas.billing)
    assert sessions_under_grant(grant) == []  # still granted
    run_out(grant)
    assert sessions_under_grant(grant) == [str(live.public_id)]
    do_grant_connect(personas.requester, personas.warehouse)
    assert sessions_under_grant(grant) == []  # standing connect keeps them


def test_it_leaves_sessions_alone_when_the_connection_says_so(personas):
    personas.warehouse.end_sessions_on_grant_expiry = False
    personas.warehouse.save()
    grant = run_out(granted(personas))
    live_session(personas)
    assert end_sessions_under_grant(grant, by="gatehouse", reason="expired") == []
    assert sweep_expired_grants() == 1
    assert Session.objects.get().status == "live"


def test_it_sweeps_expired_grants(personas):
    grant = run_out(granted(personas))
    assert sweep_expired_grants() == 1
    grant.refresh_from_db()
    assert grant.status == "expired"
    assert sweep_expired_grants() == 0


@pytest.mark.skipif(
    not hasattr(recording_actions, "request_session_end"), reason="needs recordings.actions.request_session_end"
)
def test_it_asks_to_end_the_live_sessions_of_an_expired_grant(personas):
    run_out(granted(personas))
    live = live_session(personas)
    assert sweep_expired_grants() == 1
    live.refresh_from_db()
    assert live.terminated_by == "gatehouse"


@pytest.mark.skipif(
    not hasattr(recording_actions, "request_session_end"), reason="needs recordings.actions.request_session_end"
)
def test_it_asks_to_end_the_live_sessions_of_a_revoked_grant(personas, django_capture_on_commit_callbacks):
    grant = granted(personas)
    live = live_session(personas)
    with django_capture_on_commit_callbacks(execute=True):
        do_revoke_grant(grant.public_id, personas.reviewer)
    live.refresh_from_db()
    assert live.terminated_by == "alice"


def test_it_defaults_to_ending_sessions_on_grant_expiry(db):
    connection = Connection.objects.create(name="fresh", host="db.internal", database="app", username="etl")
    assert connection.end_sessions_on_grant_expiry is True


# --- who sees what ----------------------------------------------------------------


def test_it_shows_requests_to_their_requester_and_the_connections_reviewers(personas):
    made = ask(personas)
    theirs = do_request_access(personas.outsider, "billing", REASON, TWO_HOURS)
    assert list(access_requests_for(personas.requester.user)) == [made]
    assert list(access_requests_for(personas.reviewer)) == [made]
    assert list(access_requests_for(personas.outsider)) == [theirs]
    assert get_access_request(personas.reviewer, str(made.public_id)) == made
    for public_id in (made.public_id, uuid.uuid4(), "x" * 400):
        with pytest.raises(AccessRequest.DoesNotExist, match="no access request"):
            get_access_request(personas.outsider, public_id)


def test_it_lists_only_others_pending_requests_to_decide(personas):
    made = ask(personas)
    assert list(pending_requests_to_decide(personas.reviewer)) == [made]
    assert list(pending_requests_to_decide(personas.requester.user)) == []  # its own
    assert list(pending_requests_to_decide(personas.outsider)) == []
    do_decide_access_request(made.public_id, personas.reviewer, grant=False)
    assert list(pending_requests_to_decide(personas.reviewer)) == []


def test_it_offers_each_persona_its_moves(personas):
    made = ask(personas)
    assert allowed_moves(made, personas.reviewer) == {"grant", "refuse"}
    assert allowed_moves(made, personas.requester.user) == {"withdraw"}
    assert allowed_moves(made, personas.outsider) == set()
    grant = do_decide_access_request(made.public_id, personas.reviewer, grant=True)
    assert allowed_moves(grant, personas.reviewer) == {"revoke"}
    assert allowed_moves(grant, personas.requester.user) == {"revoke"}  # it also reviews warehouse
    assert allowed_moves(run_out(grant), personas.reviewer) == set()


def test_it_formats_durations_as_they_are_parsed():
    assert [format_seconds(s) for s in (0, 59, 60, 90, 7200, 5400, 86400 * 7 + 1)] == [
        "0s",
        "59s",
        "1m",
        "1m30s",
        "2h",
        "1h30m",
        "7d1s",
    ]
