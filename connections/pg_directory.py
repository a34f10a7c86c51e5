"""The Django side of the PostgreSQL engine: who may log in, and where sessions are recorded.

The engine calls this at the edges of a session only: one lookup when a
client logs in, one INSERT when its session opens, and a sealing UPDATE after
it ends (from the recording flusher). Token last-use times are batched.
"""

import asyncio
import logging
from pathlib import Path

from channels.db import database_sync_to_async
from django.conf import settings
from django.utils import timezone

from approvals.review_wait import hold_for_review
from approvals.webhook import ReviewWebhook
from connections.access import GatewayLogin, lookup_gateway_login, record_token_use
from connections.credentials import decrypt_credentials, load_or_create_key
from connections.models import Connection, Policy, ServiceAccount
from connections.policy.session_policy import CompiledPolicy, SessionPolicy
from connections.policy_store import spec_of
from connections.protocols.pgwire.scram import ScramError, ScramVerifier
from connections.protocols.pgwire.targets import PgLogin, PgTarget, PgToken
from recordings.actions import open_session
from recordings.writer import RecordingFlusher, RecordingWriter

logger = logging.getLogger(__name__)

TOKEN_USE_FLUSH_SECONDS = 5.0
COMPILED_POLICY_CACHE_SIZE = 64


class RecordedSession:
    """The engine's handle on an open session: `record` appends to its recording."""

    def __init__(self, writer: RecordingWriter, login: GatewayLogin) -> None:
        self.writer = writer
        self.public_id = writer.session_id
        self.record = writer.event
        self.connection_id = login.connection["id"]
        self.connection_name = login.connection["name"]
        self.account_id = login.account_id
        self.account_name = login.account_name


def _token(row) -> PgToken | None:
    try:
        return PgToken(row.id, ScramVerifier.parse(row.scram_verifier), row.token_hash)
    except ScramError:
        logger.error("token %s has a malformed SCRAM verifier; ignoring it", row.id)
        return None


def _target(connection: dict) -> PgTarget:
    credentials = decrypt_credentials(connection["encrypted_credentials"])
    return PgTarget(
        name=connection["name"],
        host=connection["host"],
        port=connection["port"],
        database=connection["database"],
        user=connection["username"],
        password=credentials.get("password"),
        tls_mode=connection["tls_mode"],
        ca_pem=connection["tls_ca_pem"],
        max_rows=connection["record_max_rows"],
        max_bytes=connection["record_max_bytes"],
    )


class DjangoPgDirectory:
    """Implements the engine's PgDirectory with the ORM and the recording store."""

    def __init__(self, flusher: RecordingFlusher, webhook: ReviewWebhook | None = None) -> None:
        self.flusher = flusher
        self.webhook = webhook
        self.policies: dict[tuple[int, int], CompiledPolicy] = {}
        self.masking_key = load_or_create_key(Path(settings.GATEHOUSE_MASKING_KEY_FILE))
        self.used_tokens: set[int] = set()
        self._token_task: asyncio.Task | None = None

    async def lookup(self, agent: str, connection: str) -> PgLogin | None:
        login: GatewayLogin | None = await database_sync_to_async(lookup_gateway_login)(
            agent, connection, timezone.now()
        )
        if login is None:
            return None
        tokens = [token for token in map(_token, login.tokens) if token is not None]
        return PgLogin(account=login.account_name, tokens=tokens, granted=login.connection is not None, context=login)

    def target_for(self, login: PgLogin) -> PgTarget:
        """The upstream to open, its credential decrypted now that the client has proved its token."""
        return _target(login.context.connection)

    async def open_session(
        self, login: PgLogin, token: PgToken, client_addr: str, application_name: str
    ) -> RecordedSession:
        connection = login.context.connection
        _session, writer = await database_sync_to_async(open_session)(
            # Instances built from the login lookup, so opening costs one INSERT.
            connection=Connection(
                id=connection["id"], name=connection["name"], retention_days=connection["retention_days"]
            ),
            account=ServiceAccount(id=login.context.account_id, name=login.account),
            actor=f"agent:{login.account}",
            client_addr=client_addr,
            application_name=application_name,
        )
        self.used_tokens.add(token.id)
        self.flusher.register(writer)
        return RecordedSession(writer, login.context)

    def policy_for(self, login: PgLogin) -> SessionPolicy | None:
        """The session's policy, from the policy row the login lookup brought (no query here)."""
        policy = login.context.policy
        if policy is None:
            return None
        return self.compiled(policy).for_session()

    def policy_update(self, current: SessionPolicy | None, policy: Policy | None) -> SessionPolicy | None:
        """A live session's policy after its connection's policy row changed (or went away)."""
        if policy is None:
            return None
        compiled = self.compiled(policy)
        if current is None:
            return compiled.for_session()  # no catalog: qualified column rules match by column name alone
        if current.compiled.key == compiled.key:
            return current
        return current.changed_to(compiled)

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
        """Hold a statement until a reviewer decides, the review times out, or the client withdraws it."""
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
