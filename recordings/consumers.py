"""Live watch: a websocket per watched session, streaming its events as timeline rows.

A watcher first gets what the recording holds so far (its last
HISTORY_EVENTS events), then the batches the session's node publishes
while the watch lease is held. Every event carries its line number in the
recording, so the two sources join without gaps or repeats: a batch that
starts past what was sent has its gap read from the file (every earlier
batch is on disk by then). Permission is checked again before every batch
is forwarded.
"""

import asyncio
import contextlib
import logging
from collections import deque

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer

from gateway_site.broadcast import NODES_GROUP, session_group
from recordings.access import access_session
from recordings.actions import recording_file
from recordings.models import Session
from recordings.replay import live_rows, parse_event

logger = logging.getLogger(__name__)

HISTORY_EVENTS = 200
WATCH_RENEW_SECONDS = 10.0
CLOSE_FORBIDDEN = 4403


def read_events(session: Session, start_line: int, end_line: int | None = None, keep: int | None = None) -> list:
    """(line, t, kind, data) of the recording's event lines start_line..end_line-1 (the header is line 0).

    With `keep`, only the last `keep` of them. Reading stops at a torn last line (being written).
    """
    events: deque | list = deque(maxlen=keep) if keep else []
    with open(recording_file(session), "rb") as handle:
        for number, line in enumerate(handle):
            if number < max(start_line, 1):
                continue
            if end_line is not None and number >= end_line:
                break
            event = parse_event(number, line)
            if event is None:
                break
            events.append((event.line, event.t, event.kind, event.data))
    return list(events)


class SessionWatchConsumer(AsyncWebsocketConsumer):
    """Streams one session to a reviewer with `view_sessions` on its connection."""

    async def connect(self) -> None:
        self.public_id = self.scope["url_route"]["kwargs"]["public_id"]
        self.user = self.scope["user"]
        self.next_line = 1
        self.renewal: asyncio.Task | None = None
        session = await self._allowed_session()
        if session is None:
            await self.close(code=CLOSE_FORBIDDEN)  # missing and forbidden alike
            return
        self.group = session_group(session.public_id)
        await self.channel_layer.group_add(self.group, self.channel_name)
        await self.accept()
        if session.status == Session.Status.LIVE:
            self.renewal = asyncio.ensure_future(self._hold_watch_lease(str(session.public_id)))
        history = await database_sync_to_async(read_events)(session, 1, keep=HISTORY_EVENTS)
        await self._send_rows(history)

    async def disconnect(self, code: int) -> None:
        if self.renewal is not None:
            self.renewal.cancel()
        if hasattr(self, "group"):
            await self.channel_layer.group_discard(self.group, self.channel_name)

    async def session_events(self, message: dict) -> None:
        """A batch the session's node published: forward it if the watcher may still see it."""
        session = await self._allowed_session()
        if session is None:
            await self.close(code=CLOSE_FORBIDDEN)
            return
        first = message["first_line"]
        if first > self.next_line:
            await self._send_rows(await database_sync_to_async(read_events)(session, self.next_line, first))
        events = [(first + i, t, kind, data) for i, (t, kind, data) in enumerate(message["events"])]
        await self._send_rows([event for event in events if event[0] >= self.next_line])
        self.next_line = max(self.next_line, first + len(events) + message.get("skipped", 0))
        if message.get("skipped"):
            await self.send(text_data=live_rows([], skipped=message["skipped"]))
        if any(kind == "end" for _line, _t, kind, _data in events) and self.renewal is not None:
            self.renewal.cancel()

    async def _send_rows(self, events: list) -> None:
        if events:
            self.next_line = max(self.next_line, events[-1][0] + 1)
            await self.send(text_data=live_rows(events))

    @database_sync_to_async
    def _allowed_session(self) -> Session | None:
        if not self.user.is_authenticated:
            return None
        try:
            return access_session(self.user, self.public_id)
        except Session.DoesNotExist:
            return None

    async def _hold_watch_lease(self, public_id: str) -> None:
        """Ask the session's node to publish its batches, again before each lease runs out."""
        with contextlib.suppress(asyncio.CancelledError):
            while True:
                await self.channel_layer.group_send(NODES_GROUP, {"type": "session.watch", "session": public_id})
                await asyncio.sleep(WATCH_RENEW_SECONDS)
