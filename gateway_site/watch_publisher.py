"""Sends a watched session's new events to its watchers, in small, spaced batches.

The recording flusher hands over every batch of a watched session; this
gathers them into at most one message per session every PUBLISH_SECONDS,
holding at most BATCH_MAX events: a busy session would otherwise make its
watchers (and a browser rendering each row) compete with the session for
CPU. What does not fit is counted as skipped; the replay has it all.
Events keep their line numbers in the recording, so a watcher can tell
what it missed and read it from the file.
"""

import asyncio

from gateway_site.broadcast import session_group
from recordings.writer import RecordingWriter

PUBLISH_SECONDS = 0.5
BATCH_MAX = 20


class WatchPublisher:
    """The flusher's on_watched_batch hook: gathers, caps and spaces what goes to each session's group."""

    def __init__(self, layer, interval: float = PUBLISH_SECONDS, limit: int = BATCH_MAX) -> None:
        self.layer = layer
        self.interval = interval
        self.limit = limit
        self._gathering: dict[str, dict] = {}  # session id -> the message being gathered

    def __call__(self, writer: RecordingWriter, first_line: int, batch: list) -> None:
        session_id = writer.session_id
        message = self._gathering.get(session_id)
        if message is None:
            message = {"type": "session.events", "first_line": first_line, "events": [], "skipped": 0}
            self._gathering[session_id] = message
            asyncio.get_running_loop().call_later(self.interval, self._send, session_id)
        room = self.limit - len(message["events"])
        if message["skipped"] or room <= 0:  # lines must stay contiguous: after a skip, only count
            message["skipped"] += len(batch)
            return
        message["events"].extend([t, kind, data] for t, kind, data in batch[:room])
        message["skipped"] += max(0, len(batch) - room)

    def _send(self, session_id: str) -> None:
        message = self._gathering.pop(session_id, None)
        if message is not None:
            asyncio.ensure_future(self.layer.group_send(session_group(session_id), message))
