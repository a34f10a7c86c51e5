"""Two gateway nodes on one database and a Redis channel layer: a reviewer on node B serves bots on node A.

The bot talks only to node A's PostgreSQL port, the reviewer's browser
only to node B's web port; what crosses between them (the feed, the
decision, live-watch batches) goes over channels_redis.
"""

from collections.abc import Iterator
from dataclasses import dataclass

import psycopg
import pytest
from playwright.sync_api import Browser, expect
from psycopg import sql

from tests.e2e.conftest import (
    Reviewer,
    add_reviewed_connection,
    add_reviewer,
    assert_not_reloaded,
    bot_psql,
    log_in,
    mark_page,
)
from tests.protocols.nodes import public_id, running_node, unique_name, wait_for_recorded, wait_for_session
from tests.support.gateway_process import GatewayProcess
from tests.support.pg_cluster import PgCluster
from tests.support.redis_server import running_redis


@dataclass(frozen=True)
class TwoNodes:
    """Node A (the bot's) and node B (the reviewer's), the reviewed connection, and the login on B."""

    node_a: GatewayProcess
    node_b: GatewayProcess
    reviewed: str
    reviewer: Reviewer
    login_state_b: dict


@pytest.fixture(scope="module")
def two_nodes(pg_cluster: PgCluster, tmp_path_factory: pytest.TempPathFactory, browser: Browser) -> Iterator[TwoNodes]:
    """Nodes A and B on one data dir (one SQLite database, one key set, one static dir) and one Redis."""
    data_dir = tmp_path_factory.mktemp("e2e-two-nodes")
    with running_redis() as redis_url:
        env_a = {"REDIS_URL": redis_url, "GATEHOUSE_NODE_ID": "node-a"}
        env_b = {"REDIS_URL": redis_url, "GATEHOUSE_NODE_ID": "node-b"}
        with (
            running_node(data_dir, pg_cluster, env=env_a, start=False) as node_a,
            GatewayProcess(data_dir, env=env_b) as node_b,
        ):
            reviewed = add_reviewed_connection(node_a, pg_cluster, tmp_path_factory.mktemp("e2e-two-nodes-policy"))
            reviewer = add_reviewer(node_a, node_a.connection_name, reviewed)
            node_a.start()
            node_b.start()
            yield TwoNodes(node_a, node_b, reviewed, reviewer, log_in(browser, node_b, reviewer))


@pytest.fixture
def direct(pg_cluster: PgCluster) -> Iterator[psycopg.Connection]:
    with psycopg.connect(pg_cluster.dsn(), autocommit=True) as conn:
        yield conn


def test_it_approves_on_node_b_a_statement_held_on_node_a(two_nodes: TwoNodes, open_page, direct) -> None:
    page = open_page(two_nodes.node_b, two_nodes.login_state_b, "/")
    mark_page(page)
    table = unique_name("e2e_two_nodes").replace("-", "_")
    create = f"CREATE TABLE {table} (id int)"
    application_name = unique_name("e2e-node-a")
    try:
        insert = f"INSERT INTO {table} VALUES (7)"  # noqa: S608 (a name the test made)
        select = f"SELECT 'released by node-b', id FROM {table}"  # noqa: S608 (a name the test made)
        finished = bot_psql(
            two_nodes.node_a, two_nodes.reviewed, create, insert, select, application_name=application_name
        )
        row = page.locator("#pending-reviews [data-review-row]").filter(has_text=create)
        expect(row).to_be_visible()  # held on A, pushed to B's page over Redis
        assert_not_reloaded(page)
        row.get_by_role("button", name="Approve").click()

        result = finished()
        assert result.returncode == 0, result.stderr
        assert result.stdout.splitlines() == ["CREATE TABLE", "INSERT 0 1", "released by node-b|7"]
        expect(row).to_have_count(0)
    finally:
        direct.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(sql.Identifier(table)))
    session = wait_for_session(two_nodes.node_a, application_name, sealed=True)
    assert session["node"] == "node-a"


def test_it_shows_a_watcher_on_node_b_a_session_on_node_a(two_nodes: TwoNodes, open_page) -> None:
    application_name = unique_name("e2e-watch-a")
    dsn = two_nodes.node_a.dsn()
    with psycopg.connect(dsn, application_name=application_name, autocommit=True, connect_timeout=15) as bot:
        bot.execute("SELECT 'on node a before the watch'")
        session = wait_for_session(two_nodes.node_a, application_name, sealed=False)
        assert session["node"] == "node-a"
        wait_for_recorded(two_nodes.node_a, session, "on node a before the watch")
        page = open_page(two_nodes.node_b, two_nodes.login_state_b, f"/sessions/{public_id(session)}/")
        mark_page(page)
        events = page.locator("#live-events")
        expect(events).to_contain_text("on node a before the watch")

        for number in (1, 2):
            statement = f"SELECT upper('seen from node b {number}') AS shout"  # noqa: S608 (a number)
            assert bot.execute(statement).fetchall() == [(f"SEEN FROM NODE B {number}",)]
            expect(events.get_by_role("cell", name=f"SEEN FROM NODE B {number}", exact=True)).to_be_visible()
        assert_not_reloaded(page)
