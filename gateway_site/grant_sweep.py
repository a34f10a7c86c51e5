"""Expires just-in-time access grants that have run out and ends the live sessions they allowed."""

import logging

from approvals.access_request_actions import SWEEPER_NAME, do_expire_grants, end_sessions_under_grant

logger = logging.getLogger(__name__)


def sweep_expired_grants() -> int:
    """Expire run-out grants and end their sessions where the connection says so; returns how many expired.

    One grant whose sessions cannot be ended does not keep the others' from ending.
    """
    expired = do_expire_grants()
    for grant in expired:
        try:
            end_sessions_under_grant(grant, by=SWEEPER_NAME, reason=f"access grant {grant.public_id} expired")
        except Exception:  # logged per grant; the grant itself is expired and refuses new sessions already
            logger.exception("could not end the sessions of expired access grant %s", grant.public_id)
    return len(expired)
