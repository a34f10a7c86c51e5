"""The SSH gateway with the real OpenSSH client: exec, exit codes, signals, stdin, and what is recorded.

The shared node (the `gateway` fixture) listens for SSH too; `ssh_access`
registers the test sshd as connection `web-01` and agent `ssh-bot`.
"""

import subprocess

from tests.protocols.ssh_nodes import SshAccess, askpass_env, last_session_id, new_recording


def test_it_runs_a_command_and_passes_its_output_and_exit_status(ssh_access: SshAccess) -> None:
    before = last_session_id(ssh_access.gateway)
    result = ssh_access.run("echo out; echo err >&2; exit 7")
    assert result.returncode == 7, result.stderr
    assert result.stdout == b"out\n"
    assert result.stderr == b"err\n"
    recording = new_recording(ssh_access.gateway, before)
    assert recording.header["gatehouse"]["kind"] == "ssh"
    assert recording.header["gatehouse"]["account"] == "ssh-bot"
    assert recording.data("command") == [{"ch": 1, "text": "echo out; echo err >&2; exit 7", "source": "exec"}]
    assert "".join(recording.data("o")) == "out\nerr\n"
    assert recording.data("exit") == [{"ch": 1, "status": 7}]
    assert recording.row["status"] == "ended"


def test_it_passes_stdin_and_eof_through(ssh_access: SshAccess) -> None:
    data = b"".join(b"line %d\n" % n for n in range(20000))
    result = ssh_access.run("wc -l; echo done", input=data)
    assert result.returncode == 0, result.stderr
    assert result.stdout == b"20000\ndone\n"


def test_it_passes_an_exit_signal_through(ssh_access: SshAccess) -> None:
    before = last_session_id(ssh_access.gateway)
    result = ssh_access.run("kill -TERM $$")
    # OpenSSH exits 255 when the remote command died of a signal, and says which.
    assert result.returncode == 255
    assert b"signal" in result.stderr.lower() or result.stderr == b"", result.stderr
    recording = new_recording(ssh_access.gateway, before)
    assert recording.data("exit") == [{"ch": 1, "signal": "TERM", "core_dumped": False}]


def test_it_logs_an_agent_in_with_a_token_as_the_password(ssh_access: SshAccess, tmp_path) -> None:
    command = ssh_access.ssh("echo via-token", options=("-o", "PubkeyAuthentication=no", "-o", "BatchMode=no"))
    env = askpass_env(ssh_access.token, tmp_path)
    result = subprocess.run(command, capture_output=True, timeout=60, env=env, stdin=subprocess.DEVNULL)
    assert result.returncode == 0, result.stderr
    assert result.stdout == b"via-token\n"


def test_it_refuses_an_unknown_key_a_wrong_token_and_an_unknown_connection_alike(
    ssh_access: SshAccess, tmp_path
) -> None:
    from tests.support.sshd import make_key

    stranger = make_key(tmp_path / "stranger")
    port = str(ssh_access.gateway.ssh_port)
    by_key = subprocess.run(
        ["ssh", *ssh_access.options(key=stranger), "-p", port, ssh_access.destination, "true"],
        capture_output=True,
        timeout=60,
    )
    unknown = subprocess.run(
        ["ssh", *ssh_access.options(), "-p", str(ssh_access.gateway.ssh_port), "no-such-host@127.0.0.1", "true"],
        capture_output=True,
        timeout=60,
    )
    env = askpass_env("gh_abcdefgh_not-the-token", tmp_path)
    options = ("-o", "PubkeyAuthentication=no", "-o", "BatchMode=no", "-o", "NumberOfPasswordPrompts=1")
    by_password = subprocess.run(
        ssh_access.ssh("true", options=options), capture_output=True, timeout=60, env=env, stdin=subprocess.DEVNULL
    )
    for result in (by_key, unknown, by_password):
        assert result.returncode == 255
        assert b"Permission denied" in result.stderr, result.stderr


def test_it_never_shows_the_upstream_key_to_the_agent_or_the_recording(ssh_access: SshAccess) -> None:
    before = last_session_id(ssh_access.gateway)
    result = ssh_access.run("echo hello")
    assert result.returncode == 0
    secret = ssh_access.sshd.client_key.read_text()
    body = "".join(line for line in secret.splitlines() if not line.startswith("-----"))
    recording = new_recording(ssh_access.gateway, before)
    text = recording.path.read_text()
    for chunk in (body[i : i + 40] for i in range(0, len(body), 40)):
        assert chunk not in text
        assert chunk.encode() not in result.stdout + result.stderr
    assert body[:40] not in ssh_access.gateway.log_text()
