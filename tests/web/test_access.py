"""The session funnel (recordings.access) and the review read funnel, branch by branch, per persona."""

import uuid

import pytest
from django.contrib.auth import get_user_model
from guardian.shortcuts import assign_perm

from approvals.models import Review
from approvals.review_access import access_review, pending_reviews_for, reviews_for
from recordings.access import access_session, sessions_for
from recordings.models import Session
from tests.web.conftest import make_user


def test_it_gives_a_reviewer_the_sessions_of_its_connection(personas, record_session):
    session = record_session()

    assert access_session(personas.reviewer, session.public_id) == session
    assert access_session(personas.reviewer, str(session.public_id)).connection == personas.warehouse
    assert list(sessions_for(personas.reviewer)) == [session]


def test_it_hides_sessions_of_other_connections_from_an_outsider(personas, record_session):
    session = record_session()
    theirs = record_session(connection=personas.billing)

    with pytest.raises(Session.DoesNotExist) as forbidden:
        access_session(personas.outsider, session.public_id)
    with pytest.raises(Session.DoesNotExist) as missing:
        access_session(personas.outsider, uuid.uuid4())
    assert str(forbidden.value).replace(str(session.public_id), "ID") == "no session ID"
    assert str(missing.value).startswith("no session ")
    assert list(sessions_for(personas.outsider)) == [theirs]


def test_it_does_not_let_connect_or_review_stand_in_for_view_sessions(personas, record_session):
    session = record_session()

    with pytest.raises(Session.DoesNotExist):
        access_session(personas.requester, session.public_id)
    assert access_session(personas.requester, session.public_id, action="review") == session
    assert not sessions_for(personas.requester).exists()


@pytest.mark.parametrize("bad_id", ["not-a-uuid", "", "1", "x" * 5000, "../../etc/passwd"])
def test_it_treats_a_malformed_id_as_missing(personas, bad_id):
    with pytest.raises(Session.DoesNotExist):
        access_session(personas.reviewer, bad_id)
    with pytest.raises(Review.DoesNotExist):
        access_review(personas.reviewer, bad_id)


def test_it_follows_group_permissions_superusers_and_inactive_users(personas, record_session, make_group):
    session = record_session()
    watcher = make_user("watcher")
    group = make_group("auditors", watcher)
    assign_perm("connections.view_sessions", group, personas.warehouse)
    boss = get_user_model().objects.create_superuser("root", "root@example.com", None)

    assert access_session(watcher, session.public_id) == session
    assert access_session(boss, session.public_id) == session
    personas.reviewer.is_active = False
    personas.reviewer.save()
    with pytest.raises(Session.DoesNotExist):
        access_session(personas.reviewer, session.public_id)


def test_it_shows_reviews_only_to_reviewers_of_their_connection(personas, request_review):
    review = request_review()
    elsewhere = request_review(connection_id=personas.billing.pk)

    assert access_review(personas.reviewer, review.public_id) == review
    assert list(reviews_for(personas.reviewer)) == [review]
    assert list(pending_reviews_for(personas.outsider)) == [elsewhere]
    with pytest.raises(Review.DoesNotExist):
        access_review(personas.outsider, review.public_id)
    with pytest.raises(Review.DoesNotExist):
        access_review(personas.reviewer, uuid.uuid4())
