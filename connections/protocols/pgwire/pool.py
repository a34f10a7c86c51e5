"""A small pool of logged-in upstream connections, reset between clients.

Reusing a backend skips the server's fork and login, which is most of the
cost of a short-lived client. A connection goes back to the pool only when
its client left it idle and cleanly; `DISCARD ALL` then clears session state,
as pgbouncer does in session mode.
"""

import asyncio
import logging

from .targets import PgTarget
from .upstream import PgUpstream, UpstreamState, connect_upstream

logger = logging.getLogger(__name__)


class UpstreamPool:
    """Idle upstream connections keyed by target and client startup parameters."""

    def __init__(self, size: int, idle_seconds: float, connect_timeout: float) -> None:
        self.size = size
        self.idle_seconds = idle_seconds
        self.connect_timeout = connect_timeout
        self.idle: dict[tuple, list[tuple[PgUpstream, asyncio.TimerHandle]]] = {}

    @staticmethod
    def key(target: PgTarget, params: dict[str, str]) -> tuple:
        return (target.pool_key(), tuple(sorted(params.items())))

    async def acquire(self, target: PgTarget, params: dict[str, str]) -> PgUpstream:
        """A ready upstream connection: an idle one if any, else a new one."""
        entries = self.idle.get(self.key(target, params), [])
        while entries:
            upstream, timer = entries.pop()
            timer.cancel()
            if upstream.state is UpstreamState.IDLE:
                upstream.on_lost = None
                return upstream
        return await connect_upstream(target, params, self.connect_timeout)

    def release(self, upstream: PgUpstream, reusable: bool) -> None:
        """Take back a connection its client is done with; close it unless reusable."""
        key = self.key(upstream.target, upstream.params)
        if not reusable or self.size == 0 or len(self.idle.get(key, [])) >= self.size:
            upstream.close()
            return
        upstream.detach_and_reset(lambda clean: self._park(key, clean))

    def _park(self, key: tuple, upstream: PgUpstream) -> None:
        entries = self.idle.setdefault(key, [])
        if len(entries) >= self.size or upstream.transaction_status != b"I":
            upstream.close()
            return
        timer = asyncio.get_running_loop().call_later(self.idle_seconds, self._expire, key, upstream)
        entries.append((upstream, timer))
        upstream.on_lost = lambda lost: self._forget(key, lost)

    def _expire(self, key: tuple, upstream: PgUpstream) -> None:
        self._forget(key, upstream)
        upstream.close()

    def _forget(self, key: tuple, upstream: PgUpstream) -> None:
        entries = self.idle.get(key, [])
        for entry in entries:
            if entry[0] is upstream:
                entry[1].cancel()
                entries.remove(entry)
                break
        if not entries:
            self.idle.pop(key, None)

    def close(self) -> None:
        for entries in self.idle.values():
            for upstream, timer in entries:
                timer.cancel()
                upstream.close()
        self.idle.clear()
