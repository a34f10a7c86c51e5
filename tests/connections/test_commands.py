"""The `connections` and `agents` commands end to end, through call_command on a real database."""

import io
from datetime import timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from django.core.management import CommandError, call_command
from django.utils import timezone

from connections.access import access_connection, lookup_gateway_login
from connections.credentials import decrypt_credentials
from connections.models import AccessToken, Connection, ServiceAccount
from connections.tokens import hash_token

from .conftest import CANARY_PASSWORD

pytestmark = pytest.mark.django_db


def run(*args) -> str:
    out = io.StringIO()
    call_command(*args, stdout=out, stderr=io.StringIO())
    return out.getvalue()


@pytest.fixture
def password_env(monkeypatch):
    monkeypatch.setenv("WAREHOUSE_PASSWORD", CANARY_PASSWORD)
    return "WAREHOUSE_PASSWORD"


def add_connection(password_env, name="warehouse", *extra) -> str:
    return run(
        "connections", "add", name, "--kind", "postgres", "--host", "db.internal", "--port", "6432",
        "--database", "app", "--user", "app_user", "--password-env", password_env, *extra,
    )  # fmt: skip


def test_it_adds_a_connection_with_an_encrypted_password(password_env):
    out = add_connection(password_env, "warehouse", "--tls", "verify-full", "--retention-days", "30")
    assert "warehouse" in out
    assert CANARY_PASSWORD not in out
    connection = Connection.objects.get(name="warehouse")
    assert (connection.host, connection.port, connection.database, connection.username) == (
        "db.internal",
        6432,
        "app",
        "app_user",
    )
    assert (connection.tls_mode, connection.retention_days) == ("verify-full", 30)
    assert decrypt_credentials(connection.encrypted_credentials) == {"password": CANARY_PASSWORD}


def test_it_uses_the_default_retention_and_tls(password_env, settings):
    add_connection(password_env)
    connection = Connection.objects.get(name="warehouse")
    assert connection.retention_days == settings.GATEHOUSE_DEFAULT_RETENTION_DAYS
    assert connection.tls_mode == "require"


def test_it_lists_connections_without_secrets(password_env):
    add_connection(password_env, "warehouse")
    add_connection(password_env, "billing", "--tls", "disable")
    out = run("connections", "list")
    lines = out.splitlines()
    assert lines[0].split() == ["NAME", "KIND", "TARGET", "USER", "TLS", "RETENTION"]
    assert lines[1].split() == ["billing", "postgres", "db.internal:6432/app", "app_user", "disable", "90d"]
    assert lines[2].split()[0] == "warehouse"
    assert CANARY_PASSWORD not in out
    assert Connection.objects.get(name="billing").encrypted_credentials not in out


def test_it_says_when_there_are_no_connections():
    assert "No connections" in run("connections", "list")


def test_it_reads_a_ca_file(password_env, tmp_path):
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test-ca")])
    now = timezone.now()
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now)
        .not_valid_after(now + timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    pem = certificate.public_bytes(serialization.Encoding.PEM).decode()
    (tmp_path / "ca.pem").write_text(pem)
    add_connection(password_env, "warehouse", "--tls", "verify-full", "--tls-ca-file", str(tmp_path / "ca.pem"))
    assert Connection.objects.get(name="warehouse").tls_ca_pem == pem


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--port", "70000"], "port 70000 is out of range"),
        (["--port", "0"], "port 0 is out of range"),
        (["--port", "five"], "invalid int value"),
        (["--tls", "sometimes"], "invalid choice"),
        (["--retention-days", "0"], "retention must be at least 1 day"),
        (["--tls-ca-file", "/nonexistent/ca.pem"], "cannot read TLS CA file"),
    ],
)
def test_it_rejects_bad_connection_input(password_env, extra, message):
    with pytest.raises(CommandError, match=message):
        add_connection(password_env, "warehouse", *extra)
    assert not Connection.objects.exists()


def test_it_rejects_a_bad_ca_file(password_env, tmp_path):
    (tmp_path / "ca.pem").write_text("not a certificate")
    with pytest.raises(CommandError, match="not a PEM certificate"):
        add_connection(password_env, "warehouse", "--tls-ca-file", str(tmp_path / "ca.pem"))


def test_it_rejects_a_name_that_is_not_a_slug(password_env):
    with pytest.raises(CommandError, match="not a slug"):
        add_connection(password_env, "my db")


def test_it_rejects_a_duplicate_connection_name(password_env):
    add_connection(password_env)
    with pytest.raises(CommandError, match="already exists"):
        add_connection(password_env)
    assert Connection.objects.count() == 1


def test_it_refuses_an_unset_password_env(monkeypatch):
    monkeypatch.delenv("NO_SUCH_PASSWORD_VAR", raising=False)
    with pytest.raises(CommandError, match="NO_SUCH_PASSWORD_VAR is unset or empty"):
        add_connection("NO_SUCH_PASSWORD_VAR")
    monkeypatch.setenv("EMPTY_PASSWORD_VAR", "")
    with pytest.raises(CommandError, match="EMPTY_PASSWORD_VAR is unset or empty"):
        add_connection("EMPTY_PASSWORD_VAR")
    assert not Connection.objects.exists()


