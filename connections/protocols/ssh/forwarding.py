"""Port forwarding: TCP streams between the client and the upstream host, recorded but not inspected.

- direct-tcpip (`ssh -L`, `ssh -W`): the client asks for a stream to an allowed
  destination; the gateway opens it from the host, through its own connection
  to the host, as the client would have with `ssh -L` straight to the host.
- forwarded-tcpip (`ssh -R`): the host listens on an allowed address for the
  client (see ClientConnection.server_requested); each connection it accepts
  becomes a channel back to the client.

The recording gets an open and a close event with the address and the bytes
each way; the stream's content is not recorded.
"""

from typing import TYPE_CHECKING

import asyncssh

from .upstream import UpstreamRefused

if TYPE_CHECKING:
    from .client_connection import ClientConnection


class Forward:
    """One forwarded stream: its two ends, and the events that record it."""

    def __init__(self, owner: "ClientConnection", number: int, host: str, port: int, remote: bool = False) -> None:
        self.owner = owner
        self.event = {"ch": number, "host": host, "port": port}
        if remote:
            self.event["remote"] = True
        self.client_end = ForwardEnd(self, from_client=True)
        self.host_end = ForwardEnd(self, from_client=False)
        self.client_end.peer, self.host_end.peer = self.host_end, self.client_end
        self.closed = False

    async def open_from_host(self) -> "ForwardEnd":
        """direct-tcpip: open the stream from the host first; a failure refuses the client's channel."""
        host, port = self.event["host"], self.event["port"]
        try:
            connection = await self.owner.upstream_connection()
            await connection.create_connection(lambda: self.host_end, host, port, encoding=None)
        except UpstreamRefused as exc:
            raise asyncssh.ChannelOpenError(asyncssh.OPEN_CONNECT_FAILED, f"Gatehouse: {exc}") from None
        except asyncssh.ChannelOpenError as exc:
            self.owner.record("forward_failed", self.event)
            raise asyncssh.ChannelOpenError(exc.code, f"Gatehouse: the upstream host refused: {exc.reason}") from None
        self.owner.record("forward", self.event)
        return self.client_end

    async def open_to_client(self, orig_host: str, orig_port: int) -> "ForwardEnd":
        """forwarded-tcpip: the host accepted a connection; open the channel back to the client, or refuse it."""
        host, port = self.event["host"], self.event["port"]
        try:
            await self.owner.conn.create_connection(
                lambda: self.client_end, host, port, orig_host, orig_port, encoding=None
            )
        except asyncssh.ChannelOpenError:
            self.owner.record("forward_failed", self.event)
            raise
        except (asyncssh.Error, OSError):  # the client is gone: refuse the host's channel, keep its connection
            raise asyncssh.ChannelOpenError(asyncssh.OPEN_CONNECT_FAILED, "Gatehouse: the client is gone") from None
        self.owner.record("forward", {**self.event, "from": f"{orig_host}:{orig_port}"})
        return self.host_end

    def count(self, end: "ForwardEnd", size: int) -> None:
        if end.from_client:
            self.owner.bytes_from_client += size
        else:
            self.owner.bytes_to_client += size

    def finish(self) -> None:
        """Record the close once, whichever side closed first."""
        if self.closed:
            return
        self.closed = True
        sizes = {"bytes_up": self.client_end.received, "bytes_down": self.host_end.received}
        self.owner.record("forward_closed", {**self.event, **sizes})


class ForwardEnd(asyncssh.SSHTCPSession):
    """One end of a forwarded stream (the client's channel or the host's); what arrives goes to its peer.

    Until its own channel is open, what the peer sends waits here.
    """

    def __init__(self, forward: Forward, from_client: bool) -> None:
        self.forward = forward
        self.from_client = from_client
        self.peer: ForwardEnd | None = None
        self.chan: asyncssh.SSHTCPChannel | None = None
        self.waiting: list[bytes] = []
        self.eof_waiting = False
        self.received = 0

    def connection_made(self, chan: asyncssh.SSHTCPChannel) -> None:
        self.chan = chan
        for data in self.waiting:
            chan.write(data)
        self.waiting.clear()
        if self.eof_waiting:
            chan.write_eof()

    def data_received(self, data: bytes, datatype: int | None) -> None:
        self.received += len(data)
        self.forward.count(self, len(data))
        self.peer.send(data)

    def send(self, data: bytes) -> None:
        if self.chan is None:
            self.waiting.append(data)
        else:
            self.chan.write(data)

    def eof_received(self) -> bool:
        if self.peer.chan is None:
            self.peer.eof_waiting = True
        else:
            self.peer.chan.write_eof()
        return True

    def pause_writing(self) -> None:
        if self.peer.chan is not None:
            self.peer.chan.pause_reading()

    def resume_writing(self) -> None:
        if self.peer.chan is not None:
            self.peer.chan.resume_reading()

    def connection_lost(self, exc: Exception | None) -> None:
        if self.peer.chan is not None:
            self.peer.chan.close()
        self.forward.finish()
