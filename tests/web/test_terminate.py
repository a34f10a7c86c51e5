"""Ending a live session from its page: reviewers only, live sessions only, recorded as who asked."""

from django.urls import reverse
from guardian.shortcuts import assign_perm

from recordings.models import Session


def terminate(client, session, reason="runaway job"):
    url = reverse("sessions:terminate", kwargs={"public_id": session.public_id})
    return client.post(url, {"reason": reason})


def test_it_asks_the_nodes_to_end_a_live_session_for_a_reviewer(client, personas, record_session):
    session = record_session(status=Session.Status.LIVE)
    client.force_login(personas.reviewer)

    response = terminate(client, session)

    assert response.status_code == 302
    session.refresh_from_db()
    assert session.terminated_by == "alice" and session.status == Session.Status.LIVE  # its node ends and seals it
    page = client.get(response.url).content.decode()
    assert "The session is being ended." in page and "Terminated by" in page


def test_it_shows_the_button_to_reviewers_only(client, personas, record_session):
    session = record_session(status=Session.Status.LIVE)
    watcher = personas.outsider
    assign_perm("connections.view_sessions", watcher, personas.warehouse)
    url = reverse("sessions:detail", kwargs={"public_id": session.public_id})
    client.force_login(watcher)
    watcher_page = client.get(url).content.decode()
    client.force_login(personas.reviewer)
    reviewer_page = client.get(url).content.decode()

    assert "Terminate" in reviewer_page and "Terminate" not in watcher_page
    client.force_login(watcher)
    assert terminate(client, session).status_code == 404  # may watch, may not end
    session.refresh_from_db()
    assert session.terminated_by == ""


def test_it_answers_an_outsider_as_for_a_missing_session(client, personas, record_session):
    session = record_session(status=Session.Status.LIVE)
    client.force_login(personas.outsider)

    forbidden = terminate(client, session)
    missing = client.post(reverse("sessions:terminate", kwargs={"public_id": "00000000-0000-0000-0000-000000000000"}))

    assert forbidden.status_code == missing.status_code == 404
    session.refresh_from_db()
    assert session.terminated_by == ""


def test_it_refuses_to_end_a_finished_session(client, personas, record_session):
    session = record_session()
    client.force_login(personas.reviewer)

    response = terminate(client, session)

    assert response.status_code == 302
    assert "has already ended" in client.get(response.url).content.decode()
    session.refresh_from_db()
    assert session.terminated_by == ""


def test_it_takes_no_get(client, personas, record_session):
    session = record_session(status=Session.Status.LIVE)
    client.force_login(personas.reviewer)

    response = client.get(reverse("sessions:terminate", kwargs={"public_id": session.public_id}))

    assert response.status_code == 405
