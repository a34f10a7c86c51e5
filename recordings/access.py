"""The one access funnel for sessions: every sessions page, export and watch asks here.

Whether someone may see a session is decided by the connection it ran on
(`connections.access.connections_for`): `view_sessions` to watch, replay and
export it. "Not found", "malformed id" and "forbidden" raise the same
Session.DoesNotExist, so nobody can probe which sessions exist.
"""

import uuid

from django.db.models import QuerySet

from connections.access import connections_for
from gateway_site.public_ids import parse_public_id
from recordings.models import Session


def sessions_for(user, action: str = "view_sessions") -> QuerySet[Session]:
    """The sessions `user` may do `action` on: those of the connections the connection funnel grants.

    A lazy queryset (the allowed connections are a subquery), so callers
    filter, order and slice it into one statement. Superusers see every
    session, inactive users none.
    """
    allowed = connections_for(user, action).values("id")
    return Session.objects.filter(connection_id__in=allowed)


def access_session(user, public_id: str | uuid.UUID, action: str = "view_sessions") -> Session:
    """The session `public_id` if `user` may do `action` on it, with its connection and account loaded.

    Raises Session.DoesNotExist, with one message, when the id is malformed,
    when no such session exists and when the user lacks the permission.
    """
    parsed = parse_public_id(public_id)
    session = None
    if parsed is not None:
        visible = sessions_for(user, action).select_related("connection", "account")
        session = visible.filter(public_id=parsed).first()
    if session is None:
        raise Session.DoesNotExist(f"no session {public_id}")
    return session
