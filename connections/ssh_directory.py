"""The Django side of the SSH engine: who may log in, to what host, under which policy.

An agent proves who it is with a registered key (looked up by fingerprint)
or with one of its tokens as the password (looked up by the token's public
prefix, then checked against the stored hash). Either way one query brings
the connection, if the agent may use it, and its policy.
"""

import hmac
import logging
from dataclasses import replace

import asyncssh
from channels.db import database_sync_to_async
from django.utils import timezone

from connections.access import GatewayLogin, lookup_gateway_login, lookup_key_login
from connections.credentials import decrypt_credentials
from connections.gateway_directory import GatewayDirectory, RecordedSession
from connections.models import AccessToken, Connection, Policy
from connections.policy.ssh_policy import SshSessionPolicy
from connections.protocols.ssh.targets import SshLogin, SshTarget
from connections.tokens import SCHEME, hash_token

logger = logging.getLogger(__name__)

SSH = Connection.Kind.SSH


def key_fingerprint(public_key: str) -> str:
    """OpenSSH's SHA256 fingerprint of a `type base64 [comment]` key line; ValueError if it is not a key."""
    try:
        return asyncssh.import_public_key(public_key.strip()).get_fingerprint("sha256")
    except (asyncssh.KeyImportError, ValueError) as exc:
        raise ValueError(f"not an SSH public key: {exc}") from None


def token_prefix(token: str) -> str | None:
    """The public prefix of a `gh_<prefix>_<secret>` token, or None if it is not shaped like one."""
    scheme, _, rest = token.partition("_")
    prefix, _, secret = rest.partition("_")
    return prefix if scheme == SCHEME and prefix and secret else None


def _agent_of_token(prefix: str) -> str | None:
    return AccessToken.objects.filter(prefix=prefix).values_list("account__name", flat=True).first()


def _login_by_token(connection: str, token: str) -> GatewayLogin | None:
    prefix = token_prefix(token)
    agent = _agent_of_token(prefix) if prefix else None
    if agent is None:
        return None
    login = lookup_gateway_login(agent, connection, timezone.now(), kind=SSH)
    if login is None:
        return None
    digest = hash_token(token)
    matched = [row for row in login.tokens if hmac.compare_digest(row.token_hash, digest)]
    # Only the token that was used stays on the login, for its last-used time.
    return replace(login, tokens=matched) if matched else None


def _target(connection: dict) -> SshTarget:
    credentials = decrypt_credentials(connection["encrypted_credentials"])
    return SshTarget(
        name=connection["name"],
        host=connection["host"],
        port=connection["port"],
        user=connection["username"],
        private_key=credentials.get("private_key"),
        password=credentials.get("password"),
        known_host=connection["known_host"],
        forwarding=_addresses(connection["allow_forwarding"]),
        remote_forwarding=_addresses(connection["allow_remote_forwarding"]),
        agent_forwarding=bool(connection["allow_agent_forwarding"]),
        x11_forwarding=bool(connection["allow_x11_forwarding"]),
        record_file_content=bool(connection["record_file_content"]),
    )


def _addresses(text: str) -> tuple[str, ...]:
    return tuple(item.strip() for item in text.split(",") if item.strip())


class DjangoSshDirectory(GatewayDirectory):
    """Implements the SSH engine's SshDirectory with the ORM and the recording store."""

    async def login_by_key(self, connection: str, public_key: str) -> SshLogin | None:
        try:
            fingerprint = key_fingerprint(public_key)
        except ValueError:
            return None
        login = await database_sync_to_async(lookup_key_login)(fingerprint, connection, timezone.now(), SSH)
        return self._ssh_login(login)

    async def login_by_token(self, connection: str, token: str) -> SshLogin | None:
        login = await database_sync_to_async(_login_by_token)(connection, token)
        if login is not None and login.connection is not None:
            self.used_tokens.add(login.tokens[0].id)
        return self._ssh_login(login)

    @staticmethod
    def _ssh_login(login: GatewayLogin | None) -> SshLogin | None:
        if login is None:
            return None
        return SshLogin(account=login.account_name, granted=login.connection is not None, context=login)

    def target_for(self, login: SshLogin) -> SshTarget:
        """The host to open, its credentials decrypted now that the agent has proved who it is."""
        return _target(login.context.connection)

    def policy_for(self, login: SshLogin) -> SshSessionPolicy | None:
        policy = login.context.policy
        return None if policy is None else SshSessionPolicy(self.compiled(policy))

    def policy_update(self, current: SshSessionPolicy | None, policy: Policy | None) -> SshSessionPolicy | None:
        """A live connection's policy after its connection's policy row changed (or went away)."""
        if policy is None:
            return None
        compiled = self.compiled(policy)
        return current if current is not None and current.compiled.key == compiled.key else SshSessionPolicy(compiled)

    async def open_session(self, login: SshLogin, client_addr: str, client_version: str) -> RecordedSession:
        return await self.record_session(
            login.context, kind="ssh", client_addr=client_addr, application_name=client_version
        )
