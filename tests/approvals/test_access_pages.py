"""The access request pages over real HTTP: the list and request form, one request and its moves, the fragment."""

import uuid

import pytest
from django.test import Client

from approvals.access_request_actions import do_decide_access_request
from approvals.access_views import pending_requests_fragment
from approvals.models import AccessRequest

from .access_personas import REASON, ask, granted, make_access_personas
from .conftest import make_user

pytestmark = pytest.mark.urls("tests.approvals.access_urlconf")


@pytest.fixture
def personas(db):
    return make_access_personas()


def logged_in(user) -> Client:
    client = Client(enforce_csrf_checks=False)
    client.force_login(user)
    return client


def detail_url(made: AccessRequest) -> str:
    return f"/access/{made.public_id}/"


def test_it_sends_strangers_to_the_login_page(personas):
    made = ask(personas)
    for url in ("/access/", detail_url(made)):
        response = Client().get(url)
        assert response.status_code == 302 and response["Location"].startswith("/accounts/login/")


def test_it_lists_pending_requests_to_their_reviewers_only(personas):
    made = ask(personas)
    page = logged_in(personas.reviewer).get("/access/").content.decode()
    assert 'id="pending-requests"' in page and detail_url(made) in page and "agent ci-bot" in page
    outsider_page = logged_in(personas.outsider).get("/access/").content.decode()
    assert detail_url(made) not in outsider_page
    assert "No access requests are waiting for you." in outsider_page


def test_it_lets_a_person_ask_for_access(personas):
    bob = make_user("bob")
    client = logged_in(bob)
    response = client.post("/access/", {"connection": "warehouse", "reason": REASON, "duration": "45m"})
    made = AccessRequest.objects.get()
    assert response.status_code == 302 and response["Location"] == detail_url(made)
    assert (made.requester, made.account, made.duration_seconds) == (bob, None, 2700)
    page = client.get("/access/").content.decode()
    assert 'id="my-requests"' in page and detail_url(made) in page


def test_it_explains_a_bad_request_form(personas):
    client = logged_in(make_user("bob"))
    cases = [
        ({"connection": "nowhere", "reason": REASON, "duration": "1h"}, "no connection named &#x27;nowhere&#x27;"),
        ({"connection": "warehouse", "reason": REASON, "duration": "soon"}, "is not a duration"),
        ({"connection": "warehouse", "reason": REASON, "duration": "30s"}, "access lasts 1m to 7d, not 30s"),
        ({"connection": "warehouse", "reason": "", "duration": "1h"}, "This field is required."),
        ({"connection": "warehouse", "reason": "x" * 1001, "duration": "1h"}, "at most 1000 characters"),
        ({"connection": "w" * 64, "reason": REASON, "duration": "1h"}, "at most 63 characters"),
    ]
    for data, message in cases:
        response = client.post("/access/", data)
        assert response.status_code == 400, data
        assert message in response.content.decode(), data
    assert not AccessRequest.objects.exists()


def test_it_shows_a_request_to_its_reviewer_and_requester_only(personas):
    made = ask(personas)
    page = logged_in(personas.reviewer).get(detail_url(made)).content.decode()
    assert REASON in page and 'value="grant"' in page and 'value="refuse"' in page
    own = logged_in(personas.requester.user).get(detail_url(made)).content.decode()
    assert 'value="withdraw"' in own and 'value="grant"' not in own
    outsider = logged_in(personas.outsider)
    for url in (detail_url(made), f"/access/{uuid.uuid4()}/", "/access/not-an-id/"):
        assert outsider.get(url).status_code == 404


def test_it_grants_and_revokes_from_the_page(personas):
    made = ask(personas)
    client = logged_in(personas.reviewer)
    response = client.post(detail_url(made), {"move": "grant", "comment": "for the backfill"})
    assert response.status_code == 302 and response["Location"] == detail_url(made)
    made.refresh_from_db()
    assert (made.status, made.decided_by, made.comment) == ("granted", "alice", "for the backfill")
    assert 'value="revoke"' in client.get(detail_url(made)).content.decode()
    assert client.post(detail_url(made), {"move": "revoke"}).status_code == 302
    made.refresh_from_db()
    assert (made.status, made.ended_by) == ("revoked", "alice")


def test_it_refuses_from_the_page(personas):
    made = ask(personas)
    logged_in(personas.reviewer).post(detail_url(made), {"move": "refuse"})
    made.refresh_from_db()
    assert (made.status, made.decided_by) == ("refused", "alice")


def test_it_applies_four_eyes_and_the_funnel_on_the_page(personas):
    made = ask(personas)
    own = logged_in(personas.requester.user).post(detail_url(made), {"move": "grant"})
    assert own.status_code == 409
    assert "four eyes: agent:ci-bot may not decide their own access request" in own.content.decode()
    assert logged_in(personas.outsider).post(detail_url(made), {"move": "grant"}).status_code == 404
    made.refresh_from_db()
    assert made.status == "pending"


def test_it_lets_the_requester_withdraw_from_the_page(personas):
    made = ask(personas)
    assert logged_in(personas.requester.user).post(detail_url(made), {"move": "withdraw"}).status_code == 302
    made.refresh_from_db()
    assert made.status == "withdrawn"
    again = logged_in(personas.reviewer).post(detail_url(made), {"move": "grant"})
    assert again.status_code == 409 and "already withdrawn" in again.content.decode()


def test_it_rejects_unknown_moves_and_oversized_comments(personas):
    made = ask(personas)
    client = logged_in(personas.reviewer)
    assert client.post(detail_url(made), {"move": "promote"}).status_code == 400
    assert client.post(detail_url(made), {"move": "grant", "comment": "x" * 1001}).status_code == 400
    made.refresh_from_db()
    assert made.status == "pending"


def test_it_needs_the_csrf_token_to_decide(personas):
    made = ask(personas)
    client = Client(enforce_csrf_checks=True)
    client.force_login(personas.reviewer)
    assert client.post(detail_url(made), {"move": "grant"}).status_code == 403
    made.refresh_from_db()
    assert made.status == "pending"


def test_it_renders_the_pending_fragment_per_user(personas):
    made = ask(personas)
    fragment = pending_requests_fragment(personas.reviewer)
    assert fragment.lstrip().startswith('<section id="pending-requests"') and detail_url(made) in fragment
    assert 'hx-swap-oob="true"' in pending_requests_fragment(personas.reviewer, oob=True)
    assert detail_url(made) not in pending_requests_fragment(personas.outsider)
    assert detail_url(made) not in pending_requests_fragment(personas.requester.user)
    do_decide_access_request(made.public_id, personas.reviewer, grant=False)
    assert detail_url(made) not in pending_requests_fragment(personas.reviewer)


def test_it_shows_history_to_reviewers(personas):
    grant = granted(personas)
    page = logged_in(personas.reviewer).get("/access/").content.decode()
    assert 'id="access-history"' in page and detail_url(grant) in page and "granted" in page
