"""What every protocol engine's directory shares: sessions, compiled policies, reviews and token use.

Each engine (connections.protocols.pgwire, connections.protocols.ssh) talks
to Django only through its directory, which subclasses `GatewayDirectory`.
The engine calls it at the edges of a session only: a lookup when a client
logs in, one INSERT when its session opens, and a sealing UPDATE after it
ends (from the recording flusher). Token last-use times are batched.
"""

import asyncio
import logging
from pathlib import Path

from channels.db import database_sync_to_async
from django.conf import settings
from django.utils import timezone

from approvals.review_wait import hold_for_review
from approvals.webhook import ReviewWebhook
from connections.access import GatewayLogin, record_token_use
from connections.credentials import load_or_create_key
from connections.models import Connection, Policy, ServiceAccount
from connections.policy.session_policy import CompiledPolicy
from connections.policy_store import spec_of
from recordings.actions import open_session
from recordings.writer import RecordingFlusher, RecordingWriter

logger = logging.getLogger(__name__)

TOKEN_USE_FLUSH_SECONDS = 5.0
COMPILED_POLICY_CACHE_SIZE = 64


class RecordedSession:
    """An engine's handle on an open session: `record` appends to its recording."""

    def __init__(self, writer: RecordingWriter, login: GatewayLogin) -> None:
        self.writer = writer
        self.public_id = writer.session_id
        self.record = writer.event
        self.connection_id = login.connection["id"]
        self.connection_name = login.connection["name"]
        self.account_id = login.account_id
        self.account_name = login.account_name


class GatewayDirectory:
    """The ORM and recording-store side shared by the engines' directories."""

    def __init__(self, flusher: RecordingFlusher, webhook: ReviewWebhook | None = None) -> None:
        self.flusher = flusher
        self.webhook = webhook
        self.policies: dict[tuple[int, int], CompiledPolicy] = {}
        self.masking_key = load_or_create_key(Path(settings.GATEHOUSE_MASKING_KEY_FILE))
        self.used_tokens: set[int] = set()
        self._token_task: asyncio.Task | None = None

    async def record_session(
        self, login: GatewayLogin, *, kind: str, client_addr: str, application_name: str
    ) -> RecordedSession:
        """Open a session's row and recording (one INSERT) and hand its writer to the flusher."""
        row = login.connection
        _session, writer = await database_sync_to_async(open_session)(
            # Instances built from the login lookup, so opening costs one INSERT.
            connection=Connection(id=row["id"], name=row["name"], retention_days=row["retention_days"]),
            account=ServiceAccount(id=login.account_id, name=login.account_name),
            actor=f"agent:{login.account_name}",
            client_addr=client_addr,
            application_name=application_name,
            kind=kind,
        )
        self.flusher.register(writer)
        return RecordedSession(writer, login)

    def compiled(self, policy: Policy) -> CompiledPolicy:
        """A policy revision compiled once and shared, so its parse and verdict caches stay warm."""
        key = (policy.pk, policy.revision)
        compiled = self.policies.get(key)
        if compiled is None:
            if len(self.policies) >= COMPILED_POLICY_CACHE_SIZE:
                self.policies.clear()
            compiled = self.policies[key] = CompiledPolicy(spec_of(policy), key, self.masking_key)
        return compiled

    async def review(self, handle: RecordedSession, verdict):
        """Hold a statement or command until a reviewer decides, the review times out, or the client withdraws it."""
        return await hold_for_review(
            verdict,
            connection_id=handle.connection_id,
            account_id=handle.account_id,
            session_public_id=handle.public_id,
            timeout=verdict.timeout or settings.GATEHOUSE_REVIEW_TIMEOUT_SECONDS,
            approvals=verdict.approvals,
            record=handle.record,
            announce=self.webhook.notify if self.webhook is not None else None,
            context={"agent": handle.account_name, "connection": handle.connection_name},
        )

    def close_session(self, handle: RecordedSession, status: str, reason: str, counters: dict) -> None:
        if reason:
            handle.record("closed", {"reason": reason})
        handle.writer.close(status, counters)

    def start(self) -> None:
        self._token_task = asyncio.ensure_future(self._record_token_use_forever())

    async def stop(self) -> None:
        if self._token_task is not None:
            self._token_task.cancel()
        await self._flush_token_use()

    async def _record_token_use_forever(self) -> None:
        while True:
            await asyncio.sleep(TOKEN_USE_FLUSH_SECONDS)
            await self._flush_token_use()

    async def _flush_token_use(self) -> None:
        ids, self.used_tokens = self.used_tokens, set()
        if ids:
            try:
                await database_sync_to_async(record_token_use)(ids, timezone.now())
            except Exception:
                logger.exception("could not record token use")
