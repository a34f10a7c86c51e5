"""Just-in-time access requests: ask, grant or refuse, withdraw, revoke, expire; and who may see which.

A granted request with `granted_until` ahead is the time-bound permission
itself: the connection funnel and the gateway's login lookup read it, so
nothing must be remembered and removed when it ends. Every mutation is a
`do_*` function in a transaction on a locked row, so the `access` command,
the REST endpoint for agents and the web pages share one path and one set
of checks. Who may decide goes through the connection funnel
(`access_connection(user, name, "review")`); a request an actor may not see
looks exactly like a missing one. Each change is announced to the live
pages when it commits (approvals.feed_events).
"""

import logging
import uuid
from datetime import datetime, timedelta

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.db.models import Q, QuerySet
from django.utils import timezone

from approvals.feed_events import publish_access_event
from approvals.models import COMMENT_MAX_LENGTH, MIN_ACCESS_SECONDS, REASON_MAX_LENGTH, AccessRequest
from connections.access import access_connection, connections_for
from connections.models import Connection, ServiceAccount
from gateway_site.public_ids import get_by_public_id
from recordings.actions import request_session_end
from recordings.models import Session

logger = logging.getLogger(__name__)

SWEEPER_NAME = "gatehouse"
USERNAME_MAX_LENGTH = 150  # AccessRequest.decided_by and ended_by


class AccessRefused(ValueError):
    """A change the actor may see but not make: four eyes, a request already decided, access already held."""


def format_seconds(seconds: int) -> str:
    """A duration as `parse_duration` reads it, largest units first: 90 -> "1m30s", 7200 -> "2h"."""
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if seconds >= size:
            parts.append(f"{seconds // size}{unit}")
            seconds %= size
    return "".join(parts) or "0s"


def max_access_seconds() -> int:
    """The longest grant anyone may ask for (GATEHOUSE_ACCESS_MAX_SECONDS)."""
    return settings.GATEHOUSE_ACCESS_MAX_SECONDS


def _checked_reason(reason: str) -> str:
    reason = (reason or "").strip()
    if not reason:
        raise ValidationError("an access request needs a reason")
    if len(reason) > REASON_MAX_LENGTH:
        raise ValidationError(f"the reason is {len(reason)} characters; at most {REASON_MAX_LENGTH} are allowed")
    return reason


def _checked_duration(duration_seconds: int) -> int:
    longest = max_access_seconds()
    if isinstance(duration_seconds, bool) or not isinstance(duration_seconds, int):
        raise ValidationError(f"the duration must be a whole number of seconds, not {duration_seconds!r}")
    if not MIN_ACCESS_SECONDS <= duration_seconds <= longest:
        raise ValidationError(
            f"access lasts {format_seconds(MIN_ACCESS_SECONDS)} to {format_seconds(longest)}, "
            f"not {format_seconds(max(duration_seconds, 0))}"
        )
    return duration_seconds


def _checked_comment(comment: str) -> str:
    comment = (comment or "").strip()
    if len(comment) > COMMENT_MAX_LENGTH:
        raise ValidationError(f"the comment is {len(comment)} characters; at most {COMMENT_MAX_LENGTH} are allowed")
    return comment


def _who(user, account: ServiceAccount | None) -> str:
    return f"agent {account.name}" if account is not None else user.username


def do_request_access(
    requester_user, connection_name: str, reason: str, duration_seconds: int, account: ServiceAccount | None = None
) -> AccessRequest:
    """Ask for `connect` on a connection for `duration_seconds`, with a reason; returns the pending request.

    `account` is the agent asking, whose backing user must be `requester_user`.
    Raises Connection.DoesNotExist for an unknown connection, ValidationError
    for an empty or too long reason or a duration outside
    MIN_ACCESS_SECONDS..GATEHOUSE_ACCESS_MAX_SECONDS, and AccessRefused when
    the requester is inactive, may connect already, or has a request pending
    for that connection.
    """
    reason, duration_seconds = _checked_reason(reason), _checked_duration(duration_seconds)
    if account is not None and account.user_id != requester_user.pk:
        raise ValueError(f"agent {account.name} asks as its own user, not as {requester_user.username}")
    who = _who(requester_user, account)
    if not requester_user.is_active:
        raise AccessRefused(f"{who} is inactive and cannot ask for access")
    with transaction.atomic():
        # Anyone may ask for anything by name, so an unknown name may say so.
        connection = Connection.objects.filter(name=connection_name).first()
        if connection is None:
            raise Connection.DoesNotExist(f"no connection named {connection_name!r}")
        _refuse_if_allowed(requester_user, connection, who)
        pending = AccessRequest.objects.filter(
            requester=requester_user, connection=connection, status=AccessRequest.Status.PENDING
        ).first()
        if pending is not None:
            raise AccessRefused(f"{who} already has a pending request for {connection.name}: {pending.public_id}")
        try:
            with transaction.atomic():
                request = AccessRequest.objects.create(
                    connection=connection,
                    requester=requester_user,
                    account=account,
                    reason=reason,
                    duration_seconds=duration_seconds,
                )
        except IntegrityError:  # a concurrent request won the one-pending constraint
            raise AccessRefused(f"{who} already has a pending request for {connection.name}") from None
        publish_access_event(request)  # sent on commit
    logger.info(
        "access request %s: %s asks for %s on %s",
        request.public_id,
        who,
        format_seconds(duration_seconds),
        connection.name,
    )
    return request


