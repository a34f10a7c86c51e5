"""The reviewers' live feed: one websocket per open page, pushing fresh fragments on every announcement.

Announcements (gateway_site.broadcast.FEED_GROUP) carry only ids. On each
one, the consumer renders the dashboard's live blocks again for its own
user, so what a user sees is decided by the same funnels as the page, at
the time of the event: a permission taken away stops the updates at once.
Announcements that arrive close together are coalesced into one render.
"""

import asyncio
import logging

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer

from gateway_site.broadcast import FEED_GROUP
from gateway_site.dashboard import live_fragments

logger = logging.getLogger(__name__)

COALESCE_SECONDS = 0.05
CLOSE_UNAUTHENTICATED = 4401


class FeedConsumer(AsyncWebsocketConsumer):
    """Pushes the dashboard's live fragments to a logged-in user."""

    async def connect(self) -> None:
        self.user = self.scope["user"]
        self.render_pending: asyncio.Task | None = None
        if not self.user.is_authenticated:
            await self.close(code=CLOSE_UNAUTHENTICATED)
            return
        await self.channel_layer.group_add(FEED_GROUP, self.channel_name)
        await self.accept()

    async def disconnect(self, code: int) -> None:
        if self.render_pending is not None:
            self.render_pending.cancel()
        await self.channel_layer.group_discard(FEED_GROUP, self.channel_name)

    async def feed_event(self, message: dict) -> None:
        if self.render_pending is None or self.render_pending.done():
            self.render_pending = asyncio.ensure_future(self._render_soon())

    async def _render_soon(self) -> None:
        await asyncio.sleep(COALESCE_SECONDS)
        html = await self._fragments()
        if html is None:
            await self.close(code=CLOSE_UNAUTHENTICATED)
        else:
            await self.send(text_data=html)

    @database_sync_to_async
    def _fragments(self) -> str | None:
        self.user.refresh_from_db(fields=["is_active"])
        if not self.user.is_active:
            return None
        return live_fragments(self.user)
