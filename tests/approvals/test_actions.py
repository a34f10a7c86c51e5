"""The review actions branch by branch, with the requester, reviewer and outsider personas."""

import uuid
from datetime import timedelta

import pytest
from guardian.shortcuts import assign_perm

from approvals.actions import (
    MISSING_OUTCOME,
    ReviewRefused,
    do_decide_review,
    do_expire_overdue_reviews,
    do_expire_review,
    do_withdraw_review,
    review_outcome,
)
from approvals.models import Review, ReviewDecision
from connections.access import access_connection
from connections.models import Connection

from .conftest import STATEMENT, make_user, overdue


def decide(review: Review, user, approve: bool = True, comment: str = "") -> Review:
    return do_decide_review(str(review.public_id), user, approve, comment)


def test_it_creates_a_pending_review_with_its_deadline(personas, request_review):
    review = request_review(timeout=90)
    review.refresh_from_db()
    assert review.status == Review.Status.PENDING
    assert (review.connection, review.account, review.session) == (
        personas.warehouse,
        personas.requester,
        personas.session,
    )
    assert (review.rule, review.statement, review.approvals_required) == ("schema-changes", STATEMENT, 1)
    assert review.expires_at - review.created_at == timedelta(seconds=90)
    assert (review.decided_at, review.decided_by) == (None, "")
    assert review_outcome(str(review.public_id)) is None


def test_it_keeps_a_review_whose_session_is_unknown(request_review):
    review = request_review(session_public_id=str(uuid.uuid4()))
    assert review.session is None
    assert request_review(session_public_id="not-a-uuid").session is None


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"timeout": 0}, "positive number of seconds"),
        ({"timeout": float("nan")}, "positive number of seconds"),
        ({"approvals": 0}, "1 to 32767 approvals"),
    ],
)
def test_it_refuses_a_review_that_could_never_be_decided(request_review, overrides, message):
    with pytest.raises(ValueError, match=message):
        request_review(**overrides)
    assert not Review.objects.exists()


def test_it_lets_a_reviewer_approve(personas, request_review):
    review = decide(request_review(), personas.reviewer, comment="ticket OPS-12")
    review.refresh_from_db()
    assert review.status == Review.Status.APPROVED
    assert (review.decided_by, review.comment) == ("alice", "ticket OPS-12")
    assert review.decided_at is not None
    assert review_outcome(str(review.public_id)) == ("approved", "alice", "ticket OPS-12")
    assert list(review.decisions.values_list("user__username", "approve")) == [("alice", True)]


def test_it_counts_review_permission_held_through_a_group(personas, request_review, make_group):
    on_call = make_user("bob")
    assign_perm("connections.review", make_group("on-call", on_call), personas.warehouse)
    review = decide(request_review(), on_call, approve=False)
    assert (review.status, review.decided_by) == (Review.Status.DENIED, "bob")


def test_it_denies_at_once_with_the_reviewers_comment(personas, request_review):
    review = decide(request_review(approvals=3), personas.reviewer, approve=False, comment="not in prod")
    review.refresh_from_db()
    assert (review.status, review.decided_by, review.comment) == (Review.Status.DENIED, "alice", "not in prod")
    assert review_outcome(str(review.public_id)) == ("denied", "alice", "not in prod")


def test_it_waits_for_n_approvals(personas, request_review):
    bob = make_user("bob")
    assign_perm("connections.review", bob, personas.warehouse)
    review = request_review(approvals=2)
    first = decide(review, personas.reviewer, comment="looks fine")
    assert first.status == Review.Status.PENDING
    assert review_outcome(str(review.public_id)) is None
    second = decide(review, bob)
    assert (second.status, second.decided_by, second.comment) == (Review.Status.APPROVED, "alice,bob", "looks fine")
    assert review_outcome(str(review.public_id)) == ("approved", "alice,bob", "looks fine")


def test_a_deny_settles_a_review_that_already_has_approvals(personas, request_review):
    bob = make_user("bob")
    assign_perm("connections.review", bob, personas.warehouse)
    review = request_review(approvals=2)
    decide(review, personas.reviewer)
    denied = decide(review, bob, approve=False, comment="no")
    assert (denied.status, denied.decided_by, denied.comment) == (Review.Status.DENIED, "bob", "no")


@pytest.mark.parametrize("approve", [True, False])
def test_four_eyes_refuses_the_requesters_own_user(personas, request_review, approve):
    review = request_review()
    # The requester holds `review` on warehouse, so only four eyes stands in its way.
    assert access_connection(personas.requester.user, "warehouse", "review") == personas.warehouse
    with pytest.raises(ReviewRefused, match="four eyes: agent:ci-bot may not decide a review of their own session"):
        decide(review, personas.requester.user, approve=approve)
    review.refresh_from_db()
    assert review.status == Review.Status.PENDING
    assert not review.decisions.exists()


def test_four_eyes_also_looks_at_the_sessions_agent(personas, request_review):
    review = request_review(account_id=None)
    with pytest.raises(ReviewRefused, match="four eyes"):
        decide(review, personas.requester.user)


