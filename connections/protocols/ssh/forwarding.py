"""direct-tcpip (`ssh -L`): a TCP stream to an allowed destination, opened from the upstream host.

The destination is reached through the gateway's own connection to the host,
as the agent would have reached it with `ssh -L` straight to the host. The
recording gets an open and a close event with the destination and the bytes
each way; the stream's content is not recorded.
"""

import logging
from typing import TYPE_CHECKING

import asyncssh

from .upstream import UpstreamRefused

if TYPE_CHECKING:
    from .client_connection import ClientConnection

logger = logging.getLogger(__name__)


class ForwardChannel(asyncssh.SSHTCPSession):
    """The agent's side of one forwarded stream."""

    def __init__(self, owner: "ClientConnection", number: int, host: str, port: int) -> None:
        self.owner = owner
        self.number = number
        self.host, self.port = host, port
        self.chan: asyncssh.SSHTCPChannel | None = None
        self.upstream: asyncssh.SSHTCPChannel | None = None
        self.bytes_up = self.bytes_down = 0
        self.closed = False
        self.early: list[bytes] = []  # what the host sent before the agent's channel was confirmed

    async def start(self) -> "ForwardChannel":
        """Open the stream from the host before accepting the agent's channel; a failure refuses it."""
        try:
            connection = await self.owner.upstream_connection()
            self.upstream, _ = await connection.create_connection(
                lambda: UpstreamForward(self), self.host, self.port, encoding=None
            )
        except UpstreamRefused as exc:
            raise asyncssh.ChannelOpenError(asyncssh.OPEN_CONNECT_FAILED, f"Gatehouse: {exc}") from None
        except asyncssh.ChannelOpenError as exc:
            self.owner.record("forward_failed", {"ch": self.number, "host": self.host, "port": self.port})
            raise asyncssh.ChannelOpenError(exc.code, f"Gatehouse: the upstream host refused: {exc.reason}") from None
        self.owner.record("forward", {"ch": self.number, "host": self.host, "port": self.port})
        return self

    def connection_made(self, chan: asyncssh.SSHTCPChannel) -> None:
        self.chan = chan
        for data in self.early:
            chan.write(data)
        self.early.clear()

    def data_received(self, data: bytes, datatype: int | None) -> None:
        self.bytes_up += len(data)
        self.owner.bytes_from_client += len(data)
        self.upstream.write(data)

    def eof_received(self) -> bool:
        self.upstream.write_eof()
        return True

    def pause_writing(self) -> None:
        self.upstream.pause_reading()

    def resume_writing(self) -> None:
        self.upstream.resume_reading()

    def connection_lost(self, exc: Exception | None) -> None:
        if self.upstream is not None:
            self.upstream.close()
        self.finish()

    def to_agent(self, data: bytes) -> None:
        self.bytes_down += len(data)
        self.owner.bytes_to_client += len(data)
        if self.chan is None:
            self.early.append(data)
        else:
            self.chan.write(data)

    def finish(self) -> None:
        """Record the close once, whichever side closed first."""
        if self.closed:
            return
        self.closed = True
        event = {"ch": self.number, "host": self.host, "port": self.port}
        self.owner.record("forward_closed", {**event, "bytes_up": self.bytes_up, "bytes_down": self.bytes_down})


class UpstreamForward(asyncssh.SSHTCPSession):
    """The host's side of one forwarded stream."""

    def __init__(self, forward: ForwardChannel) -> None:
        self.forward = forward

    def data_received(self, data: bytes, datatype: int | None) -> None:
        self.forward.to_agent(data)

    def eof_received(self) -> bool:
        if self.forward.chan is not None:
            self.forward.chan.write_eof()
        return True

    def pause_writing(self) -> None:
        self.forward.chan.pause_reading()

    def resume_writing(self) -> None:
        self.forward.chan.resume_reading()

    def connection_lost(self, exc: Exception | None) -> None:
        if self.forward.chan is not None:
            self.forward.chan.close()
        self.forward.finish()
