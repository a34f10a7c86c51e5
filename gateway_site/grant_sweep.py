"""Expires just-in-time access grants that have run out and ends the live sessions they allowed."""

import asyncio
import logging

from channels.db import database_sync_to_async
from django.conf import settings

from approvals.access_request_actions import SWEEPER_NAME, do_expire_grants, end_sessions_under_grant

logger = logging.getLogger(__name__)


def sweep_expired_grants() -> int:
    """Expire run-out grants and end their sessions where the connection says so; returns how many expired.

    One grant whose sessions cannot be ended does not keep the others' from ending.
    """
    expired = do_expire_grants()
    for grant in expired:
        try:
            end_sessions_under_grant(grant, by=SWEEPER_NAME, reason=f"access grant {grant.public_id} expired")
        except Exception:  # logged per grant; the grant itself is expired and refuses new sessions already
            logger.exception("could not end the sessions of expired access grant %s", grant.public_id)
    return len(expired)


class GrantSweeper:
    """Runs sweep_expired_grants at start and then every GATEHOUSE_GRANT_SWEEP_SECONDS."""

    def __init__(self, interval: float | None = None) -> None:
        self.interval = settings.GATEHOUSE_GRANT_SWEEP_SECONDS if interval is None else interval
        self._task: asyncio.Task | None = None

    def start(self) -> None:
        self._task = asyncio.ensure_future(self._sweep_forever())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()

    async def _sweep_forever(self) -> None:
        while True:
            try:
                await database_sync_to_async(sweep_expired_grants)()
            except Exception:  # a database hiccup must not stop the sweeping
                logger.exception("could not expire access grants")
            await asyncio.sleep(self.interval)
