"""The session admin: everything read-only except the legal hold, and no add or delete."""

import pytest
from django.urls import reverse

from recordings.actions import recording_file
from recordings.models import Session

pytestmark = pytest.mark.django_db


def test_it_lists_and_finds_a_session_by_its_id(admin_client, record_session):
    wanted = record_session(actor="agent:wanted")
    other = record_session(actor="agent:other")
    url = reverse("admin:recordings_session_changelist")

    listing = admin_client.get(url).content.decode()
    found = admin_client.get(url, {"q": str(wanted.public_id)}).content.decode()

    assert "agent:wanted" in listing and "agent:other" in listing
    assert "agent:wanted" in found and "agent:other" not in found
    assert str(other.public_id) not in found
    assert "delete_selected" not in listing


def test_it_changes_only_the_legal_hold(admin_client, record_session):
    session = record_session()
    url = reverse("admin:recordings_session_change", args=[session.pk])
    assert admin_client.get(url).status_code == 200

    response = admin_client.post(
        url,
        {"legal_hold": "on", "actor": "agent:someone-else", "line_count": "1", "seal": "forged", "status": "live"},
    )

    assert response.status_code == 302
    after = Session.objects.get(pk=session.pk)
    assert after.legal_hold
    assert (after.actor, after.line_count, after.seal, after.status) == (
        session.actor,
        session.line_count,
        session.seal,
        session.status,
    )


def test_it_offers_no_add_and_no_delete(admin_client, record_session):
    session = record_session()

    assert admin_client.get(reverse("admin:recordings_session_add")).status_code == 403
    delete_url = reverse("admin:recordings_session_delete", args=[session.pk])
    assert admin_client.post(delete_url, {"post": "yes"}).status_code == 403
    changelist = reverse("admin:recordings_session_changelist")
    admin_client.post(changelist, {"action": "delete_selected", "_selected_action": [session.pk], "post": "yes"})

    assert Session.objects.filter(pk=session.pk).exists()
    assert recording_file(session).exists()
