"""What gateway nodes ask of each other over the channel layer, and what a node publishes to watchers.

A request about a session goes to every node (NODES_GROUP); the node that
holds the session acts, the others ignore it:

- `pg.cancel`: a client's CancelRequest arrived on a fresh connection, which a
  load balancer may hand to any node;
- `session.watch`: a reviewer watches a session, so its node publishes its
  recording batches to the session's group for a while (a renewable lease;
  `publish_watched_batch` is the flusher's hook, see watch_publisher);
- `session.terminate`: a reviewer, or an expired access grant, ends a session.

Termination is also read from the database every TERMINATION_POLL_SECONDS
(`Session.terminated_by` set on a live session of this node), so it holds
when an announcement is lost or the channel layer is not shared (a
`sessions terminate` command beside a node on the in-memory layer).
"""

import asyncio
import logging

from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from django.conf import settings

from connections.protocols.pgwire.gateway import PgGateway
from connections.protocols.ssh.gateway import SshGateway
from gateway_site.broadcast import NODES_GROUP
from gateway_site.watch_publisher import WatchPublisher
from recordings.models import Session
from recordings.writer import RecordingFlusher

logger = logging.getLogger(__name__)

WATCH_LEASE_SECONDS = 30.0
TERMINATION_POLL_SECONDS = 2.0


class NodeSignals:
    """Subscribes a node to NODES_GROUP, serves what it holds, and publishes watched batches."""

    def __init__(self, gateway: PgGateway | None, flusher: RecordingFlusher) -> None:
        self.gateway = gateway
        self.ssh_gateway: SshGateway | None = None
        self.flusher = flusher
        self.layer = get_channel_layer()
        self.channel = ""
        self.publish_watched_batch = WatchPublisher(self.layer)
        self._tasks: list[asyncio.Task] = []
        self._handlers = {
            "pg.cancel": self._on_cancel,
            "session.watch": self._on_watch,
            "session.terminate": self._on_terminate,
        }

    async def start(self) -> None:
        self.channel = await self.layer.new_channel()
        await self.layer.group_add(NODES_GROUP, self.channel)
        self._tasks = [asyncio.ensure_future(self._receive_forever()), asyncio.ensure_future(self._poll_forever())]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        if self._tasks:
            await self.layer.group_discard(NODES_GROUP, self.channel)
        self._tasks = []

    def forward_cancel(self, pid: int, secret: int) -> None:
        """The engine's forward_cancel hook: tell every other node."""
        message = {"type": "pg.cancel", "pid": pid, "secret": secret, "origin": self.channel}
        asyncio.ensure_future(self.layer.group_send(NODES_GROUP, message))

    async def _receive_forever(self) -> None:
        while True:
            try:
                message = await self.layer.receive(self.channel)
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.exception("node signals: channel layer receive failed; retrying")
                await asyncio.sleep(1)
                continue
            handler = self._handlers.get(message.get("type"))
            if handler is None:
                logger.warning("node signals: ignoring a message of type %r", message.get("type"))
                continue
            try:
                handler(message)
            except Exception:
                logger.exception("node signals: could not handle %s", message.get("type"))

    async def _poll_forever(self) -> None:
        while True:
            await asyncio.sleep(TERMINATION_POLL_SECONDS)
            try:
                ending = await database_sync_to_async(_sessions_to_end)()
            except Exception:
                logger.exception("node signals: could not read which sessions to end")
                continue
            for public_id, by, reason in ending:
                self._on_terminate({"session": str(public_id), "by": by, "reason": reason})

    def _on_cancel(self, message: dict) -> None:
        if message.get("origin") == self.channel or self.gateway is None:
            return
        if self.gateway.cancel(message["pid"], message["secret"]):
            logger.info("cancelled a query on behalf of another node")

    def _on_watch(self, message: dict) -> None:
        writer = self.flusher.writer_for(message["session"])
        if writer is not None:
            writer.watch(WATCH_LEASE_SECONDS)

    def _on_terminate(self, message: dict) -> None:
        by, reason = message["by"], message.get("reason") or "ended by a reviewer"
        for gateway in (self.gateway, self.ssh_gateway):
            if gateway is not None and gateway.terminate_session(message["session"], by, reason):
                logger.info("session %s terminated by %s", message["session"], by)
                return


def _sessions_to_end() -> list[tuple[str, str, str]]:
    """(public id, by, reason) of this node's live sessions that someone asked to end."""
    live = Session.objects.filter(status=Session.Status.LIVE, node=settings.GATEHOUSE_NODE_ID)
    return list(live.exclude(terminated_by="").values_list("public_id", "terminated_by", "terminate_reason"))
