"""Two gateway nodes sharing a database and a Redis channel layer.

A load balancer may send a client's CancelRequest to any node; the node
holding the session must still cancel the query.
"""

import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.protocols.wire import ServerError, WireClient, cancel_request, error_fields, query_message
from tests.support.gateway_process import GatewayProcess, provision_bot
from tests.support.pg_cluster import PgCluster
from tests.support.redis_server import running_redis


@pytest.fixture
def two_nodes(pg_cluster: PgCluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple]:
    """Nodes A and B on one data dir (one SQLite database, one key set) and one Redis."""
    data_dir = tmp_path_factory.mktemp("two-nodes")
    with running_redis() as redis_url:
        node_a = GatewayProcess(data_dir, env={"REDIS_URL": redis_url})
        node_b = GatewayProcess(data_dir, env={"REDIS_URL": redis_url})
        try:
            provision_bot(node_a, pg_cluster)
            node_a.start()
            node_b.start()
            yield node_a, node_b
        finally:
            node_a.stop()
            node_b.stop()


def test_it_cancels_a_query_through_the_other_node(two_nodes: tuple) -> None:
    node_a, node_b = two_nodes
    with WireClient(node_a.pg_port) as client:
        greeting = client.login(node_a.agent_name, node_a.connection_name, node_a.token)
        client.send(query_message("SELECT pg_sleep(30)"))
        time.sleep(0.5)  # let the query reach the upstream
        started = time.monotonic()
        with WireClient(node_b.pg_port) as canceller:
            canceller.send(cancel_request(*greeting.backend_key))
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
    with WireClient(node_a.pg_port) as client:
        pid, secret = client.login(node_a.agent_name, node_a.connection_name, node_a.token).backend_key
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


@pytest.fixture
def worker_node(pg_cluster: PgCluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    """A node serving PostgreSQL from two processes on one port, signalling through Redis."""
    with running_redis() as redis_url:
        node = GatewayProcess(
            tmp_path_factory.mktemp("workers"), env={"REDIS_URL": redis_url, "GATEHOUSE_PG_WORKERS": "2"}
        )
        try:
            provision_bot(node, pg_cluster)
            node.start()
            yield node
        finally:
            node.stop()


def test_it_cancels_queries_whichever_worker_takes_the_cancel_request(worker_node: GatewayProcess) -> None:
    assert len(worker_pids(worker_node)) == 1
    # The kernel spreads connections over both workers; each cancel arrives on a fresh one.
    for _ in range(6):
        with WireClient(worker_node.pg_port) as client:
            greeting = client.login(worker_node.agent_name, worker_node.connection_name, worker_node.token)
            client.send(query_message("SELECT pg_sleep(30)"))
            time.sleep(0.2)
            with WireClient(worker_node.pg_port) as canceller:
                canceller.send(cancel_request(*greeting.backend_key))
                canceller.messages_until_close()
            with pytest.raises(ServerError) as canceled:
                client.read_until(b"Z")
            assert canceled.value.sqlstate == "57014"


def test_it_stops_every_worker_and_seals_their_sessions(worker_node: GatewayProcess) -> None:
    workers = worker_pids(worker_node)
    clients = [WireClient(worker_node.pg_port) for _ in range(4)]
    for client in clients:
        client.login(worker_node.agent_name, worker_node.connection_name, worker_node.token)
    assert worker_node.stop() == 0
    for client in clients:
        fields = error_fields(client.read_message().payload)
        assert (fields["C"], fields["M"]) == ("57P01", "terminating connection: the gateway is shutting down")
        client.close()
    assert not [pid for pid in workers if Path(f"/proc/{pid}").exists()]
    verified = worker_node.manage("recordings", "verify", "--all")
    assert verified.returncode == 0 and verified.stdout.count("OK ") == 4, verified.stdout + verified.stderr
    assert "live" not in verified.stdout


def test_it_does_not_leave_workers_behind_a_killed_node(worker_node: GatewayProcess) -> None:
    workers = worker_pids(worker_node)
    worker_node.kill9()
    deadline = time.monotonic() + 15
    while [pid for pid in workers if Path(f"/proc/{pid}").exists()] and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not [pid for pid in workers if Path(f"/proc/{pid}").exists()]
