"""The Django side of the PostgreSQL engine: who may log in, to what, under which policy.

The engine calls this at the edges of a session only: one lookup when a
client logs in, and what connections.gateway_directory does for every engine.
"""

import logging

from channels.db import database_sync_to_async
from django.utils import timezone

from connections.access import GatewayLogin, lookup_gateway_login
from connections.credentials import decrypt_credentials
from connections.gateway_directory import GatewayDirectory, RecordedSession
from connections.models import Policy
from connections.policy.session_policy import SessionPolicy
from connections.protocols.pgwire.scram import ScramError, ScramVerifier
from connections.protocols.pgwire.targets import PgLogin, PgTarget, PgToken

logger = logging.getLogger(__name__)


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


class DjangoPgDirectory(GatewayDirectory):
    """Implements the engine's PgDirectory with the ORM and the recording store."""

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
        session = await self.record_session(
            login.context, kind="postgres", client_addr=client_addr, application_name=application_name
        )
        self.used_tokens.add(token.id)
        return session

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
