from django.conf import settings
from django.db import models


def default_retention_days() -> int:
    return settings.GATEHOUSE_DEFAULT_RETENTION_DAYS


class Policy(models.Model):
    """What agents may run on the connections it is attached to, and what they may see.

    `rules` holds a `connections.policy.rules.PolicySpec` without its name, as
    `connections.policy.policy_file.spec_to_dict` writes it: the ordered
    guardrails, the masking rules and the default, unparseable and opaque
    actions. It is changed only through the actions in connections.actions,
    which validate it and give the policy a new `revision`: a number larger
    than any revision given before, across all policies, so a gateway node
    that polls `max(revision)` notices every change (see connections.policy_store).
    """

    name = models.SlugField(max_length=63, unique=True)
    description = models.CharField(max_length=200, blank=True)
    rules = models.JSONField(default=dict, editable=False)
    revision = models.PositiveBigIntegerField(default=0, editable=False, db_index=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        verbose_name_plural = "policies"

    def __str__(self) -> str:
        return self.name


class Connection(models.Model):
    """An upstream target that agents reach through Gatehouse.

    The credentials are stored encrypted (see connections.credentials) and are
    decrypted only in the gateway's memory when a session opens. Permission to
    use a connection is a django-guardian object permission (`connect`); `review`
    lets a person decide its held statements, `view_sessions` watch and replay them.
    """

    class Kind(models.TextChoices):
        POSTGRES = "postgres", "PostgreSQL"
        SSH = "ssh", "SSH"

    class TlsMode(models.TextChoices):
        DISABLE = "disable", "disable"
        REQUIRE = "require", "require"
        VERIFY_FULL = "verify-full", "verify-full"

    name = models.SlugField(max_length=63, unique=True, help_text="What clients put in dbname=.")
    kind = models.CharField(max_length=16, choices=Kind.choices, default=Kind.POSTGRES)
    host = models.CharField(max_length=255)
    port = models.PositiveIntegerField(default=5432)
    database = models.CharField(max_length=63, blank=True, help_text="PostgreSQL only.")
    username = models.CharField(max_length=63)
    encrypted_credentials = models.TextField(blank=True, editable=False)
    tls_mode = models.CharField(max_length=16, choices=TlsMode.choices, default=TlsMode.REQUIRE)
    tls_ca_pem = models.TextField(blank=True, help_text="CA bundle for verify-full; empty means the system store.")
    retention_days = models.PositiveIntegerField(default=default_retention_days)
    record_max_rows = models.PositiveIntegerField(default=1000, help_text="Result rows recorded per statement.")
    record_max_bytes = models.PositiveIntegerField(default=1 << 20, help_text="Result bytes recorded per statement.")
    # PROTECT: deleting a policy must not silently leave a connection unguarded;
    # detach it first, which is an explicit, logged change.
    policy = models.ForeignKey(
        Policy,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="connections",
        help_text="Guardrails and masking for sessions; none means every statement is allowed and nothing masked.",
    )
    end_sessions_on_grant_expiry = models.BooleanField(
        default=True,
        help_text="When a just-in-time access grant ends, also end the live sessions it allowed.",
    )
    known_host = models.TextField(
        blank=True, help_text="SSH only: the upstream's pinned host key (`type base64`); others are refused."
    )
    allow_forwarding = models.TextField(
        blank=True, help_text="SSH only: HOST:PORT destinations `ssh -L` may reach, comma-separated; empty allows none."
    )
    allow_remote_forwarding = models.TextField(
        blank=True,
        help_text="SSH only: HOST:PORT addresses `ssh -R` may have the host listen on (PORT may be *), "
        "comma-separated; empty allows none.",
    )
    allow_agent_forwarding = models.BooleanField(
        default=False, help_text="SSH only: let the host use the client's forwarded ssh-agent (`ssh -A`)."
    )
    allow_x11_forwarding = models.BooleanField(
        default=False, help_text="SSH only: let programs on the host open windows on the client's display (`ssh -X`)."
    )
    record_file_content = models.BooleanField(
        default=False, help_text="SSH only: keep the content of files moved by sftp and scp in the recording."
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]
        permissions = [
            ("connect", "Can open sessions through the gateway"),
            ("review", "Can approve or deny held statements"),
            ("view_sessions", "Can watch and replay sessions"),
        ]

    def __str__(self) -> str:
        return self.name


class ServiceAccount(models.Model):
    """A non-human identity (a CI bot, an agent) that authenticates with tokens.

    Each account is backed by a Django user so that django-guardian can hold
    its object permissions. All tokens of an account share one SCRAM salt:
    the salt is sent before the client proves which token it holds.
    """

    name = models.SlugField(max_length=63, unique=True, help_text="What clients put in user=.")
    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="service_account")
    scram_salt = models.CharField(max_length=44, editable=False)
    description = models.CharField(max_length=200, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class AccessToken(models.Model):
    """A bearer secret of a service account; only hashes of it are stored.

    `token_hash` (SHA-256) checks cleartext logins; `scram_verifier` (in
    PostgreSQL's `SCRAM-SHA-256$iter:salt$StoredKey:ServerKey` form) checks
    SCRAM logins without ever holding the token.
    """

    account = models.ForeignKey(ServiceAccount, on_delete=models.CASCADE, related_name="tokens")
    prefix = models.CharField(max_length=16, unique=True, help_text="Public id, shown at the start of the token.")
    token_hash = models.CharField(max_length=64, editable=False)
    scram_verifier = models.CharField(max_length=200, editable=False)
    expires_at = models.DateTimeField()
    revoked = models.BooleanField(default=False)
    revoked_at = models.DateTimeField(null=True, blank=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.account.name}/{self.prefix}"


class AgentKey(models.Model):
    """An SSH public key a service account logs in to the SSH gateway with.

    `fingerprint` is the key's SHA256 fingerprint as OpenSSH prints it; the
    gateway looks a login up by it, so one key belongs to one account only.
    """

    account = models.ForeignKey(ServiceAccount, on_delete=models.CASCADE, related_name="ssh_keys")
    public_key = models.TextField(help_text="`type base64` as in authorized_keys, without options.")
    fingerprint = models.CharField(max_length=64, unique=True, editable=False)
    comment = models.CharField(max_length=200, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["account__name", "created_at"]

    def __str__(self) -> str:
        return f"{self.account.name}/{self.fingerprint}"
