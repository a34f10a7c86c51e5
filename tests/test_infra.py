"""Smoke tests of the test infrastructure and the project plumbing it relies on.

The PostgreSQL cluster fixture (one role per upstream auth method, TLS with a
test CA), the gateway subprocess helpers, the listener certificate and the
ensure_admin command.
"""

import socket
import ssl
import stat
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from io import StringIO
from pathlib import Path

import psycopg
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.exceptions import ImproperlyConfigured
from django.core.management import call_command
from pytest_django import Settings

from gateway_site import tls
from tests.support.gateway_process import GatewayError, GatewayProcess
from tests.support.pg_cluster import ROLE_METHODS, SEED_ROWS, PgCluster, make_test_certificates, running_cluster

# libpq's name for each pg_hba method, for require_auth (libpq 16+).
REQUIRE_AUTH = {"md5": "md5", "password": "password", "trust": "none", "scram-sha-256": "scram-sha-256"}


def current_user(dsn: str) -> str:
    with psycopg.connect(dsn, connect_timeout=10) as conn:
        return conn.execute("SELECT current_user").fetchone()[0]


# --- the PostgreSQL cluster ------------------------------------------------------


@pytest.mark.parametrize("role", ["md5user", "clearuser", "trustuser", "scramuser"])
def test_it_authenticates_each_role_with_its_own_method(pg_cluster: PgCluster, role: str) -> None:
    if psycopg.pq.version() < 160000:
        pytest.skip("require_auth needs libpq 16 or newer")
    method = REQUIRE_AUTH[ROLE_METHODS[role]]
    assert current_user(pg_cluster.dsn(user=role, require_auth=method)) == role
    # The server asks for that method and no other: a client insisting on another one is refused.
    other = "scram-sha-256" if method != "scram-sha-256" else "md5"
    with pytest.raises(psycopg.OperationalError, match="require_auth|authentication method"):
        current_user(pg_cluster.dsn(user=role, require_auth=other))


@pytest.mark.parametrize("role", ["postgres", "md5user", "clearuser", "scramuser", "ssluser"])
def test_it_refuses_a_wrong_password(pg_cluster: PgCluster, role: str) -> None:
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        current_user(pg_cluster.dsn(user=role, password="canary-wrong", sslmode="require"))


def test_it_lets_trustuser_in_without_a_password(pg_cluster: PgCluster) -> None:
    assert current_user(pg_cluster.dsn(user="trustuser", password="")) == "trustuser"


def test_it_gives_every_role_its_own_canary_password(pg_cluster: PgCluster) -> None:
    passwords = pg_cluster.passwords
    assert set(passwords) == {"postgres", *ROLE_METHODS}
    assert all(password.startswith("canary-") for password in passwords.values())
    assert len(set(passwords.values())) == len(passwords)
    assert pg_cluster.superuser_password == passwords["postgres"]


def test_it_accepts_ssluser_only_over_tls(pg_cluster: PgCluster) -> None:
    with pytest.raises(psycopg.OperationalError, match="no encryption|rejects connection"):
        current_user(pg_cluster.dsn(user="ssluser", sslmode="disable"))
    with psycopg.connect(pg_cluster.dsn(user="ssluser", sslmode="verify-full")) as conn:
        row = conn.execute("SELECT ssl, version FROM pg_stat_ssl WHERE pid = pg_backend_pid()").fetchone()
    assert row[0] is True
    assert row[1] in ("TLSv1.2", "TLSv1.3")


def test_it_serves_a_certificate_that_only_its_own_ca_verifies(pg_cluster: PgCluster, tmp_path: Path) -> None:
    assert pg_cluster.ca_pem.startswith("-----BEGIN CERTIFICATE-----")
    assert current_user(pg_cluster.dsn(sslmode="verify-full")) == "postgres"
    stranger_ca = tmp_path / "stranger-ca.pem"
    stranger_ca.write_bytes(make_test_certificates()[0])
    with pytest.raises(psycopg.OperationalError, match="certificate verify failed"):
        current_user(pg_cluster.dsn(sslmode="verify-full", sslrootcert=str(stranger_ca)))


def test_it_seeds_the_app_database(pg_cluster: PgCluster) -> None:
    result = pg_cluster.psql("SELECT count(*), min(email) FROM items")
    assert result.stdout.strip() == f"{SEED_ROWS}|user100@example.com"
    as_scramuser = pg_cluster.psql("SELECT name FROM items WHERE id = 7", user="scramuser")
    assert as_scramuser.stdout.strip() == "item 7"


def test_it_reports_psql_errors(pg_cluster: PgCluster) -> None:
    result = pg_cluster.psql("SELECT * FROM no_such_table", check=False)
    assert result.returncode != 0
    assert "no_such_table" in result.stderr


def test_it_keeps_the_password_off_the_psql_command_line(pg_cluster: PgCluster) -> None:
    result = pg_cluster.psql("SELECT 1")
    assert pg_cluster.superuser_password not in " ".join(result.args)


def test_it_stops_restarts_and_cleans_up_a_cluster() -> None:
    with running_cluster() as cluster:
        base_dir = cluster.base_dir
        cluster.stop()
        with pytest.raises(psycopg.OperationalError):
            current_user(cluster.dsn())
        cluster.start()
        assert current_user(cluster.dsn()) == "postgres"
    assert base_dir is not None and not base_dir.exists()


# --- the test run's own settings ------------------------------------------------------


def test_it_keeps_test_data_out_of_the_repo() -> None:
    repo_data = Path(settings.BASE_DIR) / "data"
    assert Path(settings.GATEHOUSE_DATA_DIR) != repo_data
    assert not Path(settings.GATEHOUSE_DATA_DIR).is_relative_to(settings.BASE_DIR)


