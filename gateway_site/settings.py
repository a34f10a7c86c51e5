"""Gatehouse settings: one file, every knob an environment variable.

The embedded default needs no other service: SQLite, the in-memory channel
layer, and recordings, keys and the listener certificate under
GATEHOUSE_DATA_DIR. DATABASE_URL switches to PostgreSQL, REDIS_URL to
channels_redis. Secrets may come from a file named by `<NAME>_FILE`.
"""

import os
import secrets
import socket
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent


def env(name: str, default: str = "") -> str:
    """Read NAME, or the contents of the file named by NAME_FILE."""
    file_name = os.environ.get(f"{name}_FILE")
    if file_name:
        return Path(file_name).read_text().strip()
    return os.environ.get(name, default)


def env_bool(name: str, default: bool) -> bool:
    value = env(name, "true" if default else "false").strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off", ""):
        return False
    raise ImproperlyConfigured(f"{name} must be true or false, not {value!r}")


def env_number(name: str, default: float, minimum: float = 0) -> float:
    raw = env(name, str(default))
    try:
        value = float(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be a number, not {raw!r}") from None
    if value < minimum:
        raise ImproperlyConfigured(f"{name} must be at least {minimum}, not {value}")
    return value


def env_int(name: str, default: int, minimum: int = 0) -> int:
    value = env_number(name, default, minimum)
    if value != int(value):
        raise ImproperlyConfigured(f"{name} must be a whole number, not {value}")
    return int(value)


def data_path(name: str, default: Path) -> Path:
    return Path(env(name, str(default))).expanduser().resolve()


GATEHOUSE_DATA_DIR = data_path("GATEHOUSE_DATA_DIR", BASE_DIR / "data")
GATEHOUSE_DATA_DIR.mkdir(parents=True, exist_ok=True)


def _load_or_create_secret_key() -> str:
    """The Django secret key, from the environment or a file made on first run."""
    configured = env("DJANGO_SECRET_KEY")
    if configured:
        return configured
    key_file = GATEHOUSE_DATA_DIR / "django-secret-key"
    try:
        fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return key_file.read_text().strip()
    with os.fdopen(fd, "w") as handle:
        handle.write(secrets.token_urlsafe(50))
    return key_file.read_text().strip()


SECRET_KEY = _load_or_create_secret_key()
DEBUG = env_bool("GATEHOUSE_DEBUG", False)
ALLOWED_HOSTS = [h for h in env("GATEHOUSE_ALLOWED_HOSTS", "localhost,127.0.0.1,[::1]").split(",") if h]
CSRF_TRUSTED_ORIGINS = [o for o in env("GATEHOUSE_CSRF_TRUSTED_ORIGINS").split(",") if o]

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "channels",
    "guardian",
    "allauth",
    "allauth.account",
    "allauth.socialaccount",
    "gateway_site",
    "connections",
    "recordings",
    "approvals",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    # Every page needs a login; allauth's and the admin's own login views are marked as exempt.
    "django.contrib.auth.middleware.LoginRequiredMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "allauth.account.middleware.AccountMiddleware",
]

ROOT_URLCONF = "gateway_site.urls"
ASGI_APPLICATION = "gateway_site.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

if env("DATABASE_URL"):
    DATABASES = {"default": dj_database_url.parse(env("DATABASE_URL"), conn_max_age=600, conn_health_checks=True)}
else:
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": GATEHOUSE_DATA_DIR / "gatehouse.sqlite3",
            # Connections are kept for the process's life (health checks replace broken ones): reopening
            # costs more than the query, and a process that closes its last connection can race another
            # process's close, which deletes the WAL and shared-memory files. CI caught a node that had
            # reopened during such a close: from CONN_MAX_AGE (600 s) after its start until it stopped,
            # its writes reached the file only at its shutdown checkpoint.
            "CONN_MAX_AGE": None,
            "CONN_HEALTH_CHECKS": True,
            # WAL lets the gateway write while the admin reads; IMMEDIATE avoids
            # "database is locked" when two threads upgrade a read to a write.
            "OPTIONS": {
                "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
                "transaction_mode": "IMMEDIATE",
                "timeout": 20,
            },
        }
    }

if env("REDIS_URL"):
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {"hosts": [env("REDIS_URL")]},
        }
    }