def _refuse_if_allowed(user, connection: Connection, who: str) -> None:
    try:
        access_connection(user, connection.name, "connect")
    except Connection.DoesNotExist:
        return
    raise AccessRefused(f"{who} may already connect to {connection.name}; there is nothing to ask for")


def _not_found(public_id) -> AccessRequest.DoesNotExist:
    # One message for "missing", "malformed" and "forbidden", so nobody can probe request ids.
    return AccessRequest.DoesNotExist(f"no access request {public_id}")


def _locked(public_id) -> AccessRequest:
    """The request row, locked until the transaction ends, so concurrent decisions and expiry serialize."""
    rows = AccessRequest.objects.select_for_update(of=("self",)).select_related("connection", "requester", "account")
    return get_by_public_id(rows, public_id, "access request")


def _may_review(user, request: AccessRequest) -> bool:
    try:
        access_connection(user, request.connection.name, "review")
    except Connection.DoesNotExist:
        return False
    return True


def _is_own(request: AccessRequest, user) -> bool:
    """True when `user` asked, directly or as the agent's backing user."""
    return request.requester_id == user.pk or (request.account is not None and request.account.user_id == user.pk)


def do_decide_access_request(public_id: str, user, grant: bool, comment: str = "") -> AccessRequest:
    """Grant (from now, for the requested duration) or refuse a pending request, as a reviewer.

    Raises AccessRequest.DoesNotExist (one message) when the request is
    missing or `user` lacks `review` on its connection; AccessRefused when
    it is the user's own request (four eyes) or no longer pending;
    ValidationError for a comment over COMMENT_MAX_LENGTH.
    """
    comment = _checked_comment(comment)
    with transaction.atomic():
        request = _locked(public_id)
        if not _may_review(user, request):
            raise _not_found(public_id)
        if request.status != AccessRequest.Status.PENDING:
            raise AccessRefused(f"access request {request.public_id} is already {request.status}")
        if _is_own(request, user):
            raise AccessRefused(f"four eyes: {user.username} may not decide their own access request")
        now = timezone.now()
        if grant:
            request.status = AccessRequest.Status.GRANTED
            request.granted_from = now
            request.granted_until = now + timedelta(seconds=request.duration_seconds)
        else:
            request.status = AccessRequest.Status.REFUSED
        request.decided_at, request.decided_by, request.comment = now, user.username[:USERNAME_MAX_LENGTH], comment
        request.save(update_fields=["status", "decided_at", "decided_by", "comment", "granted_from", "granted_until"])
        publish_access_event(request)  # sent on commit
    logger.info("access request %s %s by %s", request.public_id, request.status, user.username)
    return request


def do_withdraw_access_request(public_id: str, user) -> AccessRequest:
    """The requester takes back a pending request.

    Raises AccessRequest.DoesNotExist when the request is missing or `user`
    may not see it; AccessRefused when `user` is a reviewer but not the
    requester, or the request is no longer pending.
    """
    with transaction.atomic():
        request = _locked(public_id)
        if not _is_own(request, user):
            if _may_review(user, request):
                raise AccessRefused(f"only the requester may withdraw access request {request.public_id}")
            raise _not_found(public_id)
        if request.status != AccessRequest.Status.PENDING:
            raise AccessRefused(f"access request {request.public_id} is already {request.status}")
        request.status = AccessRequest.Status.WITHDRAWN
        request.decided_at, request.decided_by = timezone.now(), user.username[:USERNAME_MAX_LENGTH]
        request.save(update_fields=["status", "decided_at", "decided_by"])
        publish_access_event(request)  # sent on commit
    logger.info("access request %s withdrawn by %s", request.public_id, user.username)
    return request


def do_revoke_grant(public_id: str, user) -> AccessRequest:
    """A reviewer ends an active grant now; its live sessions end too if the connection says so.

    Raises AccessRequest.DoesNotExist when the request is missing or `user`
    lacks `review` on its connection; AccessRefused when it is not an
    active grant. Revoking one's own grant is allowed: it only takes access away.
    """
    with transaction.atomic():
        request = _locked(public_id)
        if not _may_review(user, request):
            raise _not_found(public_id)
        now = timezone.now()
        if request.status != AccessRequest.Status.GRANTED:
            raise AccessRefused(f"access request {request.public_id} is {request.status}, not an active grant")
        if request.granted_until <= now:
            raise AccessRefused(f"the grant of access request {request.public_id} has already run out")
        request.status = AccessRequest.Status.REVOKED
        request.granted_until, request.ended_by = now, user.username[:USERNAME_MAX_LENGTH]
        request.save(update_fields=["status", "granted_until", "ended_by"])
        reason = f"access grant {request.public_id} was revoked by {user.username}"
        publish_access_event(request)  # sent on commit
        # Robust: the grant is revoked either way; a failure to reach the sessions' nodes is logged.
        transaction.on_commit(lambda: end_sessions_under_grant(request, by=user.username, reason=reason), robust=True)
    logger.info("access request %s revoked by %s", request.public_id, user.username)
    return request