# --- the listeners' certificate ----------------------------------------------------------


@pytest.fixture
def tls_paths(settings: Settings, tmp_path: Path) -> tuple[Path, Path]:
    settings.GATEHOUSE_TLS_CERT_FILE = tmp_path / "tls" / "gateway.crt"
    settings.GATEHOUSE_TLS_KEY_FILE = tmp_path / "tls" / "gateway.key"
    return settings.GATEHOUSE_TLS_CERT_FILE, settings.GATEHOUSE_TLS_KEY_FILE


def test_it_generates_a_self_signed_certificate_once(tls_paths: tuple[Path, Path]) -> None:
    cert_file, key_file = tls_paths
    der = tls.certificate_der()
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    certificate = x509.load_der_x509_certificate(der)
    names = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "localhost" in names.get_values_for_type(x509.DNSName)
    assert {str(ip) for ip in names.get_values_for_type(x509.IPAddress)} == {"127.0.0.1", "::1"}
    assert (certificate.not_valid_after_utc - certificate.not_valid_before_utc).days >= 365
    assert tls.certificate_der() == der  # made once, then reused
    from_file = x509.load_pem_x509_certificate(cert_file.read_bytes())
    assert from_file.public_bytes(serialization.Encoding.DER) == der


def test_it_makes_one_certificate_when_many_threads_race(tls_paths: tuple[Path, Path]) -> None:
    with ThreadPoolExecutor(max_workers=6) as pool:
        ders = list(pool.map(lambda _: tls.certificate_der(), range(6)))
    assert len(set(ders)) == 1


def test_it_refuses_half_a_configured_pair(tls_paths: tuple[Path, Path]) -> None:
    cert_file, key_file = tls_paths
    cert_file.parent.mkdir(parents=True)
    cert_file.write_text("not a certificate")
    with pytest.raises(ImproperlyConfigured, match="GATEHOUSE_TLS_KEY_FILE"):
        tls.server_ssl_context()


def test_it_serves_tls_that_a_client_verifies_with_the_certificate(tls_paths: tuple[Path, Path]) -> None:
    cert_file, _key_file = tls_paths
    server_context = tls.server_ssl_context()
    assert server_context.minimum_version == ssl.TLSVersion.TLSv1_2
    client_context = ssl.create_default_context(cafile=str(cert_file))
    with socket.create_server(("127.0.0.1", 0)) as listener:
        port = listener.getsockname()[1]
        accepted = threading.Thread(target=_accept_one_tls_client, args=(listener, server_context))
        accepted.start()
        raw = socket.create_connection(("127.0.0.1", port), timeout=5)
        with client_context.wrap_socket(raw, server_hostname="localhost") as client:
            peer = client.getpeercert(binary_form=True)
            assert client.recv(5) == b"hello"
        accepted.join(5)
    assert peer == tls.certificate_der()


def _accept_one_tls_client(listener: socket.socket, context: ssl.SSLContext) -> None:
    connection, _address = listener.accept()
    with context.wrap_socket(connection, server_side=True) as server_side:
        server_side.sendall(b"hello")


# --- ensure_admin --------------------------------------------------------------------------


@pytest.mark.django_db
def test_it_creates_an_admin_login_once() -> None:
    first = StringIO()
    call_command("ensure_admin", stdout=first)
    password = next(line.split(":", 1)[1].strip() for line in first.getvalue().splitlines() if "password:" in line)
    admin = get_user_model().objects.get(username="admin")
    assert admin.is_superuser and admin.is_staff
    assert admin.check_password(password)
    second = StringIO()
    call_command("ensure_admin", stdout=second)
    assert "already exists" in second.getvalue()
    assert password not in second.getvalue()
    assert get_user_model().objects.filter(is_superuser=True).count() == 1


# --- gateway processes ---------------------------------------------------------------------


def test_it_runs_management_commands_in_the_nodes_own_data_dir(gateway_factory: Callable[..., GatewayProcess]) -> None:
    node: GatewayProcess = gateway_factory()
    result = node.manage("ensure_admin", check=True)
    assert "password:" in result.stdout
    assert (node.data_dir / "gatehouse.sqlite3").exists()
    again = node.manage("ensure_admin", check=True)
    assert "already exists" in again.stdout


def test_it_starts_and_stops_a_gateway_node(gateway_factory: Callable[..., GatewayProcess]) -> None:
    node: GatewayProcess = gateway_factory()
    node.start()
    assert node.running
    with socket.create_connection(("127.0.0.1", node.pg_port), timeout=5):
        pass
    node.stop()
    assert not node.running
    assert "starting: " in node.log_text()


def test_it_connects_the_bot_through_the_session_gateway(gateway: GatewayProcess, pg_cluster: PgCluster) -> None:
    with psycopg.connect(gateway.dsn(), connect_timeout=10) as conn:
        count = conn.execute("SELECT count(*) FROM items").fetchone()[0]
    assert count == SEED_ROWS
    assert gateway.canary == pg_cluster.superuser_password
    assert gateway.canary not in gateway.log_text()


def test_it_refuses_a_webhook_url_that_is_not_http(gateway_factory: Callable[..., GatewayProcess]) -> None:
    node: GatewayProcess = gateway_factory(env={"GATEHOUSE_WEBHOOK_URL": "file:///etc/passwd"})
    with pytest.raises(GatewayError, match="GATEHOUSE_WEBHOOK_URL must be an http:// or https:// URL"):
        node.manage("check", check=True)
