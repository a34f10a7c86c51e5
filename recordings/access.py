"""The one access funnel for sessions: every sessions page, export and watch asks here.

Whether someone may see a session is decided by the connection it ran on
(`connections.access.connections_for`): `view_sessions` to watch, replay and
export it. "Not found", "malformed id" and "forbidden" raise the same
Session.DoesNotExist, so nobody can probe which sessions exist.
"""

import uuid

from django.db.models import F, QuerySet

from connections.access import connections_for
from gateway_site.public_ids import get_by_public_id
from recordings.models import Session


def sessions_for(user, action: str = "view_sessions") -> QuerySet[Session]:
    """The sessions `user` may do `action` on: those of the connections the connection funnel grants.

    A lazy queryset (the allowed connections are a subquery), so callers
    filter, order and slice it into one statement. Superusers see every
    session, inactive users none.

    The visibility test reads `connection_id + 0`, which no index serves: a
    planner without statistics (SQLite) would otherwise walk the connection
    index and sort every visible session, where walking the time index and
    stopping after a page is what the lists need. Load related rows with
    prefetch_related, not select_related, for the same reason.
    """
    allowed = connections_for(user, action).values("id")
    return Session.objects.alias(visible_by=F("connection_id") + 0).filter(visible_by__in=allowed)


def access_session(user, public_id: str | uuid.UUID, action: str = "view_sessions") -> Session:
    """The session `public_id` if `user` may do `action` on it, with its connection and account loaded.

    Raises Session.DoesNotExist, with one message, when the id is malformed,
    when no such session exists and when the user lacks the permission.
    """
    visible = sessions_for(user, action).select_related("connection", "account")
    return get_by_public_id(visible, public_id, "session")
