"""A node's periodic database chores: expiring overdue reviews and run-out access grants."""

import asyncio
import logging
from collections.abc import Callable

from channels.db import database_sync_to_async

logger = logging.getLogger(__name__)


class Sweeper:
    """Runs `work` (sync, on the database thread) at start and then every `interval` seconds, until stopped."""

    def __init__(self, work: Callable[[], object], interval: float, what: str) -> None:
        self.work = work
        self.interval = interval
        self.what = what
        self._task: asyncio.Task | None = None

    def start(self) -> None:
        self._task = asyncio.ensure_future(self._sweep_forever())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()

    async def _sweep_forever(self) -> None:
        while True:
            try:
                await database_sync_to_async(self.work)()
            except Exception:  # a database hiccup must not stop the sweeping
                logger.exception("could not %s", self.what)
            await asyncio.sleep(self.interval)