def do_expire_grants(now: datetime | None = None) -> list[AccessRequest]:
    """Mark every granted request whose `granted_until` has passed as expired; returns them.

    The funnel and the gateway already refuse such grants; this records the
    end and tells the caller (the grant sweeper) whose sessions to end. The
    rows are locked, so of several nodes sweeping at once only one gets each.
    """
    now = now or timezone.now()
    with transaction.atomic():
        rows = AccessRequest.objects.select_for_update(of=("self",)).select_related("connection", "requester")
        ended = list(rows.filter(status=AccessRequest.Status.GRANTED, granted_until__lte=now))
        if not ended:
            return []
        AccessRequest.objects.filter(pk__in=[grant.pk for grant in ended]).update(status=AccessRequest.Status.EXPIRED)
        for grant in ended:
            grant.status = AccessRequest.Status.EXPIRED
            publish_access_event(grant)  # sent on commit
    logger.info("expired %d access grant(s): %s", len(ended), ", ".join(str(grant.public_id) for grant in ended))
    return ended


def sessions_under_grant(grant: AccessRequest) -> list[str]:
    """Public ids of the requester's live sessions on the grant's connection, unless it may still connect.

    Standing `connect` or another active grant keeps them allowed; then none.
    """
    try:
        access_connection(grant.requester, grant.connection.name, "connect")
    except Connection.DoesNotExist:
        live = Session.objects.filter(
            connection_id=grant.connection_id, account__user_id=grant.requester_id, status=Session.Status.LIVE
        )
        return [str(public_id) for public_id in live.values_list("public_id", flat=True)]
    return []


def end_sessions_under_grant(grant: AccessRequest, by: str, reason: str) -> list[str]:
    """End the live sessions an ended grant allowed, if its connection says so; returns their public ids.

    The end travels over the channel layer to whichever node holds each session.
    """
    if not grant.connection.end_sessions_on_grant_expiry:
        return []
    session_ids = sessions_under_grant(grant)
    if not session_ids:
        return []
    request_session_end(session_ids, by=by, reason=reason)
    logger.info("ending %d session(s) of access grant %s: %s", len(session_ids), grant.public_id, reason)
    return session_ids


def access_requests_for(user) -> QuerySet[AccessRequest]:
    """The requests `user` may see: their own, and those on connections they may review."""
    if not user.is_active:
        return AccessRequest.objects.none()
    reviewable = connections_for(user, "review")
    visible = AccessRequest.objects.filter(Q(requester_id=user.pk) | Q(connection__in=reviewable))
    return visible.select_related("connection", "requester", "account")


def get_access_request(user, public_id: str | uuid.UUID) -> AccessRequest:
    """The access funnel for one request: raises AccessRequest.DoesNotExist when missing, malformed or not visible."""
    return get_by_public_id(access_requests_for(user), public_id, "access request")


def pending_requests_to_decide(user) -> QuerySet[AccessRequest]:
    """Pending requests `user` may grant or refuse (on connections they review, not their own), oldest first."""
    if not user.is_active:
        return AccessRequest.objects.none()
    reviewable = connections_for(user, "review")
    rows = AccessRequest.objects.filter(status=AccessRequest.Status.PENDING, connection__in=reviewable)
    rows = rows.exclude(requester_id=user.pk).exclude(account__user_id=user.pk)
    return rows.select_related("connection", "requester", "account").order_by("created_at", "id")


def allowed_moves(request: AccessRequest, user, now: datetime | None = None) -> set[str]:
    """What `user` may do with a request they can see: a subset of grant, refuse, revoke, withdraw."""
    now = now or timezone.now()
    if request.status == AccessRequest.Status.PENDING:
        if _is_own(request, user):
            return {"withdraw"}
        return {"grant", "refuse"} if _may_review(user, request) else set()
    if is_active_grant(request, now) and _may_review(user, request):
        return {"revoke"}
    return set()


def is_active_grant(request: AccessRequest, now: datetime | None = None) -> bool:
    """Granted and not run out."""
    now = now or timezone.now()
    return request.status == AccessRequest.Status.GRANTED and request.granted_until > now


def shown_status(request: AccessRequest, now: datetime | None = None) -> str:
    """A grant past its end shows as expired: that is what the funnel and the sweeper see."""
    if request.status == AccessRequest.Status.GRANTED and not is_active_grant(request, now):
        return AccessRequest.Status.EXPIRED.value
    return request.status


def active_grant(user, connection: Connection) -> AccessRequest | None:
    """The user's own active grant on the connection that lasts longest, or None."""
    return (
        AccessRequest.objects.filter(
            requester_id=user.pk,
            connection=connection,
            status=AccessRequest.Status.GRANTED,
            granted_until__gt=timezone.now(),
        )
        .order_by("-granted_until")
        .first()
    )
