"""State changes of per-statement reviews: request, decide, expire, withdraw; and the gateway's outcome poll.

Every mutation is a `do_*` function in a transaction, so the `reviews`
command, the reviewer pages and the gateway share one path and one set of
checks. Who may decide goes through the connection funnel
(`access_connection(user, name, "review")`); a review an actor may not
decide looks exactly like a missing one.
"""

import logging
import math
from datetime import timedelta

from django.db import transaction
from django.utils import timezone

from approvals.feed_events import publish_review_event
from approvals.models import DECIDED_BY_MAX_LENGTH, RULE_MAX_LENGTH, Review, ReviewDecision
from connections.access import access_connection
from connections.models import Connection, ServiceAccount
from gateway_site.public_ids import get_by_public_id, parse_public_id
from recordings.models import Session

logger = logging.getLogger(__name__)

TIMEOUT_DECIDER = "timeout"
CLIENT_DECIDER = "client"
MISSING_OUTCOME = (Review.Status.DENIED.value, "gatehouse", "the review no longer exists")
MAX_APPROVALS = 32767  # PositiveSmallIntegerField


class ReviewRefused(ValueError):
    """A decision the actor may see but not make: four eyes, a second vote, or a review already settled."""


def _not_found(review_public_id) -> Review.DoesNotExist:
    # One message for "missing", "malformed" and "forbidden", so nobody can probe review ids.
    return Review.DoesNotExist(f"no review {review_public_id}")


def _locked_review(review_public_id) -> Review:
    """The review row, locked until the transaction ends, so concurrent votes and timeouts serialize."""
    rows = Review.objects.select_for_update(of=("self",)).select_related("connection", "account", "session")
    return get_by_public_id(rows, review_public_id, "review")


@transaction.atomic
def do_request_review(
    *,
    connection_id: int,
    session_public_id: str | None,
    account_id: int | None,
    rule: str,
    statement: str,
    timeout_seconds: float,
    approvals_required: int = 1,
) -> Review:
    """Create a pending review of a held statement; `statement` must already be masked.

    The review expires `timeout_seconds` from now. An unknown session id
    leaves the session empty rather than failing: the statement stays held
    and reviewable. Raises ValueError on a non-positive or non-finite
    timeout or an approvals count outside 1..32767.
    """
    if not math.isfinite(timeout_seconds) or timeout_seconds <= 0:
        raise ValueError(f"a review timeout must be a positive number of seconds, not {timeout_seconds!r}")
    if not 1 <= approvals_required <= MAX_APPROVALS:
        raise ValueError(f"a review needs 1 to {MAX_APPROVALS} approvals, not {approvals_required!r}")
    session_id = None
    if session_public_id is not None and (public_id := parse_public_id(session_public_id)) is not None:
        session_id = Session.objects.filter(public_id=public_id).values_list("id", flat=True).first()
    now = timezone.now()
    review = Review.objects.create(
        connection_id=connection_id,
        session_id=session_id,
        account_id=account_id,
        rule=rule[:RULE_MAX_LENGTH],
        statement=statement,
        approvals_required=approvals_required,
        created_at=now,
        expires_at=now + timedelta(seconds=timeout_seconds),
    )
    logger.info(
        "review %s requested on connection %s (rule %s, session %s, %d approval(s), %gs)",
        review.public_id,
        connection_id,
        review.rule,
        session_public_id,
        approvals_required,
        timeout_seconds,
    )
    publish_review_event(review)
    return review


def do_decide_review(review_public_id: str, user, approve: bool, comment: str = "") -> Review:
    """Record `user`'s vote on a review and settle it when the vote decides it.

    Raises Review.DoesNotExist (one message) when the review is missing or
    `user` lacks `review` on its connection. Raises ReviewRefused when the
    review was the user's own agent's (four eyes), is no longer pending,
    has expired (it is marked expired on the spot), or the user already
    voted. A deny settles it at once; it is approved when the approvals
    reach `approvals_required`.
    """
    with transaction.atomic():
        review, refusal = _vote(review_public_id, user, approve, comment)
    # Raised after the commit: expiring an overdue review must stick even though the vote is refused.
    if refusal:
        raise ReviewRefused(refusal)
    return review


