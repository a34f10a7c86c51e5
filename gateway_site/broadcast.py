"""Announcements on the channel layer: the group names, and sending once a change is committed.

Every signal that crosses sessions, processes or nodes goes through here:
what reviewers' pages show live (FEED_GROUP), a review's decision reaching
the node that holds its statement (review_group), a session's events
reaching its watchers (session_group), and requests to whichever node holds
a session (NODES_GROUP). With the in-memory layer that is one process; with
channels_redis, every node.

Announcements are best effort: a lost one costs a page a refresh, never a
decision, because the database stays the source of truth.
"""

import logging
import uuid
from collections.abc import Iterable

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.db import transaction

logger = logging.getLogger(__name__)

FEED_GROUP = "gatehouse.feed"
NODES_GROUP = "gatehouse.nodes"

Announcement = tuple[str, dict]  # (group, message)


def review_group(public_id: str | uuid.UUID) -> str:
    """Where a review's decision is announced to the gateway holding its statement."""
    return f"gatehouse.review.{uuid.UUID(str(public_id)).hex}"


def session_group(public_id: str | uuid.UUID) -> str:
    """Where a live session's events go to the reviewers watching it."""
    return f"gatehouse.session.{uuid.UUID(str(public_id)).hex}"


def feed_message(event: str, **data: object) -> Announcement:
    """An announcement for reviewers' pages; the feed consumer re-renders what each user may see."""
    return FEED_GROUP, {"type": "feed.event", "event": event, **data}


def announce_on_commit(*announcements: Announcement) -> None:
    """Send the announcements after the current transaction commits (at once outside one).

    Call from sync code only: a sync thread of an async server, a command,
    a view. A failure is logged, never raised into the caller's work.
    """
    transaction.on_commit(lambda: announce_now(announcements))


def announce_now(announcements: Iterable[Announcement]) -> None:
    """Send the announcements now, from sync code."""
    try:
        async_to_sync(aannounce)(announcements)
    except Exception:
        logger.exception("could not announce %s on the channel layer", [group for group, _ in announcements])


async def aannounce(announcements: Iterable[Announcement]) -> None:
    """Send the announcements from async code."""
    layer = get_channel_layer()
    for group, message in announcements:
        await layer.group_send(group, message)
