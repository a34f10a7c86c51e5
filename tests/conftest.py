"""Fixtures shared by the whole suite: a throwaway PostgreSQL cluster and real gateway nodes.

The test run's data dir is chosen in tests/support/isolated_settings.py,
because pytest-django imports the settings before this file is loaded.
"""

from collections.abc import Callable, Iterator

import pytest
from django.contrib.auth.models import Group

from connections.protocols.compiled import stale_build_error
from tests.support.gateway_process import GatewayProcess, provision_bot
from tests.support.pg_cluster import PgCluster, running_cluster


def pytest_configure(config: pytest.Config) -> None:
    # Python would import the old compiled module, and every gateway the tests start would refuse to.
    problem = stale_build_error()
    if problem:
        pytest.exit(problem, returncode=pytest.ExitCode.USAGE_ERROR)


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[PgCluster]:
    """A PostgreSQL cluster for the whole run (see PgCluster for its roles and data)."""
    with running_cluster() as cluster:
        yield cluster


@pytest.fixture
def gateway_factory(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[..., GatewayProcess]]:
    """Makes gateway nodes, each in its own data dir; every one is stopped after the test."""
    made: list[GatewayProcess] = []

    def make(**options: object) -> GatewayProcess:
        node = GatewayProcess(tmp_path_factory.mktemp("gateway"), **options)  # type: ignore[arg-type]
        made.append(node)
        return node

    yield make
    for node in made:
        node.stop()


@pytest.fixture
def make_group(db):
    """Makes a Django group holding the given users."""

    def make(name: str, *users):
        group = Group.objects.create(name=name)
        group.user_set.add(*users)
        return group

    return make


@pytest.fixture(scope="session")
def gateway(pg_cluster: PgCluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    """A running gateway with connection `pg-main` (pg_cluster's app db as postgres) and agent `ci-bot`.

    gateway.token is ci-bot's token, gateway.canary the upstream password that must never leak.
    """
    node = GatewayProcess(tmp_path_factory.mktemp("gateway-main"))
    try:
        provision_bot(node, pg_cluster)
        node.start()
        yield node
    finally:
        node.stop()
