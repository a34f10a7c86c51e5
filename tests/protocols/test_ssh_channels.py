"""The SSH gateway's other channels with real clients: interactive shells, and several channels at once."""

import subprocess
import time
from pathlib import Path

import pexpect

from tests.protocols.nodes import public_id
from tests.protocols.ssh_nodes import SshAccess, last_session_id, new_recording, new_ssh_sessions

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
