"""What the SSH gateway refuses or bounds: forwarding kinds, the client's environment, and the recording cap."""

import os
import subprocess
from pathlib import Path

import pytest

from tests.protocols.ssh_nodes import SshAccess, last_session_id, new_recording, new_ssh_sessions, provision_ssh
from tests.support.gateway_process import GatewayProcess
from tests.support.sshd import SshServer


def test_it_passes_only_allowed_environment_variables(ssh_access: SshAccess) -> None:
    options = ("-o", "SetEnv=LC_GATEHOUSE=kept GATEHOUSE_TEST_SECRET=dropped")
    result = subprocess.run(
        ssh_access.ssh('echo "[$LC_GATEHOUSE][$GATEHOUSE_TEST_SECRET]"', options=options),
        capture_output=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    # sshd accepts GATEHOUSE_TEST_* (see tests/support/sshd.py): only the gateway can have dropped it.
    assert result.stdout == b"[kept][]\n"


def test_it_refuses_agent_forwarding(ssh_access: SshAccess, tmp_path: Path) -> None:
    agent = subprocess.run(["ssh-agent", "-s", "-a", str(tmp_path / "agent.sock")], capture_output=True, text=True)
    pid = int(agent.stdout.split("SSH_AGENT_PID=")[1].split(";")[0])
    try:
        env = dict(os.environ, SSH_AUTH_SOCK=str(tmp_path / "agent.sock"))
        result = subprocess.run(
            ssh_access.ssh('echo "[$SSH_AUTH_SOCK]"', options=("-A",)), capture_output=True, timeout=60, env=env
        )
    finally:
        os.kill(pid, 15)
    assert result.returncode == 0, result.stderr
    assert result.stdout == b"[]\n"


def test_it_refuses_remote_forwarding(ssh_access: SshAccess) -> None:
    options = ("-R", "127.0.0.1:0:127.0.0.1:9", "-o", "ExitOnForwardFailure=yes")
    result = subprocess.run(ssh_access.ssh("echo should-not-run", options=options), capture_output=True, timeout=60)
    assert result.returncode == 255
    assert b"remote port forwarding failed" in result.stderr.lower(), result.stderr


def test_it_answers_client_keepalives(ssh_access: SshAccess) -> None:
    options = ("-o", "ServerAliveInterval=1", "-o", "ServerAliveCountMax=2")
    result = subprocess.run(ssh_access.ssh("sleep 4; echo alive", options=options), capture_output=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout == b"alive\n"


@pytest.fixture
def capped(sshd: SshServer, tmp_path_factory: pytest.TempPathFactory):
    """A node of its own whose SSH recordings keep at most 64 KiB of terminal data."""
    node = GatewayProcess(tmp_path_factory.mktemp("capped"), env={"GATEHOUSE_SSH_RECORD_MAX_BYTES": "65536"})
    try:
        node.start()
        yield provision_ssh(node, sshd, tmp_path_factory.mktemp("capped-access"))
    finally:
        node.stop()


def test_it_stops_recording_terminal_data_at_the_cap_and_says_so(capped: SshAccess) -> None:
    before = last_session_id(capped.gateway)
    result = capped.run("head -c 3000000 /dev/zero | tr '\\0' x; echo; echo the-end")
    assert result.returncode == 0
    assert len(result.stdout) == 3_000_000 + len(b"\nthe-end\n")  # the client gets everything
    recording = new_recording(capped.gateway, before)
    assert recording.data("truncated") == [{"limit_bytes": 65536}]
    recorded = sum(len(text) for text in recording.data("o"))
    assert recorded <= 65536
    assert recording.data("exit") == [{"ch": 1, "status": 0}]  # events other than terminal data go on
    assert recording.path.stat().st_size < 200_000


def test_a_gateway_that_stops_ends_and_seals_its_ssh_sessions(capped: SshAccess) -> None:
    gateway = capped.gateway
    before = last_session_id(gateway)
    sleeper = subprocess.Popen(capped.ssh("echo started; sleep 120"), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert sleeper.stdout.readline() == b"started\n"
    assert gateway.stop() == 0
    assert sleeper.wait(20) == 255
    assert b"shutting down" in sleeper.stderr.read()
    (row,) = new_ssh_sessions(gateway, before)
    assert row["status"] == "terminated" and row["seal"]
