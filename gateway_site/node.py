"""Everything one `rungateway` process runs beside daphne: the raw TCP listeners and recordings."""

import hashlib
import logging

from asyncssh.encryption import get_encryption_algs
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from approvals.actions import do_expire_overdue_reviews
from approvals.webhook import ReviewWebhook
from connections.pg_directory import DjangoPgDirectory
from connections.protocols.pgwire.gateway import PgGateway, PgGatewayConfig
from connections.protocols.ssh.gateway import SshGateway, SshGatewayConfig
from connections.ssh_directory import DjangoSshDirectory
from gateway_site.grant_sweep import sweep_expired_grants
from gateway_site.node_signals import NodeSignals
from gateway_site.policy_watch import PolicyWatcher
from gateway_site.ssh_host_key import ensure_ssh_host_key
from gateway_site.sweeper import Sweeper
from gateway_site.tls import certificate_der, server_ssl_context, tls_server_end_point
from recordings.actions import seal_finished_writer
from recordings.writer import RecordingFlusher

logger = logging.getLogger(__name__)

REVIEW_SWEEP_SECONDS = 60.0


def pg_gateway_config() -> PgGatewayConfig:
    """The PostgreSQL engine's configuration, from settings."""
    return PgGatewayConfig(
        ssl_context=server_ssl_context(),
        channel_binding=tls_server_end_point(certificate_der()),
        decoy_key=hashlib.sha256(b"gatehouse-scram-decoy:" + settings.SECRET_KEY.encode()).digest(),
        scram_iterations=settings.GATEHOUSE_TOKEN_SCRAM_ITERATIONS,
        allow_plaintext=settings.GATEHOUSE_PG_ALLOW_PLAINTEXT,
        client_auth=settings.GATEHOUSE_PG_CLIENT_AUTH,
        pool_size=settings.GATEHOUSE_PG_POOL_SIZE,
        pool_idle_seconds=settings.GATEHOUSE_PG_POOL_IDLE_SECONDS,
        connect_timeout=settings.GATEHOUSE_PG_CONNECT_TIMEOUT,
        login_timeout=settings.GATEHOUSE_PG_LOGIN_TIMEOUT,
    )


def ssh_gateway_config() -> SshGatewayConfig:
    """The SSH engine's configuration, from settings; makes the host key on the first start."""
    return SshGatewayConfig(
        host_key_file=ensure_ssh_host_key(),
        login_timeout=settings.GATEHOUSE_SSH_LOGIN_TIMEOUT,
        connect_timeout=settings.GATEHOUSE_SSH_CONNECT_TIMEOUT,
        keepalive_seconds=settings.GATEHOUSE_SSH_KEEPALIVE_SECONDS,
        max_auth_attempts=settings.GATEHOUSE_SSH_MAX_AUTH_ATTEMPTS,
        record_max_bytes=settings.GATEHOUSE_SSH_RECORD_MAX_BYTES,
        ciphers=ssh_ciphers(settings.GATEHOUSE_SSH_CIPHERS),
    )


def ssh_ciphers(setting: str) -> tuple[str, ...]:
    """GATEHOUSE_SSH_CIPHERS as a tuple, each one checked against what asyncssh supports."""
    ciphers = tuple(name.strip() for name in setting.split(",") if name.strip())
    supported = {name.decode() for name in get_encryption_algs()}
    unknown = [name for name in ciphers if name not in supported]
    if not ciphers or unknown:
        choices = ", ".join(sorted(supported))
        raise ImproperlyConfigured(f"GATEHOUSE_SSH_CIPHERS: unknown {', '.join(unknown) or '(empty)'}; use {choices}")
    return ciphers


class GatewayNode:
    """Starts and stops the listeners and the recording flusher on the running loop."""

    def __init__(
        self, pg_address: tuple[str, int] | None, pg_workers: int = 1, ssh_address: tuple[str, int] | None = None
    ) -> None:
        self.pg_address = pg_address
        self.ssh_address = ssh_address
        self.ssh: SshGateway | None = None
        self.ssh_directory: DjangoSshDirectory | None = None
        self.pg_workers = pg_workers
        self.directory: DjangoPgDirectory | None = None
        self.flusher: RecordingFlusher | None = None
        self.pg: PgGateway | None = None
        self.signals: NodeSignals | None = None
        self.policy_watcher: PolicyWatcher | None = None
        # A node expires its own held statements' reviews; this catches those of a node that died holding them.
        self.review_sweeper = Sweeper(do_expire_overdue_reviews, REVIEW_SWEEP_SECONDS, "expire overdue reviews")
        self.grant_sweeper = Sweeper(
            sweep_expired_grants, settings.GATEHOUSE_GRANT_SWEEP_SECONDS, "expire access grants"
        )
        self.webhook: ReviewWebhook | None = None

    async def start(self) -> None:
        self.flusher = RecordingFlusher(settings.GATEHOUSE_RECORDING_FLUSH_SECONDS, seal_finished_writer)
        self.signals = NodeSignals(None, self.flusher)
        self.flusher.on_watched_batch = self.signals.publish_watched_batch
        self.webhook = ReviewWebhook(settings.GATEHOUSE_WEBHOOK_URL) if settings.GATEHOUSE_WEBHOOK_URL else None
        if self.webhook is not None:
            self.webhook.start()
        self.directory = DjangoPgDirectory(self.flusher, self.webhook)
        self.flusher.start()
        self.directory.start()
        await self.signals.start()
        self.review_sweeper.start()
        self.grant_sweeper.start()
        if self.pg_address:
            self.pg = PgGateway(pg_gateway_config(), self.directory)
            self.signals.gateway = self.pg
            self.pg.forward_cancel = self.signals.forward_cancel
        self.policy_watcher = PolicyWatcher(self.pg, self.directory, settings.GATEHOUSE_POLICY_POLL_SECONDS)
        if self.ssh_address:
            self.ssh_directory = DjangoSshDirectory(self.flusher, self.webhook)
            self.ssh_directory.start()
            self.ssh = SshGateway(ssh_gateway_config(), self.ssh_directory)
            self.signals.ssh_gateway = self.ssh
            self.policy_watcher.ssh = (self.ssh, self.ssh_directory)
        await self.policy_watcher.start()
        if self.pg is not None:
            await self.pg.serve(*self.pg_address, shared=self.pg_workers > 1)
        if self.ssh is not None:
            await self.ssh.serve(*self.ssh_address)

    async def stop(self) -> None:
        """End live sessions, then write and seal every recording before the process exits."""
        await self.review_sweeper.stop()
        await self.grant_sweeper.stop()
        if self.webhook is not None:
            await self.webhook.stop()
        if self.policy_watcher is not None:
            await self.policy_watcher.stop()
        if self.pg is not None:
            await self.pg.shutdown("the gateway is shutting down")
        if self.ssh is not None:
            await self.ssh.shutdown("the gateway is shutting down")
            await self.ssh_directory.stop()
        if self.signals is not None:
            await self.signals.stop()
        if self.flusher is not None:
            await self.flusher.stop()
        if self.directory is not None:
            await self.directory.stop()
        logger.info("gateway node stopped; recordings flushed")
