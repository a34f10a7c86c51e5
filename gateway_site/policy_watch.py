"""Brings live sessions under their connection's current policy within a few seconds of a change."""

import asyncio
import logging

from channels.db import database_sync_to_async

from connections.pg_directory import DjangoPgDirectory
from connections.policy_store import policies_by_connection, policy_revision
from connections.protocols.pgwire.gateway import PgGateway
from connections.protocols.ssh.gateway import SshGateway
from connections.ssh_directory import DjangoSshDirectory

logger = logging.getLogger(__name__)


class PolicyWatcher:
    """Polls the largest policy revision (one cheap query); when it moves, reloads live sessions' policies."""

    def __init__(self, gateway: PgGateway | None, directory: DjangoPgDirectory, interval: float) -> None:
        self.gateway = gateway
        self.directory = directory
        self.ssh: tuple[SshGateway, DjangoSshDirectory] | None = None  # set when the node serves SSH
        self.interval = interval
        self.revision: int | None = None
        self._task: asyncio.Task | None = None

    async def start(self) -> None:
        self.revision = await database_sync_to_async(policy_revision)()
        self._task = asyncio.ensure_future(self._watch_forever())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()

    async def _watch_forever(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            try:
                await self.check()
            except Exception:  # a database hiccup must not stop the watching
                logger.exception("could not check for policy changes")

    async def check(self) -> None:
        revision = await database_sync_to_async(policy_revision)()
        if revision == self.revision:
            return
        sessions = self._pg_sessions()
        connections = self.ssh[0].live_connections() if self.ssh else []
        names = {session.login.context.connection["name"] for session in sessions}
        names |= {connection.connection_name for connection in connections}
        policies = await database_sync_to_async(policies_by_connection)(names)
        # A deleted connection's sessions keep their policy until they end.
        for session in sessions:
            name = session.login.context.connection["name"]
            if name in policies:
                session.set_policy(self.directory.policy_update(session.policy, policies[name]))
        for connection in connections:
            if connection.connection_name in policies:
                connection.policy = self.ssh[1].policy_update(connection.policy, policies[connection.connection_name])
        self.revision = revision
        logger.info("policy revision %s: %d live sessions checked", revision, len(sessions) + len(connections))

    def _pg_sessions(self) -> list:
        """The PostgreSQL sessions past login (only those have a policy to change)."""
        if self.gateway is None:
            return []
        return [session for session in self.gateway.live_sessions() if session.tracker is not None]
