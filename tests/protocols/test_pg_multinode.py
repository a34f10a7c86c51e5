"""Two gateway nodes sharing a database and a Redis channel layer.

A load balancer may send a client's CancelRequest to any node; the node
holding the session must still cancel the query.
"""

import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.protocols.nodes import assert_verifies, bot_client, poll, running_node, unique_name, wait_for_session
from tests.protocols.wire import ServerError, WireClient, cancel_request, error_fields, query_message
from tests.support.gateway_process import GatewayProcess
from tests.support.pg_cluster import PgCluster
from tests.support.redis_server import running_redis


@pytest.fixture
def two_nodes(pg_cluster: PgCluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple]:
    """Nodes A and B on one data dir (one SQLite database, one key set) and one Redis."""
    data_dir = tmp_path_factory.mktemp("two-nodes")
    with (
        running_redis() as redis_url,
        running_node(data_dir, pg_cluster, env={"REDIS_URL": redis_url, "GATEHOUSE_NODE_ID": "node-a"}) as node_a,
        GatewayProcess(data_dir, env={"REDIS_URL": redis_url, "GATEHOUSE_NODE_ID": "node-b"}) as node_b,
    ):
        node_b.start()
        yield node_a, node_b


def test_it_recovers_only_its_own_sessions_when_one_node_restarts(two_nodes: tuple) -> None:
    node_a, node_b = two_nodes
    application_name = unique_name("node-restart")
    with bot_client(node_a, application_name=application_name) as client:
        client.send(query_message("SELECT 'before the restart'"))
        client.read_until(b"Z")
        node_b.stop()
        node_b.start()  # recovers node-b's live sessions at start, and none of node-a's
        client.send(query_message("SELECT 'still served by node-a'"))
        assert b"still served by node-a" in b"".join(m.payload for m in client.read_until(b"Z"))
    row = wait_for_session(node_a, application_name, sealed=True)
    assert (row["node"], row["status"]) == ("node-a", "ended")


def test_it_cancels_a_query_through_the_other_node(two_nodes: tuple) -> None:
    node_a, node_b = two_nodes
    with bot_client(node_a) as client:
        client.send(query_message("SELECT pg_sleep(30)"))
        time.sleep(0.5)  # let the query reach the upstream
        started = time.monotonic()
        with WireClient(node_b.pg_port) as canceller:
            canceller.send(cancel_request(*client.greeting.backend_key))
            assert canceller.messages_until_close() == []
        with pytest.raises(ServerError) as canceled:
            client.read_until(b"Z")
        assert canceled.value.sqlstate == "57014"
        assert time.monotonic() - started < 15
        # The session is still usable afterwards.
        client.read_until(b"Z")
        client.send(query_message("SELECT 1"))
        assert [m.kind for m in client.read_until(b"Z")] == [b"T", b"D", b"C", b"Z"]


def test_it_ignores_a_cancel_with_the_wrong_secret_on_every_node(two_nodes: tuple) -> None:
    node_a, node_b = two_nodes
    with bot_client(node_a) as client:
        pid, secret = client.greeting.backend_key
        client.send(query_message("SELECT pg_sleep(1), 'slept'"))
        for node in (node_a, node_b):
            with WireClient(node.pg_port) as canceller:
                canceller.send(cancel_request(pid, secret ^ 1))
                canceller.messages_until_close()
        replies = client.read_until(b"Z")
        assert not [m for m in replies if m.kind == b"E"], [error_fields(m.payload) for m in replies]
        assert b"slept" in b"".join(m.payload for m in replies if m.kind == b"D")


# --- one node, several worker processes ------------------------------------------------------


def worker_pids(node: GatewayProcess) -> list[int]:
    found = subprocess.run(["pgrep", "-P", str(node.process.pid)], capture_output=True, text=True)
    return [int(pid) for pid in found.stdout.split()]


def alive(pids: list[int]) -> list[int]:
    return [pid for pid in pids if Path(f"/proc/{pid}").exists()]


def wait_until_every_process_listens(node: GatewayProcess, processes: int) -> None:
    """Until the parent and each worker have logged that they listen for PostgreSQL clients.

    The port answers as soon as the first of them listens; the tests want
    connections spread over all of them.
    """
    listening = poll(lambda: node.log_text().count("PostgreSQL listener on") >= processes, 30)
    assert listening, f"not every PostgreSQL process of the node listens:\n{node.log_tail()}"


@pytest.fixture
def worker_node(pg_cluster: PgCluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    """A node serving PostgreSQL from two processes on one port, signalling through Redis."""
    data_dir = tmp_path_factory.mktemp("workers")
    with (
        running_redis() as redis_url,
        running_node(data_dir, pg_cluster, env={"REDIS_URL": redis_url, "GATEHOUSE_PG_WORKERS": "2"}) as node,
    ):
        wait_until_every_process_listens(node, 2)
        yield node


def test_it_cancels_queries_whichever_worker_takes_the_cancel_request(worker_node: GatewayProcess) -> None:
    assert len(worker_pids(worker_node)) == 1
    # The kernel spreads connections over both workers; each cancel arrives on a fresh one.
    for _ in range(6):
        with bot_client(worker_node) as client:
            client.send(query_message("SELECT pg_sleep(30)"))
            time.sleep(0.2)
            with WireClient(worker_node.pg_port) as canceller:
                canceller.send(cancel_request(*client.greeting.backend_key))
                canceller.messages_until_close()
            with pytest.raises(ServerError) as canceled:
                client.read_until(b"Z")
            assert canceled.value.sqlstate == "57014"


def test_it_stops_every_worker_and_seals_their_sessions(worker_node: GatewayProcess) -> None:
    workers = worker_pids(worker_node)
    clients = [bot_client(worker_node) for _ in range(4)]
    assert worker_node.stop() == 0
    for client in clients:
        fields = error_fields(client.read_message().payload)
        assert (fields["C"], fields["M"]) == ("57P01", "terminating connection: the gateway is shutting down")
        client.close()
    assert not alive(workers)
    verified = assert_verifies(worker_node, "--all")
    assert verified.stdout.count("OK ") == 4, verified.stdout + verified.stderr
    assert "live" not in verified.stdout


def test_it_does_not_leave_workers_behind_a_killed_node(worker_node: GatewayProcess) -> None:
    workers = worker_pids(worker_node)
    worker_node.kill9()
    assert poll(lambda: not alive(workers), 15, interval=0.1), f"workers left behind: {alive(workers)}"


def test_it_stops_cleanly_when_told_to_stop_during_start_up(pg_cluster: PgCluster, tmp_path_factory) -> None:
    # Stop signals stay blocked until each process can handle them, so a SIGTERM
    # that arrives while the node is still starting is a clean stop, not a kill.
    with running_redis() as redis_url:
        for _ in range(3):
            node = GatewayProcess(
                tmp_path_factory.mktemp("early-stop"), env={"REDIS_URL": redis_url, "GATEHOUSE_PG_WORKERS": "2"}
            )
            node.start()
            assert node.stop() == 0, node.log_tail()
