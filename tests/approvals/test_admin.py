"""The review admin shows reviews and their votes and changes nothing."""

import pytest
from django.urls import reverse

from approvals.access_request_actions import do_request_access
from approvals.actions import do_decide_review
from approvals.models import Review


@pytest.fixture
def decided(personas, request_review) -> Review:
    review = request_review("DELETE FROM orders WHERE id = '***'")
    return do_decide_review(str(review.public_id), personas.reviewer, False, "wrong ticket")


def test_it_lists_reviews_and_finds_one_by_id(admin_client, decided):
    response = admin_client.get(reverse("admin:approvals_review_changelist"), {"q": str(decided.public_id)})
    assert response.status_code == 200
    assert str(decided.public_id) in response.content.decode()


def test_it_shows_a_review_with_its_votes_read_only(admin_client, decided):
    response = admin_client.get(reverse("admin:approvals_review_change", args=[decided.pk]))
    page = response.content.decode()
    assert response.status_code == 200
    assert "DELETE FROM orders" in page and "wrong ticket" in page and "alice" in page
    assert 'name="_save"' not in page


def test_it_offers_no_add_change_or_delete(admin_client, decided):
    assert admin_client.get(reverse("admin:approvals_review_add")).status_code == 403
    assert admin_client.get(reverse("admin:approvals_review_delete", args=[decided.pk])).status_code == 403
    response = admin_client.post(reverse("admin:approvals_review_change", args=[decided.pk]), {"status": "approved"})
    assert response.status_code == 403
    decided.refresh_from_db()
    assert decided.status == Review.Status.DENIED


def test_it_shows_access_requests_read_only(admin_client, personas):
    request = do_request_access(personas.outsider, "billing", "incident 4711: read the invoices table", 3600)
    listed = admin_client.get(reverse("admin:approvals_accessrequest_changelist"), {"q": str(request.public_id)})
    shown = admin_client.get(reverse("admin:approvals_accessrequest_change", args=[request.pk]))
    assert listed.status_code == 200 and str(request.public_id) in listed.content.decode()
    assert "incident 4711" in shown.content.decode() and 'name="_save"' not in shown.content.decode()
    assert admin_client.get(reverse("admin:approvals_accessrequest_add")).status_code == 403
