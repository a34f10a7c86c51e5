"""Carries PostgreSQL cancel requests between gateway nodes over the channel layer.

A client's CancelRequest arrives on a fresh connection, which a load balancer
may hand to any node. The node that does not hold the session broadcasts the
key; the node that does cancels the upstream query.
"""

import asyncio
import logging

from channels.layers import get_channel_layer

from connections.protocols.pgwire.gateway import PgGateway

logger = logging.getLogger(__name__)

GROUP = "gatehouse.pg.cancel"


class CancelRelay:
    """Subscribes a node to cancel broadcasts and publishes the ones it cannot serve."""

    def __init__(self, gateway: PgGateway) -> None:
        self.gateway = gateway
        self.layer = get_channel_layer()
        self.channel = ""
        self._task: asyncio.Task | None = None

    async def start(self) -> None:
        self.channel = await self.layer.new_channel()
        await self.layer.group_add(GROUP, self.channel)
        self._task = asyncio.ensure_future(self._receive_forever())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await self.layer.group_discard(GROUP, self.channel)

    def forward(self, pid: int, secret: int) -> None:
        """The engine's forward_cancel hook: tell every other node."""
        message = {"type": "pg.cancel", "pid": pid, "secret": secret, "origin": self.channel}
        asyncio.ensure_future(self.layer.group_send(GROUP, message))

    async def _receive_forever(self) -> None:
        while True:
            try:
                message = await self.layer.receive(self.channel)
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.exception("cancel relay: channel layer receive failed; retrying")
                await asyncio.sleep(1)
                continue
            if message.get("origin") != self.channel and self.gateway.cancel(message["pid"], message["secret"]):
                logger.info("cancelled a query on behalf of another node")
