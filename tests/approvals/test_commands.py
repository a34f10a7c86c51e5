"""`manage.py reviews` end to end through call_command: the same funnel, four eyes and effects as the actions."""

import io
import uuid
from datetime import timedelta

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone
from guardian.shortcuts import assign_perm

from approvals.models import Review

from .conftest import make_user, overdue


def run(*args) -> str:
    out = io.StringIO()
    call_command("reviews", *args, stdout=out, stderr=io.StringIO())
    return out.getvalue()


def refused(*args) -> CommandError:
    with pytest.raises(CommandError) as error:
        run(*args)
    return error.value


def test_it_says_when_there_are_no_reviews(db):
    assert run("list") == "No reviews.\n"
    assert run("list", "--pending") == "No pending reviews.\n"


def test_it_lists_reviews_as_a_table(request_review):
    long_statement = "UPDATE customers\n   SET tier = 'gold'  WHERE region = '***' AND " + "x = 1 AND " * 20
    review = request_review(long_statement)
    Review.objects.filter(pk=review.pk).update(created_at=timezone.now() - timedelta(minutes=7))
    header, row = run("list").splitlines()
    assert header.split() == ["ID", "STATUS", "CONNECTION", "AGENT", "RULE", "AGE", "STATEMENT"]
    assert row.startswith(f"{review.public_id}  pending  warehouse   ci-bot  schema-changes  7m   UPDATE customers SET")
    statement = row.split("7m", 1)[1].strip()
    assert len(statement) == 60 and statement.endswith("…")
    assert "\n" not in statement and "  " not in statement


def test_it_lists_only_pending_reviews_that_can_still_be_decided(personas, request_review):
    waiting = request_review("SELECT 1")
    approved = request_review("DROP TABLE a")
    run("approve", str(approved.public_id), "--as", "alice")
    late = overdue(request_review("DROP TABLE b"))
    pending = run("list", "--pending")
    assert str(waiting.public_id) in pending
    assert str(approved.public_id) not in pending and str(late.public_id) not in pending
    everything = run("list")
    assert f"{approved.public_id}  approved" in everything
    assert f"{late.public_id}  expired" in everything  # what deciding it would find


def test_it_lists_only_what_a_user_may_review(personas, request_review):
    review = request_review()
    assert str(review.public_id) in run("list", "--as", "alice")
    assert run("list", "--as", "mallory") == "No reviews.\n"


def test_it_approves_as_a_reviewer(request_review):
    review = request_review()
    out = run("approve", str(review.public_id), "--as", "alice", "--comment", "ticket OPS-12")
    assert out == f"Review {review.public_id} is approved (by alice).\n"
    review.refresh_from_db()
    assert (review.status, review.comment) == (Review.Status.APPROVED, "ticket OPS-12")


def test_it_denies_as_a_reviewer(request_review):
    review = request_review()
    out = run("deny", str(review.public_id), "--as", "alice", "--comment", "not during business hours")
    assert out == f"Review {review.public_id} is denied (by alice).\n"
    review.refresh_from_db()
    assert (review.status, review.decided_by, review.comment) == ("denied", "alice", "not during business hours")


def test_it_reports_progress_towards_n_approvals(personas, request_review):
    assign_perm("connections.review", make_user("bob"), personas.warehouse)
    review = request_review(approvals=2)
    assert run("approve", str(review.public_id), "--as", "alice").endswith("is pending: 1 of 2 approvals.\n")
    assert run("approve", str(review.public_id), "--as", "bob").endswith("is approved (by alice,bob).\n")


def test_it_refuses_the_requesters_own_review(request_review):
    review = request_review()
    error = refused("approve", str(review.public_id), "--as", "agent:ci-bot")
    assert "four eyes" in str(error)
    assert error.returncode == 1
    review.refresh_from_db()
    assert review.status == Review.Status.PENDING


def test_it_gives_an_outsider_the_same_error_as_a_missing_review(request_review):
    review = request_review()
    forbidden = refused("approve", str(review.public_id), "--as", "mallory")
    missing_id = str(uuid.uuid4())
    missing = refused("approve", missing_id, "--as", "mallory")
    assert str(forbidden).startswith(f"no review {review.public_id};")
    assert str(forbidden).replace(str(review.public_id), "X") == str(missing).replace(missing_id, "X")
    review.refresh_from_db()
    assert review.status == Review.Status.PENDING


def test_it_names_an_unknown_user(request_review):
    review = request_review()
    assert str(refused("deny", str(review.public_id), "--as", "nobody")) == "no user named 'nobody'"


def test_it_refuses_an_expired_review_and_marks_it(request_review):
    review = overdue(request_review())
    assert "has expired" in str(refused("approve", str(review.public_id), "--as", "alice"))
    review.refresh_from_db()
    assert review.status == Review.Status.EXPIRED


def test_it_refuses_a_second_decision(request_review):
    review = request_review()
    run("deny", str(review.public_id), "--as", "alice")
    assert str(refused("approve", str(review.public_id), "--as", "alice")).endswith("is already denied")


def test_it_needs_a_user_to_decide_as(request_review):
    review = request_review()
    assert "--as" in str(refused("approve", str(review.public_id)))
    review.refresh_from_db()
    assert review.status == Review.Status.PENDING
