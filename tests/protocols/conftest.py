"""Fixtures for the real-client tests: clients through the session gateway and direct, and its recordings.

Every client a test opens through the gateway carries a unique
application_name, which the gateway stores on the Session row; that is how a
test finds the recording of its own session on a node that others share.
"""

import contextlib
import subprocess
from collections.abc import Callable, Iterator

import psycopg
import pytest

from tests.protocols.nodes import (
    Recording,
    bot_client,
    clean_env,
    gateway_psql_env,
    psql_command,
    read_recording,
    unique_name,
    wait_for_session,
)
from tests.protocols.ssh_nodes import SshAccess, provision_ssh
from tests.protocols.wire import WireClient
from tests.support.gateway_process import HOST, GatewayProcess
from tests.support.pg_cluster import PgCluster
from tests.support.sshd import SshServer, running_sshd

SEAL_TIMEOUT = 20.0
PSQL_TIMEOUT = 60.0


@pytest.fixture
def app_name(request: pytest.FixtureRequest) -> str:
    """A unique application_name for this test's sessions (PostgreSQL keeps 63 bytes)."""
    return unique_name(f"t-{request.node.name[8:36]}")


@pytest.fixture
def sealed_recording(gateway: GatewayProcess) -> Callable[[str], Recording]:
    """Waits until the newest session with this application_name is sealed, then reads its recording."""

    def wait(application_name: str) -> Recording:
        row = wait_for_session(gateway, application_name, sealed=True, timeout=SEAL_TIMEOUT, newest=True)
        return read_recording(gateway, row)

    return wait


@pytest.fixture
def direct(pg_cluster: PgCluster) -> Iterator[psycopg.Connection]:
    """A psycopg connection straight to the cluster's `app` database, as the gateway's upstream user."""
    with psycopg.connect(pg_cluster.dsn(), autocommit=True) as conn:
        yield conn


@pytest.fixture
def connect(gateway: GatewayProcess, app_name: str) -> Iterator[Callable[..., psycopg.Connection]]:
    """Opens psycopg connections through the gateway (application_name = app_name unless given)."""
    with contextlib.ExitStack() as opened:

        def open_connection(**options: object) -> psycopg.Connection:
            options.setdefault("application_name", app_name)
            options.setdefault("connect_timeout", 15)
            conn = psycopg.connect(gateway.dsn(), **options)
            opened.callback(conn.close)
            return conn

        yield open_connection


def run_psql(
    dsn: str, env: dict[str, str], args: tuple[str, ...], stdin: str | None, check: bool, where: str
) -> subprocess.CompletedProcess[str]:
    """The real psql with -X -A -t and `args`; a failed run fails the test if `check`."""
    result = subprocess.run(
        psql_command(dsn, "-A", "-t", *args), input=stdin, capture_output=True, text=True, env=env, timeout=PSQL_TIMEOUT
    )
    if check and result.returncode != 0:
        pytest.fail(f"psql {where} exited {result.returncode}: {result.stderr.strip()}")
    return result


@pytest.fixture
def gateway_psql(gateway: GatewayProcess, app_name: str) -> Callable[..., subprocess.CompletedProcess[str]]:
    """Runs the real psql through the gateway (-X -A -t; the token in PGPASSWORD, never on the command line)."""

    def run(*args: str, stdin: str | None = None, application_name: str = app_name, check: bool = True):
        env = gateway_psql_env(gateway, application_name)
        return run_psql(gateway.dsn(password=""), env, args, stdin, check, "through the gateway")

    return run


@pytest.fixture
def direct_psql(pg_cluster: PgCluster) -> Callable[..., subprocess.CompletedProcess[str]]:
    """Runs the real psql straight to the cluster, with the same options as gateway_psql."""

    def run(*args: str, stdin: str | None = None, check: bool = True):
        env = clean_env(PGPASSWORD=pg_cluster.superuser_password, PGCONNECT_TIMEOUT="15")
        return run_psql(pg_cluster.dsn(password=""), env, args, stdin, check, "to the cluster")

    return run


@pytest.fixture
def raw_gateway(gateway: GatewayProcess, app_name: str) -> Iterator[Callable[..., WireClient]]:
    """Logs raw-protocol clients in to the gateway as the provisioned bot."""
    with contextlib.ExitStack() as opened:

        def open_client(application_name: str = app_name) -> WireClient:
            client = bot_client(gateway, application_name=application_name)
            opened.callback(client.close)
            return client

        yield open_client


@pytest.fixture
def raw_direct(pg_cluster: PgCluster) -> Iterator[Callable[[], WireClient]]:
    """Logs raw-protocol clients in to the cluster directly, as the gateway's upstream user."""
    with contextlib.ExitStack() as opened:

        def open_client() -> WireClient:
            client = opened.enter_context(WireClient(pg_cluster.port, host=pg_cluster.host))
            client.login("postgres", "app", pg_cluster.superuser_password)
            return client

        yield open_client


@pytest.fixture(scope="session")
def sshd() -> Iterator[SshServer]:
    """A real OpenSSH server for the whole run: the SSH connections' upstream host."""
    with running_sshd() as server:
        yield server


@pytest.fixture(scope="session")
def ssh_reviewer(gateway: GatewayProcess) -> str:
    """A person on the shared node who may decide held commands and end sessions (a superuser)."""
    name = unique_name("reviewer")
    script = "import os; from django.contrib.auth.models import User; User.objects.create_superuser(os.environ['R'])"
    gateway.manage("shell", "-c", script, env={"R": name}, check=True)
    return name


@pytest.fixture(scope="session")
def ssh_access(gateway: GatewayProcess, sshd: SshServer, tmp_path_factory: pytest.TempPathFactory) -> SshAccess:
    """The shared node's SSH connection `web-01` to sshd, and agent `ssh-bot` with a key and a token."""
    return provision_ssh(gateway, sshd, tmp_path_factory.mktemp("ssh-access"), forwarding=f"{HOST}:*")