else:
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
# Whether separate processes (nodes, workers) can signal each other.
CHANNEL_LAYERS_ARE_SHARED = bool(env("REDIS_URL"))

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTHENTICATION_BACKENDS = [
    "django.contrib.auth.backends.ModelBackend",
    "allauth.account.auth_backends.AuthenticationBackend",
    "guardian.backends.ObjectPermissionBackend",
]
ANONYMOUS_USER_NAME = None  # guardian: no anonymous object permissions
GUARDIAN_MONKEY_PATCH_USER = False

ACCOUNT_ADAPTER = "gateway_site.account_adapter.GatehouseAccountAdapter"
# Anyone may make a local account (with no permissions) when on; off, accounts come from an admin.
GATEHOUSE_OPEN_SIGNUP = env_bool("GATEHOUSE_OPEN_SIGNUP", False)
ACCOUNT_LOGIN_METHODS = {"email"}
ACCOUNT_SIGNUP_FIELDS = ["email*", "password1*", "password2*"]
ACCOUNT_EMAIL_VERIFICATION = "none"
LOGIN_URL = "account_login"
LOGIN_REDIRECT_URL = "/"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = GATEHOUSE_DATA_DIR / "static"
STATIC_ROOT.mkdir(exist_ok=True)  # whitenoise warns on every request until collectstatic made it
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env("GATEHOUSE_LOG_LEVEL", "INFO")},
    # asyncssh logs every connection and channel at INFO; the gateway logs what matters itself.
    "loggers": {"daphne": {"level": "WARNING"}, "twisted": {"level": "WARNING"}, "asyncssh": {"level": "WARNING"}},
}

# --- Gatehouse ---------------------------------------------------------------

# Encrypts upstream credentials at rest (Fernet). Made on first use.
GATEHOUSE_CREDENTIALS_KEY_FILE = data_path(
    "GATEHOUSE_CREDENTIALS_KEY_FILE", GATEHOUSE_DATA_DIR / "keys" / "credentials.key"
)
# Signs sealed recordings (Ed25519). Made on first use.
GATEHOUSE_SIGNING_KEY_FILE = data_path(
    "GATEHOUSE_SIGNING_KEY_FILE", GATEHOUSE_DATA_DIR / "keys" / "recording-signing.key"
)
# Keys the "hash" masking style (HMAC-SHA256), so masked values still join. Made on first use;
# every node of a deployment must share it.
GATEHOUSE_MASKING_KEY_FILE = data_path("GATEHOUSE_MASKING_KEY_FILE", GATEHOUSE_DATA_DIR / "keys" / "masking.key")
# The listeners' certificate; a self-signed one is made on first run if unset.
GATEHOUSE_TLS_CERT_FILE = data_path("GATEHOUSE_TLS_CERT_FILE", GATEHOUSE_DATA_DIR / "tls" / "gateway.crt")
GATEHOUSE_TLS_KEY_FILE = data_path("GATEHOUSE_TLS_KEY_FILE", GATEHOUSE_DATA_DIR / "tls" / "gateway.key")

# Names this node in sessions; a restart recovers only its own. Unique per node when several share a database.
GATEHOUSE_NODE_ID = env("GATEHOUSE_NODE_ID", socket.gethostname())[:64]

GATEHOUSE_RECORDINGS_DIR = data_path("GATEHOUSE_RECORDINGS_DIR", GATEHOUSE_DATA_DIR / "recordings")
# Announces each statement held for review with a Slack-compatible POST (retried with backoff); empty: off.
GATEHOUSE_WEBHOOK_URL = env("GATEHOUSE_WEBHOOK_URL", "")
if GATEHOUSE_WEBHOOK_URL and not GATEHOUSE_WEBHOOK_URL.startswith(("http://", "https://")):
    raise ImproperlyConfigured("GATEHOUSE_WEBHOOK_URL must be an http:// or https:// URL")
# How long a statement held for review waits for a decision before it is denied.
GATEHOUSE_REVIEW_TIMEOUT_SECONDS = env_number("GATEHOUSE_REVIEW_TIMEOUT_SECONDS", 300.0, minimum=1)
# The longest just-in-time access grant anyone may ask for (seconds; default 7 days).
GATEHOUSE_ACCESS_MAX_SECONDS = env_int("GATEHOUSE_ACCESS_MAX_SECONDS", 7 * 86400, minimum=60)
# How often a node expires ended access grants and ends the live sessions they allowed.
GATEHOUSE_GRANT_SWEEP_SECONDS = env_number("GATEHOUSE_GRANT_SWEEP_SECONDS", 30.0, minimum=0.1)
# How often a node checks whether a policy changed; live sessions follow within about this long.
GATEHOUSE_POLICY_POLL_SECONDS = env_number("GATEHOUSE_POLICY_POLL_SECONDS", 2.0, minimum=0.1)
GATEHOUSE_RECORDING_FLUSH_SECONDS = env_number("GATEHOUSE_RECORDING_FLUSH_SECONDS", 0.2, minimum=0.01)