def test_it_shows_an_outsider_the_same_not_found_as_a_missing_review(personas, request_review):
    review = request_review()
    with pytest.raises(Review.DoesNotExist) as forbidden:
        decide(review, personas.outsider)
    missing_id = str(uuid.uuid4())
    with pytest.raises(Review.DoesNotExist) as missing:
        do_decide_review(missing_id, personas.reviewer, True)
    with pytest.raises(Review.DoesNotExist) as malformed:
        do_decide_review("42", personas.reviewer, True)
    assert str(forbidden.value) == f"no review {review.public_id}"
    assert str(forbidden.value).replace(str(review.public_id), "X") == str(missing.value).replace(missing_id, "X")
    assert str(malformed.value) == "no review 42"
    review.refresh_from_db()
    assert review.status == Review.Status.PENDING
    assert not ReviewDecision.objects.exists()


def test_an_outsider_cannot_learn_whether_a_review_was_settled(personas, request_review):
    review = decide(request_review(), personas.reviewer)
    with pytest.raises(Review.DoesNotExist, match="no review"):
        decide(review, personas.outsider)


def test_it_turns_away_an_inactive_reviewer(personas, request_review):
    personas.reviewer.is_active = False
    personas.reviewer.save()
    with pytest.raises(Review.DoesNotExist):
        decide(request_review(), personas.reviewer)


def test_it_expires_an_overdue_review_when_someone_decides_it(personas, request_review):
    review = overdue(request_review())
    with pytest.raises(ReviewRefused, match="has expired"):
        decide(review, personas.reviewer)
    review.refresh_from_db()
    assert (review.status, review.decided_by) == (Review.Status.EXPIRED, "timeout")
    assert review_outcome(str(review.public_id)) == ("expired", "timeout", "")
    assert not review.decisions.exists()


def test_it_expires_a_pending_review_on_timeout(request_review):
    review = do_expire_review(str(request_review().public_id))
    review.refresh_from_db()
    assert (review.status, review.decided_by) == (Review.Status.EXPIRED, "timeout")
    assert review.decided_at is not None


def test_it_sweeps_overdue_reviews_and_leaves_the_rest(personas, request_review):
    left_behind, waiting = overdue(request_review()), request_review()
    assert do_expire_overdue_reviews() == 1
    left_behind.refresh_from_db()
    waiting.refresh_from_db()
    assert (left_behind.status, left_behind.decided_by) == (Review.Status.EXPIRED, "timeout")
    assert waiting.status == Review.Status.PENDING
    assert do_expire_overdue_reviews() == 0


def test_a_decision_that_beat_the_timeout_stands(personas, request_review):
    review = decide(request_review(), personas.reviewer)
    after = do_expire_review(str(review.public_id))
    assert (after.status, after.decided_by) == (Review.Status.APPROVED, "alice")


def test_it_withdraws_a_review_the_client_gave_up_on(personas, request_review):
    review = do_withdraw_review(str(request_review().public_id), "the client canceled the statement")
    review.refresh_from_db()
    assert (review.status, review.decided_by) == (Review.Status.WITHDRAWN, "client")
    assert review.comment == "the client canceled the statement"
    with pytest.raises(ReviewRefused, match="is already withdrawn"):
        decide(review, personas.reviewer)


def test_withdrawing_a_settled_review_changes_nothing(personas, request_review):
    review = decide(request_review(), personas.reviewer, approve=False, comment="no")
    after = do_withdraw_review(str(review.public_id), "client left")
    assert (after.status, after.decided_by, after.comment) == (Review.Status.DENIED, "alice", "no")


def test_expire_and_withdraw_of_a_missing_review_say_not_found(db):
    with pytest.raises(Review.DoesNotExist):
        do_expire_review(str(uuid.uuid4()))
    with pytest.raises(Review.DoesNotExist):
        do_withdraw_review("nonsense", "gone")


def test_it_refuses_a_second_vote_by_the_same_reviewer(personas, request_review):
    review = request_review(approvals=2)
    decide(review, personas.reviewer)
    with pytest.raises(ReviewRefused, match="alice has already voted"):
        decide(review, personas.reviewer)
    assert review.decisions.count() == 1
    review.refresh_from_db()
    assert review.status == Review.Status.PENDING


def test_it_refuses_to_decide_a_settled_review_again(personas, request_review):
    review = decide(request_review(), personas.reviewer)
    with pytest.raises(ReviewRefused, match="is already approved"):
        decide(review, personas.reviewer, approve=False)
    review.refresh_from_db()
    assert (review.status, review.decided_by) == (Review.Status.APPROVED, "alice")


def test_the_outcome_of_a_missing_review_is_a_denial(db):
    assert review_outcome(str(uuid.uuid4())) == MISSING_OUTCOME
    assert review_outcome("garbage") == MISSING_OUTCOME
    assert MISSING_OUTCOME[0] == "denied"


def test_it_keeps_review_and_view_sessions_apart_in_the_funnel(personas):
    with pytest.raises(Connection.DoesNotExist):
        access_connection(personas.outsider, "warehouse", "review")
    assert access_connection(personas.outsider, "warehouse", "view_sessions") == personas.warehouse
    assert access_connection(personas.outsider, "billing", "review") == personas.billing
    with pytest.raises(Connection.DoesNotExist):
        access_connection(personas.reviewer, "warehouse", "view_sessions")