def test_it_requires_a_subcommand():
    with pytest.raises(CommandError, match="required"):
        run("agents")


def test_it_adds_an_agent_backed_by_a_passwordless_user():
    out = run("agents", "add", "ci-bot", "--description", "nightly CI")
    assert "ci-bot" in out
    account = ServiceAccount.objects.get(name="ci-bot")
    assert account.description == "nightly CI"
    assert account.user.username == "agent:ci-bot"
    assert not account.user.has_usable_password()
    assert not account.user.is_staff
    assert not account.user.is_superuser


def test_it_rejects_a_duplicate_agent():
    run("agents", "add", "ci-bot")
    with pytest.raises(CommandError, match="already exists"):
        run("agents", "add", "ci-bot")


def test_it_prints_a_new_token_alone_on_the_last_line(settings):
    run("agents", "add", "ci-bot")
    before = timezone.now()
    out = run("agents", "token", "ci-bot", "--ttl", "2h")
    after = timezone.now()
    lines = out.splitlines()
    token = lines[-1]
    stored = AccessToken.objects.get()
    assert token == token.strip()
    assert token.startswith(f"gh_{stored.prefix}_")
    assert stored.prefix in "\n".join(lines[:-1])
    assert token not in "\n".join(lines[:-1])
    assert stored.token_hash == hash_token(token)
    assert before + timedelta(hours=2) <= stored.expires_at <= after + timedelta(hours=2)


def test_it_uses_the_default_ttl(settings):
    settings.GATEHOUSE_TOKEN_DEFAULT_TTL = "30m"
    run("agents", "add", "ci-bot")
    before = timezone.now()
    run("agents", "token", "ci-bot")
    assert AccessToken.objects.get().expires_at <= timezone.now() + timedelta(minutes=30)
    assert AccessToken.objects.get().expires_at >= before + timedelta(minutes=30)


def test_it_reports_a_bad_default_ttl(settings):
    settings.GATEHOUSE_TOKEN_DEFAULT_TTL = "soon"
    run("agents", "add", "ci-bot")
    with pytest.raises(CommandError, match="GATEHOUSE_TOKEN_DEFAULT_TTL"):
        run("agents", "token", "ci-bot")


@pytest.mark.parametrize("ttl", ["tomorrow", "0h", "-5m", "24"])
def test_it_rejects_a_bad_ttl(ttl):
    run("agents", "add", "ci-bot")
    with pytest.raises(CommandError, match="--ttl"):
        run("agents", "token", "ci-bot", "--ttl", ttl)
    assert not AccessToken.objects.exists()


@pytest.mark.parametrize(
    "args",
    [
        ("agents", "token", "ghost"),
        ("agents", "revoke", "ghost"),
        ("agents", "grant", "ghost", "warehouse"),
    ],
)
def test_it_rejects_an_unknown_agent(args):
    with pytest.raises(CommandError, match="no agent named 'ghost'"):
        run(*args)


def test_it_rejects_granting_an_unknown_connection():
    run("agents", "add", "ci-bot")
    with pytest.raises(CommandError, match="no connection named 'nowhere'"):
        run("agents", "grant", "ci-bot", "nowhere")


def test_it_grants_and_revokes_end_to_end(password_env):
    add_connection(password_env)
    run("agents", "add", "ci-bot")
    first = run("agents", "token", "ci-bot").splitlines()[-1]
    second = run("agents", "token", "ci-bot", "--ttl", "7d").splitlines()[-1]
    account = ServiceAccount.objects.get(name="ci-bot")

    assert lookup_gateway_login("ci-bot", "warehouse", timezone.now()).connection is None
    assert "may now connect" in run("agents", "grant", "ci-bot", "warehouse")
    assert access_connection(account.user, "warehouse", "connect").name == "warehouse"
    login = lookup_gateway_login("ci-bot", "warehouse", timezone.now())
    assert login.connection["name"] == "warehouse"
    assert {token.token_hash for token in login.tokens} == {hash_token(first), hash_token(second)}

    assert run("agents", "revoke", "ci-bot").strip() == "Revoked 2 tokens of agent ci-bot."
    assert lookup_gateway_login("ci-bot", "warehouse", timezone.now()) is None
    assert run("agents", "revoke", "ci-bot").strip() == "Revoked 0 tokens of agent ci-bot."
    assert all(token.revoked_at is not None for token in AccessToken.objects.all())


def test_it_lists_agents_with_live_tokens_and_grants(password_env):
    add_connection(password_env)
    run("agents", "add", "ci-bot", "--description", "nightly CI")
    run("agents", "add", "idle-bot")
    run("agents", "token", "ci-bot")
    run("agents", "grant", "ci-bot", "warehouse")
    lines = run("agents", "list").splitlines()
    assert lines[0].split() == ["NAME", "LIVE", "TOKENS", "CONNECTIONS", "DESCRIPTION"]
    assert lines[1].split() == ["ci-bot", "1", "warehouse", "nightly", "CI"]
    assert lines[2].split() == ["idle-bot", "0", "-"]


def test_it_says_when_there_are_no_agents():
    assert "No agents" in run("agents", "list")
