"""Agent forwarding (`ssh -A`) on connections that allow it: the host may use the client's own ssh-agent.

The gateway's connection to the host is opened with agent forwarding pointed at
a UNIX socket of the gateway's own, in its private runtime directory. Each time
something on the host opens the forwarded agent, the host's request arrives on
that socket and becomes an agent channel to the client, provided the client
asked for agent forwarding; otherwise it is closed at once. The recording gets
an event for each use; the agent protocol itself is not decoded.

The gateway's own login to the host never uses the client's agent.
"""

import asyncio
import contextlib
from pathlib import Path
from typing import TYPE_CHECKING

import asyncssh

if TYPE_CHECKING:
    from .client_connection import ClientConnection

CHUNK = 65536


class AgentRelay:
    """The socket the host's agent requests arrive on, for one client connection."""

    def __init__(self, owner: "ClientConnection", path: Path) -> None:
        self.owner = owner
        self.path = path
        self.server: asyncio.AbstractServer | None = None
        self.uses = 0

    async def start(self) -> str:
        self.server = await asyncio.start_unix_server(self._relay, path=str(self.path))
        return str(self.path)

    def close(self) -> None:
        if self.server is not None:
            self.server.close()
        self.path.unlink(missing_ok=True)

    async def _relay(self, host_reader: asyncio.StreamReader, host_writer: asyncio.StreamWriter) -> None:
        try:
            agent_reader, agent_writer = await self.owner.conn.open_agent_connection()
        except (asyncssh.ChannelOpenError, asyncssh.DisconnectError):
            host_writer.close()  # the client did not forward its agent (or is gone)
            return
        self.uses += 1
        self.owner.record("agent", {"use": self.uses})
        await asyncio.gather(_pipe(host_reader, agent_writer), _pipe(agent_reader, host_writer))


async def _pipe(reader, writer) -> None:
    """Copy until EOF or an error, then close the other side too."""
    with contextlib.suppress(OSError, asyncssh.Error):
        while data := await reader.read(CHUNK):
            writer.write(data)
            await writer.drain()
    writer.close()