def _vote(review_public_id, user, approve: bool, comment: str) -> tuple[Review, str]:
    """The locked part of do_decide_review: returns the review and a refusal message ("" when the vote counted)."""
    review = _locked_review(review_public_id)
    try:
        access_connection(user, review.connection.name, "review")
    except Connection.DoesNotExist:
        raise _not_found(review_public_id) from None
    if review.status != Review.Status.PENDING:
        return review, f"review {review.public_id} is already {review.status}"
    now = timezone.now()
    if review.expires_at <= now:
        _settle(review, Review.Status.EXPIRED, TIMEOUT_DECIDER, "", now)
        return review, f"review {review.public_id} has expired: no decision came in time"
    if _is_own_review(review, user):
        return review, f"four eyes: {user.username} may not decide a review of their own session"
    if review.decisions.filter(user=user).exists():
        return review, f"{user.username} has already voted on review {review.public_id}"
    ReviewDecision.objects.create(review=review, user=user, approve=approve, comment=comment, created_at=now)
    logger.info("review %s: %s by %s", review.public_id, "approved" if approve else "denied", user.username)
    if not approve:
        _settle(review, Review.Status.DENIED, user.username, comment, now)
    else:
        approvals = list(review.decisions.filter(approve=True).select_related("user"))
        if len(approvals) >= review.approvals_required:
            deciders = ",".join(decision.user.username for decision in approvals)
            comments = "; ".join(decision.comment for decision in approvals if decision.comment)
            _settle(review, Review.Status.APPROVED, deciders, comments, now)
        else:
            publish_review_event(review)  # one vote of several: pages show the count
    return review, ""


def _is_own_review(review: Review, user) -> bool:
    """True when the held statement came from an agent backed by `user` (the review's or its session's)."""
    account_ids = {review.account_id, review.session.account_id if review.session else None} - {None}
    return bool(account_ids) and ServiceAccount.objects.filter(id__in=account_ids, user_id=user.pk).exists()


def _settle(review: Review, status: str, decided_by: str, comment: str, now) -> None:
    review.status = status
    review.decided_at = now
    review.decided_by = decided_by[:DECIDED_BY_MAX_LENGTH]
    review.comment = comment
    review.save(update_fields=["status", "decided_at", "decided_by", "comment"])
    publish_review_event(review)
    logger.info("review %s settled: %s by %s", review.public_id, status, review.decided_by)


@transaction.atomic
def do_expire_review(review_public_id: str) -> Review:
    """Settle a pending review as expired ("timeout"); a review settled already is returned unchanged.

    The caller acts on the returned status: a decision may have won the race
    with the timeout. Raises Review.DoesNotExist for an unknown id.
    """
    review = _locked_review(review_public_id)
    if review.status == Review.Status.PENDING:
        _settle(review, Review.Status.EXPIRED, TIMEOUT_DECIDER, "", timezone.now())
    return review


@transaction.atomic
def do_expire_overdue_reviews(now=None) -> int:
    """Settle every pending review past its deadline as expired; returns how many.

    A gateway expires its own held statements' reviews; this catches those
    whose node died while holding them, so no review stays pending forever.
    """
    now = now or timezone.now()
    overdue = list(Review.objects.select_for_update().filter(status=Review.Status.PENDING, expires_at__lte=now))
    for review in overdue:
        _settle(review, Review.Status.EXPIRED, TIMEOUT_DECIDER, "", now)
    if overdue:
        logger.info("expired %d overdue reviews", len(overdue))
    return len(overdue)


@transaction.atomic
def do_withdraw_review(review_public_id: str, reason: str) -> Review:
    """Settle a pending review as withdrawn ("client": a cancel or a disconnect); a settled one is unchanged.

    Raises Review.DoesNotExist for an unknown id.
    """
    review = _locked_review(review_public_id)
    if review.status == Review.Status.PENDING:
        _settle(review, Review.Status.WITHDRAWN, CLIENT_DECIDER, reason, timezone.now())
    return review


def review_outcome(review_public_id: str) -> tuple[str, str, str] | None:
    """(status, decided_by, comment) once a review is settled, None while it is pending: one indexed query.

    The gateway polls this while a statement is held. A missing or malformed
    id reads as denied (MISSING_OUTCOME), so a held statement never waits on
    a review that cannot be decided.
    """
    public_id = parse_public_id(review_public_id)
    if public_id is None:
        return MISSING_OUTCOME
    try:
        row = Review.objects.values_list("status", "decided_by", "comment").get(public_id=public_id)
    except Review.DoesNotExist:
        return MISSING_OUTCOME
    if row[0] == Review.Status.PENDING:
        return None
    return row
