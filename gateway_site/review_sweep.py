"""Expires reviews left pending past their deadline, such as those of a node that died while holding them."""

import asyncio
import logging

from channels.db import database_sync_to_async

from approvals.actions import do_expire_overdue_reviews

logger = logging.getLogger(__name__)

SWEEP_SECONDS = 60.0


class ReviewSweeper:
    """Runs do_expire_overdue_reviews at start and then every SWEEP_SECONDS."""

    def __init__(self, interval: float = SWEEP_SECONDS) -> None:
        self.interval = interval
        self._task: asyncio.Task | None = None

    def start(self) -> None:
        self._task = asyncio.ensure_future(self._sweep_forever())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()

    async def _sweep_forever(self) -> None:
        while True:
            try:
                await database_sync_to_async(do_expire_overdue_reviews)()
            except Exception:  # a database hiccup must not stop the sweeping
                logger.exception("could not expire overdue reviews")
            await asyncio.sleep(self.interval)
