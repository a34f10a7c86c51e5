"""Bad input at the SSH gateway: garbage, failed logins, dead or impostor hosts, dropped upstreams, expiry.

Each test ends by checking that the shared node still serves a normal exec.
"""

import os
import signal
import socket
import subprocess
import time

from tests.protocols.nodes import unique_name
from tests.protocols.ssh_nodes import (
    SshAccess,
    add_ssh_connection,
    askpass_env,
    last_session_id,
    new_recording,
    new_ssh_sessions,
)
from tests.support.ports import free_port
from tests.support.sshd import make_key


def assert_still_serves(access: SshAccess) -> None:
    result = access.run("echo still-here")
    assert result.returncode == 0 and result.stdout == b"still-here\n", result.stderr


def test_it_drops_garbage_sent_before_the_banner(ssh_access: SshAccess) -> None:
    for junk in (b"GET / HTTP/1.1\r\n\r\n", os.urandom(4096), b"SSH-1.5-ancient\r\n", b"SSH-2.0-" + b"x" * 10000):
        with socket.create_connection(("127.0.0.1", ssh_access.gateway.ssh_port), timeout=10) as conn:
            conn.sendall(junk)
            conn.shutdown(socket.SHUT_WR)
            received = b""
            while chunk := conn.recv(65536):
                received += chunk
        assert received.startswith(b"SSH-2.0-Gatehouse")
    assert_still_serves(ssh_access)


def test_it_drops_a_client_that_hangs_up_mid_handshake(ssh_access: SshAccess) -> None:
    for _ in range(20):
        with socket.create_connection(("127.0.0.1", ssh_access.gateway.ssh_port), timeout=10) as conn:
            conn.sendall(b"SSH-2.0-OpenSSH_9.2\r\n\x00\x00\x01")
    assert_still_serves(ssh_access)


def test_it_disconnects_after_too_many_failed_logins(ssh_access: SshAccess, tmp_path) -> None:
    keys = [make_key(tmp_path / f"wrong{n}") for n in range(8)]
    identities = [option for key in keys for option in ("-i", str(key))]
    result = subprocess.run(
        ["ssh", *identities, *ssh_access.options("-o", "IdentitiesOnly=yes", key=keys[0])]
        + ["-p", str(ssh_access.gateway.ssh_port), ssh_access.destination, "true"],
        capture_output=True,
        timeout=60,
    )
    assert result.returncode == 255
    assert b"too many authentication failures" in result.stderr.lower(), result.stderr
    assert_still_serves(ssh_access)


def test_it_refuses_an_expired_token(ssh_access: SshAccess, tmp_path) -> None:
    gateway = ssh_access.gateway
    issued = gateway.manage("agents", "token", ssh_access.agent, "--ttl", "1s", check=True)
    token = issued.stdout.strip().splitlines()[-1].strip()
    time.sleep(1.5)
    options = ("-o", "PubkeyAuthentication=no", "-o", "BatchMode=no", "-o", "NumberOfPasswordPrompts=1")
    result = subprocess.run(
        ssh_access.ssh("true", options=options),
        capture_output=True,
        timeout=60,
        env=askpass_env(token, tmp_path),
        stdin=subprocess.DEVNULL,
    )
    assert result.returncode == 255
    assert b"Permission denied" in result.stderr
    assert_still_serves(ssh_access)


def test_it_tells_the_agent_when_the_host_is_down(ssh_access: SshAccess) -> None:
    dead = add_ssh_connection(ssh_access, unique_name("dead"), port=free_port())
    before = last_session_id(ssh_access.gateway)
    result = dead.run("true")
    assert result.returncode == 255
    assert b"unreachable" in result.stderr, result.stderr
    recording = new_recording(ssh_access.gateway, before)
    assert recording.data("upstream_failed")
    assert recording.row["status"] == "interrupted"
    assert_still_serves(ssh_access)


def test_it_refuses_a_host_whose_key_does_not_match_the_pinned_one(ssh_access: SshAccess, tmp_path) -> None:
    impostor = make_key(tmp_path / "impostor")
    kind, blob, *_ = impostor.with_suffix(".pub").read_text().split()
    access = add_ssh_connection(ssh_access, unique_name("mitm"), known_host=f"{kind} {blob}")
    before = last_session_id(ssh_access.gateway)
    result = access.run("true")
    assert result.returncode == 255
    assert b"does not match the pinned key" in result.stderr, result.stderr
    assert "does not match the pinned key" in str(new_recording(ssh_access.gateway, before).data("upstream_failed"))
    assert "presented a host key other than the pinned" in ssh_access.gateway.log_text()
    assert_still_serves(ssh_access)


def test_it_refuses_a_connection_with_no_pinned_key(ssh_access: SshAccess) -> None:
    access = add_ssh_connection(ssh_access, unique_name("unpinned"), pin=False)
    result = access.run("true")
    assert result.returncode == 255
    assert b"no pinned host key" in result.stderr and b"trust-host" in result.stderr, result.stderr
    pinned = ssh_access.gateway.manage("connections", "trust-host", access.connection, check=True)
    assert "SHA256:" in pinned.stdout
    assert access.run("echo pinned").stdout == b"pinned\n"


def test_it_ends_the_agents_channel_when_the_host_drops_mid_transfer(ssh_access: SshAccess) -> None:
    sshd_pid = ssh_access.sshd.process.pid
    before_children = set(_children(sshd_pid))
    stream = subprocess.Popen(ssh_access.ssh("cat /dev/zero"), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert stream.stdout.read(1 << 20)  # the transfer is under way
    for pid in set(_children(sshd_pid)) - before_children:
        os.kill(pid, signal.SIGKILL)  # the host's side of this connection dies
    while stream.stdout.read(1 << 20):
        pass
    stream.wait(30)
    assert stream.returncode == 255
    assert b"upstream host closed" in stream.stderr.read(), "the agent is told why"
    assert_still_serves(ssh_access)


def _children(pid: int) -> list[int]:
    result = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True)
    return [int(line) for line in result.stdout.split()]


def test_an_agent_of_a_postgres_connection_cannot_reach_it_over_ssh(ssh_access: SshAccess) -> None:
    result = subprocess.run(
        ["ssh", *ssh_access.options(), "-p", str(ssh_access.gateway.ssh_port), "pg-main@127.0.0.1", "true"],
        capture_output=True,
        timeout=60,
    )
    assert result.returncode == 255
    assert b"Permission denied" in result.stderr


def test_it_closes_the_session_of_an_agent_that_leaves_right_after_login(ssh_access: SshAccess) -> None:
    """The recording opens while the agent may already be gone: its session must still end, not stay live."""
    before = last_session_id(ssh_access.gateway)
    for _ in range(5):
        subprocess.run(
            ssh_access.ssh(options=("-N", "-o", "ExitOnForwardFailure=yes", "-W", "192.0.2.1:9")),
            capture_output=True,
            timeout=60,
        )
    sessions = new_ssh_sessions(ssh_access.gateway, before, count=5)
    assert {row["status"] for row in sessions} == {"ended"}
