"""The read funnel for reviews: which held statements a person may see on the reviewer pages.

Seeing a review takes `review` on its connection, the same permission that
deciding it takes (approvals.actions.do_decide_review); both ask the
connection funnel. A review one may not see looks exactly like a missing one.
"""

import uuid
from datetime import datetime

from django.db.models import QuerySet
from django.utils import timezone

from approvals.models import Review
from connections.access import connections_for
from gateway_site.public_ids import get_by_public_id


def reviews_for(user) -> QuerySet[Review]:
    """Every review on the connections `user` may review, newest first, with what the lists show loaded."""
    allowed = connections_for(user, "review").values("id")
    return Review.objects.filter(connection_id__in=allowed).select_related("connection", "account", "session")


def pending_reviews_for(user, now: datetime | None = None) -> QuerySet[Review]:
    """The reviews `user` may decide that still wait for a decision (pending and not past their deadline)."""
    now = now or timezone.now()
    return reviews_for(user).filter(status=Review.Status.PENDING, expires_at__gt=now)


def access_review(user, public_id: str | uuid.UUID) -> Review:
    """The review `public_id` if `user` may review its connection.

    Raises Review.DoesNotExist, with one message, for a malformed id, a
    missing review and a forbidden one.
    """
    return get_by_public_id(reviews_for(user), public_id, "review")


def shown_status(review: Review, now: datetime | None = None) -> str:
    """A pending review past its deadline shows as expired: that is what deciding it would find."""
    now = now or timezone.now()
    if review.status == Review.Status.PENDING and review.expires_at <= now:
        return Review.Status.EXPIRED
    return review.status