# "scram" (default) or "password": cleartext token, accepted only inside TLS.
GATEHOUSE_PG_CLIENT_AUTH = env("GATEHOUSE_PG_CLIENT_AUTH", "scram")
if GATEHOUSE_PG_CLIENT_AUTH not in ("scram", "password"):
    raise ImproperlyConfigured("GATEHOUSE_PG_CLIENT_AUTH must be scram or password")
# Plain-text PostgreSQL clients are refused unless this is on.
GATEHOUSE_PG_ALLOW_PLAINTEXT = env_bool("GATEHOUSE_PG_ALLOW_PLAINTEXT", False)
# Processes serving PostgreSQL clients on one node (SO_REUSEPORT); more than 1 needs REDIS_URL.
GATEHOUSE_PG_WORKERS = env_int("GATEHOUSE_PG_WORKERS", 1, minimum=1)
# Idle upstream connections kept per (connection, startup parameters).
GATEHOUSE_PG_POOL_SIZE = env_int("GATEHOUSE_PG_POOL_SIZE", 8)
GATEHOUSE_PG_POOL_IDLE_SECONDS = env_number("GATEHOUSE_PG_POOL_IDLE_SECONDS", 60)
GATEHOUSE_PG_CONNECT_TIMEOUT = env_number("GATEHOUSE_PG_CONNECT_TIMEOUT", 10, minimum=0.1)
# A client must finish TLS, startup and authentication within this (PostgreSQL's authentication_timeout).
GATEHOUSE_PG_LOGIN_TIMEOUT = env_number("GATEHOUSE_PG_LOGIN_TIMEOUT", 60, minimum=1)

GATEHOUSE_TOKEN_DEFAULT_TTL = env("GATEHOUSE_TOKEN_DEFAULT_TTL", "24h")
# Tokens are 256 random bits, so key stretching adds no strength; a low count
# saves every client a PBKDF2 run on each login (PostgreSQL uses 4096 for passwords).
GATEHOUSE_TOKEN_SCRAM_ITERATIONS = env_int("GATEHOUSE_TOKEN_SCRAM_ITERATIONS", 16, minimum=1)
GATEHOUSE_DEFAULT_RETENTION_DAYS = env_int("GATEHOUSE_DEFAULT_RETENTION_DAYS", 90, minimum=1)

# SSH gateway. The host key is made on the first start if the file is missing.
GATEHOUSE_SSH_HOST_KEY_FILE = data_path("GATEHOUSE_SSH_HOST_KEY_FILE", GATEHOUSE_DATA_DIR / "ssh" / "host_ed25519_key")
# Terminal data recorded per SSH session; beyond it the recording marks itself truncated,
# so a `tail -f` cannot fill the disk.
GATEHOUSE_SSH_RECORD_MAX_BYTES = env_int("GATEHOUSE_SSH_RECORD_MAX_BYTES", 100 << 20, minimum=0)
GATEHOUSE_SSH_CONNECT_TIMEOUT = env_number("GATEHOUSE_SSH_CONNECT_TIMEOUT", 15, minimum=0.1)
GATEHOUSE_SSH_LOGIN_TIMEOUT = env_number("GATEHOUSE_SSH_LOGIN_TIMEOUT", 60, minimum=1)
GATEHOUSE_SSH_KEEPALIVE_SECONDS = env_number("GATEHOUSE_SSH_KEEPALIVE_SECONDS", 30, minimum=0)
GATEHOUSE_SSH_MAX_AUTH_ATTEMPTS = env_int("GATEHOUSE_SSH_MAX_AUTH_ATTEMPTS", 6, minimum=1)
# Ciphers agents may use, comma-separated (checked when the SSH listener starts); see SshGatewayConfig.
GATEHOUSE_SSH_CIPHERS = env(
    "GATEHOUSE_SSH_CIPHERS", "aes128-gcm@openssh.com,aes256-gcm@openssh.com,aes128-ctr,aes192-ctr,aes256-ctr"
)
