"""The SSH gateway's other channels with real clients: interactive shells, ssh -L, and several channels at once."""

import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pexpect
import pytest

from tests.protocols.nodes import public_id
from tests.protocols.ssh_nodes import SshAccess, last_session_id, new_recording, new_ssh_sessions
from tests.support.ports import free_port, wait_for_port

PROMPT = "GH-PROMPT> "


def spawn_shell(ssh_access: SshAccess, *options: str) -> pexpect.spawn:
    """`ssh -tt` through the gateway in a real PTY, with a fixed prompt to wait for."""
    command = ssh_access.ssh(options=("-tt", *options))
    child = pexpect.spawn(command[0], command[1:], timeout=30, encoding="utf-8", dimensions=(30, 100))
    child.expect(r"[#$] ")  # the login shell's own prompt: it reads its input now
    # Quoted in two parts, so that the echo of this line does not look like the prompt.
    child.sendline(f"export PS1='{PROMPT[:3]}''{PROMPT[3:]}' TERM=dumb; stty -echoctl")
    child.expect_exact(PROMPT)
    return child


def test_it_runs_an_interactive_shell_with_a_pty(ssh_access: SshAccess) -> None:
    before = last_session_id(ssh_access.gateway)
    child = spawn_shell(ssh_access)
    child.sendline("tty; stty size; echo $((6 * 7))")
    child.expect_exact("42")
    assert "/dev/pts/" in child.before
    assert "30 100" in child.before
    child.setwinsize(40, 120)
    child.sendline("stty size")
    child.expect_exact("40 120")
    child.expect_exact(PROMPT)
    child.sendline("exit 3")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 3
    recording = new_recording(ssh_access.gateway, before)
    assert recording.data("channel")[0]["type"] == "shell"
    assert recording.data("channel")[0]["term"]
    assert "40 120" in "".join(recording.data("o"))
    assert "echo $((6 * 7))" in "".join(recording.data("i"))
    assert "120x40" in recording.data("r")


class EchoServer:
    """A local TCP server that answers each line with `echo: line`; the target of ssh -L."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._answer, args=(conn,), daemon=True).start()

    @staticmethod
    def _answer(conn: socket.socket) -> None:
        with conn, conn.makefile("rwb") as stream:
            for line in stream:
                stream.write(b"echo: " + line)
                stream.flush()

    def close(self) -> None:
        self.listener.close()


@pytest.fixture
def echo_server() -> Iterator[EchoServer]:
    server = EchoServer()
    yield server
    server.close()


def test_it_forwards_a_local_port_to_an_allowed_destination(ssh_access: SshAccess, echo_server: EchoServer) -> None:
    local = free_port()
    before = last_session_id(ssh_access.gateway)
    tunnel = subprocess.Popen(
        ssh_access.ssh(options=("-N", "-L", f"127.0.0.1:{local}:127.0.0.1:{echo_server.port}")),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        assert wait_for_port("127.0.0.1", local, 20)
        for attempt in range(2):  # each connection is its own channel; the first closing must not end the second
            with socket.create_connection(("127.0.0.1", local), timeout=10) as conn, conn.makefile("rwb") as stream:
                stream.write(b"hello %d\n" % attempt)
                stream.flush()
                assert stream.readline() == b"echo: hello %d\n" % attempt
    finally:
        tunnel.terminate()
        tunnel.wait(10)
    recording = new_recording(ssh_access.gateway, before)
    # wait_for_port's probe was a forwarded connection too, one that sent nothing.
    assert {event["port"] for event in recording.data("forward")} == {echo_server.port}
    closed = [event for event in recording.data("forward_closed") if event["bytes_up"]]
    assert [(event["bytes_up"], event["bytes_down"]) for event in closed] == [(8, 14), (8, 14)]


def test_it_refuses_forwarding_to_a_destination_not_allowed(ssh_access: SshAccess) -> None:
    before = last_session_id(ssh_access.gateway)
    result = subprocess.run(ssh_access.ssh(options=("-W", "192.0.2.1:25")), capture_output=True, timeout=60)
    assert result.returncode == 255  # ssh -W uses direct-tcpip, as -L does
    assert b"not allowed" in result.stderr or b"prohibited" in result.stderr, result.stderr
    recording = new_recording(ssh_access.gateway, before)
    assert recording.data("forward_refused") == [{"host": "192.0.2.1", "port": 25}]


def test_it_runs_channels_side_by_side_on_one_connection(ssh_access: SshAccess, tmp_path: Path) -> None:
    """A ControlMaster connection carries a slow exec, quick execs and a shell; closing one ends no other."""
    control = tmp_path / "control.sock"
    master_options = ("-o", "ControlMaster=yes", "-o", f"ControlPath={control}", "-o", "ControlPersist=no")
    before = last_session_id(ssh_access.gateway)
    master = subprocess.Popen(ssh_access.ssh(options=("-N", *master_options)), stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 20
        while not control.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        shared = ("-o", f"ControlPath={control}", "-o", "ControlMaster=no")
        slow = subprocess.Popen(ssh_access.ssh("sleep 2; echo slow-done", options=shared), stdout=subprocess.PIPE)
        quick = [
            subprocess.run(ssh_access.ssh(f"echo quick-{n}", options=shared), capture_output=True) for n in range(3)
        ]
        assert [result.stdout for result in quick] == [b"quick-0\n", b"quick-1\n", b"quick-2\n"]
        assert slow.communicate(timeout=30)[0] == b"slow-done\n"
    finally:
        master.terminate()
        master.wait(10)
    recording = new_recording(ssh_access.gateway, before)
    assert len(recording.data("channel")) == 4, recording.events
    assert sorted(event["status"] for event in recording.data("exit")) == [0, 0, 0, 0]


def test_a_reviewer_can_end_a_live_ssh_session(ssh_access: SshAccess, ssh_reviewer: str) -> None:
    gateway = ssh_access.gateway
    before = last_session_id(gateway)
    sleeper = subprocess.Popen(
        ssh_access.ssh("echo started; sleep 120"), stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    assert sleeper.stdout.readline() == b"started\n"
    (row,) = new_ssh_sessions(gateway, before, sealed=False)
    gateway.manage("sessions", "terminate", public_id(row), "--as", ssh_reviewer, "--reason", "enough", check=True)
    assert sleeper.wait(20) == 255
    assert b"terminated" in sleeper.stderr.read()
    recording = new_recording(gateway, before)
    assert recording.row["status"] == "terminated"
    assert recording.data("terminated")[0]["reason"] == "enough"
