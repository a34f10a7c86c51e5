"""Reviews pages: pending and history, one review, and deciding it through approvals.actions."""

import re
import uuid

import pytest
from django.test import Client
from guardian.shortcuts import assign_perm

from approvals.models import Review
from tests.web.conftest import make_user

HTMX = {"HX-Request": "true"}


def decide(client, user, review, decision, comment="", headers=None):
    client.force_login(user)
    return client.post(
        f"/reviews/{review.public_id}/decide", {"decision": decision, "comment": comment}, headers=headers or {}
    )


def test_it_lists_pending_reviews_with_keyboard_buttons_and_the_history(client, personas, request_review):
    pending = request_review("DELETE FROM orders WHERE id = 7")
    decided = request_review("DELETE FROM orders WHERE id = 8")
    decide(client, personas.reviewer, decided, "deny")
    client.force_login(personas.reviewer)

    html = client.get("/reviews/").content.decode()

    assert "data-keyboard-reviews" in html and 'ws-connect="/ws/feed/"' in html
    assert 'id="review-comment"' in html
    row = re.search(rf'<tr data-review-row="{pending.public_id}">.*?</tr>', html, re.S).group(0)
    assert 'data-decision="approve"' in row and 'data-decision="deny"' in row
    assert f'hx-post="/reviews/{pending.public_id}/decide"' in row
    assert f'data-review-row="{decided.public_id}"' not in html
    assert f'href="/reviews/{decided.public_id}/"' in html  # in the history


def test_it_filters_the_history_by_status(client, personas, request_review):
    pending = request_review("SELECT pending")
    denied = request_review("SELECT denied")
    decide(client, personas.reviewer, denied, "deny")

    only_denied = client.get("/reviews/", {"status": "denied"}).content.decode()
    history = only_denied.split("<h2>History</h2>")[1]

    assert "SELECT denied" in history and "SELECT pending" not in history
    unknown = client.get("/reviews/", {"status": "nonsense"})
    assert unknown.status_code == 200 and str(pending.public_id) in unknown.content.decode()


def test_it_shows_a_review_with_its_statement_and_votes(client, personas, request_review, record_session):
    session = record_session()
    review = request_review("DELETE FROM orders\nWHERE id = 7", session_public_id=str(session.public_id))
    client.force_login(personas.reviewer)

    html = client.get(f"/reviews/{review.public_id}/").content.decode()

    assert '<pre class="sql">DELETE FROM orders\nWHERE id = 7</pre>' in html
    assert "deletes" in html and "ci-bot" in html and "warehouse" in html
    assert f'href="/sessions/{session.public_id}/"' in html
    assert "data-review-form" in html and 'name="csrfmiddlewaretoken"' in html


def test_it_approves_with_a_comment(client, personas, request_review):
    review = request_review()

    response = decide(client, personas.reviewer, review, "approve", "looks fine")

    assert response.status_code == 302 and response["Location"] == f"/reviews/{review.public_id}/"
    review.refresh_from_db()
    assert (review.status, review.decided_by, review.comment) == ("approved", "alice", "looks fine")
    page = client.get(response["Location"]).content.decode()
    assert "looks fine" in page and 'class="pill approved"' in page


def test_it_denies(client, personas, request_review):
    review = request_review()

    decide(client, personas.reviewer, review, "deny", "not during business hours")

    review.refresh_from_db()
    assert (review.status, review.comment) == ("denied", "not during business hours")


def test_it_waits_for_the_second_of_two_approvals(client, personas, request_review):
    review = request_review(approvals_required=2)

    decide(client, personas.reviewer, review, "approve")

    review.refresh_from_db()
    assert review.status == Review.Status.PENDING
    html = client.get(f"/reviews/{review.public_id}/").content.decode()
    assert "<td>alice</td>" in html and "data-review-form" in html


def test_it_refuses_a_requester_deciding_its_own_statement_with_409(client, personas, request_review):
    review = request_review()

    response = decide(client, personas.requester, review, "approve")

    assert response.status_code == 409
    assert b"four eyes" in response.content and b'role="alert"' in response.content
    review.refresh_from_db()
    assert review.status == Review.Status.PENDING


def test_it_refuses_a_second_decision_with_409(client, personas, request_review):
    review = request_review()
    decide(client, personas.reviewer, review, "deny")

    response = decide(client, personas.reviewer, review, "approve")

    assert response.status_code == 409 and b"already denied" in response.content


def test_it_gives_an_outsider_the_same_404_as_a_missing_review(client, personas, request_review):
    review = request_review()

    forbidden = decide(client, personas.outsider, review, "approve")
    missing = client.post(f"/reviews/{uuid.uuid4()}/decide", {"decision": "approve"})
    malformed = client.post("/reviews/not-a-uuid/decide", {"decision": "approve"})

    assert forbidden.status_code == missing.status_code == malformed.status_code == 404
    assert client.get(f"/reviews/{review.public_id}/").status_code == 404
    assert str(review.public_id) not in client.get("/reviews/").content.decode()
    review.refresh_from_db()
    assert review.status == Review.Status.PENDING


def test_it_keeps_reviews_from_someone_who_may_only_view_sessions(client, personas, request_review):
    viewer = make_user("victor")
    assign_perm("connections.view_sessions", viewer, personas.warehouse)
    review = request_review()

    assert decide(client, viewer, review, "approve").status_code == 404


@pytest.mark.parametrize(
    "data", [{}, {"decision": "maybe"}, {"decision": "APPROVE"}, {"decision": "deny", "comment": "x" * 2001}]
)
def test_it_answers_bad_decisions_with_400(client, personas, request_review, data):
    review = request_review()
    client.force_login(personas.reviewer)

    response = client.post(f"/reviews/{review.public_id}/decide", data)

    assert response.status_code == 400
    review.refresh_from_db()
    assert review.status == Review.Status.PENDING


def test_it_refuses_decide_by_get(client, personas, request_review):
    review = request_review()
    client.force_login(personas.reviewer)

    assert client.get(f"/reviews/{review.public_id}/decide").status_code == 405


def test_it_answers_an_htmx_decision_with_the_fresh_pending_list(client, personas, request_review):
    review = request_review("DELETE FROM a")
    other = request_review("DELETE FROM b")

    response = decide(client, personas.reviewer, review, "approve", headers=HTMX)

    html = response.content.decode()
    assert response.status_code == 200
    assert html.lstrip().startswith('<section id="pending-reviews" class="card">')
    assert str(other.public_id) in html and str(review.public_id) not in html


def test_it_retargets_an_htmx_refusal_to_the_flash_area(client, personas, request_review):
    review = request_review()

    response = decide(client, personas.requester, review, "approve", headers=HTMX)

    assert response.status_code == 409
    assert response["HX-Retarget"] == "#flash" and response["HX-Reswap"] == "innerHTML"
    assert b"four eyes" in response.content and b"<html" not in response.content


def test_it_checks_csrf_on_decisions(personas, request_review):
    review = request_review()
    strict = Client(enforce_csrf_checks=True)
    strict.force_login(personas.reviewer)

    assert strict.post(f"/reviews/{review.public_id}/decide", {"decision": "approve"}).status_code == 403
    page = strict.get("/reviews/").content.decode()
    token = re.search(r'"X-CSRFToken": "([^"]+)"', page).group(1)
    response = strict.post(
        f"/reviews/{review.public_id}/decide", {"decision": "approve"}, headers=HTMX | {"X-CSRFToken": token}
    )
    assert response.status_code == 200
