import uuid

from django.db import models

from connections.models import Connection, ServiceAccount


class Session(models.Model):
    """One client session through the gateway, and where its recording lives.

    The recording itself is an append-only, hash-chained JSON Lines file;
    this row holds its metadata and, once sealed, the final chain link and
    its signature. Rows and files are kept until `retain_until`, unless
    `legal_hold` is set.
    """

    class Status(models.TextChoices):
        LIVE = "live"
        ENDED = "ended"
        INTERRUPTED = "interrupted"
        TERMINATED = "terminated"

    public_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    connection = models.ForeignKey(Connection, on_delete=models.PROTECT, related_name="sessions")
    account = models.ForeignKey(
        ServiceAccount, null=True, blank=True, on_delete=models.SET_NULL, related_name="sessions"
    )
    actor = models.CharField(max_length=150, help_text="Who, as recorded: agent:NAME or user:NAME.")
    client_addr = models.CharField(max_length=64)
    application_name = models.CharField(max_length=64, blank=True)
    node = models.CharField(max_length=64, blank=True, db_index=True, help_text="The gateway node that served it.")
    started_at = models.DateTimeField(db_index=True)
    ended_at = models.DateTimeField(null=True, blank=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.LIVE, db_index=True)
    statements = models.PositiveIntegerField(default=0)
    errors = models.PositiveIntegerField(default=0)
    bytes_from_client = models.PositiveBigIntegerField(default=0)
    bytes_to_client = models.PositiveBigIntegerField(default=0)
    recording_path = models.CharField(max_length=255, help_text="Relative to GATEHOUSE_RECORDINGS_DIR.")
    chain_head = models.CharField(max_length=64, blank=True, help_text="Final chain link once sealed.")
    line_count = models.PositiveIntegerField(default=0)
    seal = models.CharField(max_length=128, blank=True, help_text="Ed25519 signature of the seal.")
    retain_until = models.DateTimeField(db_index=True)
    legal_hold = models.BooleanField(default=False)
    search_text = models.TextField(
        blank=True,
        editable=False,
        help_text="Its distinct statements as recorded (masked), newline-joined and capped; filled when sealed.",
    )
    terminated_by = models.CharField(max_length=150, blank=True, help_text="Who ended it from the gateway's side.")
    terminate_reason = models.CharField(max_length=200, blank=True, help_text="Why, as the client is told.")

    class Meta:
        ordering = ["-started_at"]
        indexes = [
            models.Index(fields=["connection", "-started_at"], name="session_connection_started_idx"),
            models.Index(fields=["account", "-started_at"], name="session_account_started_idx"),
            models.Index(fields=["status", "-started_at"], name="session_status_started_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.actor} → {self.connection_id} ({self.public_id})"
