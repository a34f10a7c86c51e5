"""Announcements of reviews and access requests, sent when their change commits.

Only ids and statuses travel: each receiver reads what it may see from the
database, so nothing here needs a permission check.
"""

from gateway_site.broadcast import announce_on_commit, feed_message, review_group


def publish_review_event(review) -> None:
    """A review was requested or changed: wake its held statement, refresh reviewers' pages."""
    announce_on_commit(
        (review_group(review.public_id), {"type": "review.changed", "id": str(review.public_id)}),
        feed_message("review", id=str(review.public_id), status=review.status, connection=review.connection_id),
    )


def publish_access_event(request) -> None:
    """An access request was made or changed: refresh approvers' and requesters' pages."""
    announce_on_commit(
        feed_message("access", id=str(request.public_id), status=request.status, connection=request.connection_id)
    )
