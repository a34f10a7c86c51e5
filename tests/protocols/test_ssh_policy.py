"""SSH commands under a policy, with the real OpenSSH client: exec deny and review, shell lines, masking.

Each test attaches its own policy to its own connection on the shared node
(`policies apply`), so tests do not see each other's rules.
"""

import subprocess
import threading
from pathlib import Path

import pexpect

from tests.policy.command_corpus import EVASIONS
from tests.protocols.nodes import poll, unique_name
from tests.protocols.ssh_nodes import SshAccess, add_ssh_connection, last_session_id, new_recording
from tests.protocols.test_pg_review import pending_review
from tests.protocols.test_ssh_channels import PROMPT, spawn_shell

GUARD = """
policies:
  - name: {name}
    connections: [{connection}]
    default: allow
    unparseable: deny
    opaque: {opaque}
    guardrails:
      - name: no-rm
        match: {{programs: [rm, shred]}}
        action: deny
        message: use trash-put
      - name: hold-reboots
        match: {{programs: [reboot, shutdown]}}
        action: review
        timeout: 30
    masking:
      - name: pii
        detectors: [email, aws_key]
        style: full
"""


def under_policy(ssh_access: SshAccess, tmp_path: Path, template: str, **fields: str) -> SshAccess:
    """A new connection to the test sshd under the policy `template` formats to."""
    access = add_ssh_connection(ssh_access, unique_name("guarded"))
    policy = tmp_path / "policy.yaml"
    policy.write_text(template.format(name=unique_name("ssh-policy"), connection=access.connection, **fields))
    ssh_access.gateway.manage("policies", "apply", str(policy), check=True)
    return access


def guarded(ssh_access: SshAccess, tmp_path: Path, opaque: str = "review") -> SshAccess:
    """A new connection to the test sshd under the GUARD policy."""
    return under_policy(ssh_access, tmp_path, GUARD, opaque=opaque)


def test_it_denies_an_exec_with_exit_126_and_the_reason_before_the_host_sees_it(
    ssh_access: SshAccess, tmp_path: Path
) -> None:
    access = guarded(ssh_access, tmp_path)
    victim = tmp_path / "victim"
    victim.write_text("keep me")
    before = last_session_id(ssh_access.gateway)
    result = access.run(f"echo hi && FOO=1 /bin/rm -f {victim}")
    assert result.returncode == 126
    assert b'Gatehouse denied this command: rule "no-rm"' in result.stderr
    assert b"use trash-put" in result.stderr
    assert result.stdout == b""  # nothing ran, not even the harmless first half
    assert victim.read_text() == "keep me"
    recording = new_recording(ssh_access.gateway, before)
    assert recording.data("policy")[0]["action"] == "deny"
    assert recording.data("exit") == [{"ch": 1, "status": 126}]


def test_it_catches_every_evasion_of_the_corpus_through_real_ssh(ssh_access: SshAccess, tmp_path: Path) -> None:
    access = guarded(ssh_access, tmp_path)
    for case in EVASIONS[:25]:
        command = case[0] if isinstance(case, tuple) else case
        result = access.run(command)
        assert result.returncode == 126, (command, result.stderr)


def test_it_holds_an_exec_for_review_and_runs_it_once_approved(
    ssh_access: SshAccess, tmp_path: Path, ssh_reviewer: str
) -> None:
    access = guarded(ssh_access, tmp_path)
    gateway = ssh_access.gateway
    outcome: dict = {}
    # `reboot --help` exits at once without rebooting anything; the rule only looks at the program.
    runner = threading.Thread(target=lambda: outcome.update(result=access.run("reboot --help >/dev/null; echo ran")))
    runner.start()
    gateway.manage("reviews", "approve", pending_review(gateway, "hold-reboots"), "--as", ssh_reviewer, check=True)
    runner.join(60)
    assert outcome["result"].returncode == 0, outcome["result"].stderr
    assert outcome["result"].stdout == b"ran\n"


def test_it_masks_secrets_in_exec_output_and_its_recording(ssh_access: SshAccess, tmp_path: Path) -> None:
    access = guarded(ssh_access, tmp_path)
    before = last_session_id(ssh_access.gateway)
    result = access.run("printf 'mail: bot@example.com key: AKIAIOSFODNN7EXAMPLE\\n'")
    assert result.returncode == 0
    assert b"bot@example.com" not in result.stdout and b"AKIAIOSFODNN7EXAMPLE" not in result.stdout
    assert result.stdout.startswith(b"mail: ")
    text = new_recording(ssh_access.gateway, before).path.read_text()
    assert "bot@example.com" not in text and "AKIAIOSFODNN7EXAMPLE" not in text


def test_it_replaces_a_denied_shell_line_with_ctrl_c(ssh_access: SshAccess, tmp_path: Path) -> None:
    access = guarded(ssh_access, tmp_path)
    victim = tmp_path / "victim"
    victim.write_text("keep me")
    before = last_session_id(ssh_access.gateway)
    child = spawn_shell(access)
    child.sendline(f"rm -f {victim}")
    child.expect_exact('rule "no-rm"')
    child.expect_exact(PROMPT)
    child.sendline("echo after-deny")
    child.expect_exact("after-deny")
    child.sendline("exit")
    child.expect(pexpect.EOF)
    assert victim.read_text() == "keep me"
    recording = new_recording(ssh_access.gateway, before)
    decisions = [(event["action"], event["rule"]) for event in recording.data("policy")]
    assert ("deny", "no-rm") in decisions


def test_it_holds_a_shell_line_until_a_reviewer_decides(
    ssh_access: SshAccess, tmp_path: Path, ssh_reviewer: str
) -> None:
    access = guarded(ssh_access, tmp_path)
    gateway = ssh_access.gateway
    child = spawn_shell(access)
    child.sendline("shutdown --help >/dev/null 2>&1; echo decided''now")  # prints "decidednow" if it runs
    child.expect_exact("holding this command for review")
    child.sendline("echo typed-while-held")  # held behind the decision, not run before it
    review_id = pending_review(gateway, "hold-reboots")
    assert "decidednow" not in child.before
    gateway.manage("reviews", "deny", review_id, "--as", ssh_reviewer, "--comment", "not now", check=True)
    child.expect_exact("not now")
    child.expect_exact("typed-while-held")
    child.sendline("exit")
    child.expect(pexpect.EOF)
    assert "decidednow" not in child.before


def test_it_judges_a_shell_without_a_terminal_as_opaque(ssh_access: SshAccess, tmp_path: Path) -> None:
    """`ssh host < script` hands the shell commands no line editor sees: the policy's opaque action decides."""
    access = guarded(ssh_access, tmp_path, opaque="deny")
    victim = tmp_path / "victim"
    victim.write_text("keep me")
    result = subprocess.run(access.ssh(options=("-T",)), input=f"rm -f {victim}\n".encode(), capture_output=True)
    assert result.returncode == 126
    assert b"without a terminal" in result.stderr
    assert victim.read_text() == "keep me"


def test_a_policy_change_reaches_a_live_ssh_session(ssh_access: SshAccess, tmp_path: Path) -> None:
    access = add_ssh_connection(ssh_access, unique_name("later-guarded"))
    child = spawn_shell(access)
    child.sendline("echo before-policy")
    child.expect_exact("before-policy")
    policy = tmp_path / "policy.yaml"
    policy.write_text(GUARD.format(name=unique_name("ssh-guard"), connection=access.connection, opaque="review"))
    ssh_access.gateway.manage("policies", "apply", str(policy), check=True)

    def denied() -> bool:
        child.sendline(f"rm -f {tmp_path}/nothing-here")  # harmless if it runs before the policy applies
        if child.expect_exact(['rule "no-rm"', PROMPT]) == 1:
            return False
        child.expect_exact(PROMPT)  # the shell's new prompt after the Ctrl-C that replaced the Enter
        return True

    assert poll(denied, 20, interval=0.5), "the live session never came under the new policy"
    child.sendline("exit")
    child.expect(pexpect.EOF)


def test_it_masks_secrets_in_the_recorded_command(ssh_access: SshAccess, tmp_path: Path) -> None:
    access = guarded(ssh_access, tmp_path)
    before = last_session_id(ssh_access.gateway)
    result = access.run("echo AKIAIOSFODNN7EXAMPLE > /dev/null")
    assert result.returncode == 0
    text = new_recording(ssh_access.gateway, before).path.read_text()
    assert "AKIAIOSFODNN7EXAMPLE" not in text


def test_an_eof_waits_behind_shell_input_held_for_review(
    ssh_access: SshAccess, tmp_path: Path, ssh_reviewer: str
) -> None:
    access = guarded(ssh_access, tmp_path)
    gateway = ssh_access.gateway
    script = tmp_path / "script"
    script.write_text("shutdown --help >/dev/null 2>&1; echo decided''now\necho after''wards\nexit\n")
    # stdin from a file: ssh sends the whole script, then EOF, while the first line is still held.
    with script.open("rb") as stdin:
        client = subprocess.Popen(access.ssh(options=("-tt",)), stdin=stdin, stdout=subprocess.PIPE)
    gateway.manage("reviews", "approve", pending_review(gateway, "hold-reboots"), "--as", ssh_reviewer, check=True)
    output, _ = client.communicate(timeout=60)
    assert b"decidednow" in output
    assert b"afterwards" in output
    assert client.returncode == 0


NO_FILE_TRANSFER = """
policies:
  - name: {name}
    connections: [{connection}]
    default: allow
    guardrails:
      - name: no-file-transfer
        match: {{programs: [sftp, scp, rsync]}}
        action: deny
"""
ALLOW_LIST = """
policies:
  - name: {name}
    connections: [{connection}]
    default: deny
    guardrails:
      - name: read-only-tools
        match: {{programs: [ls, cat]}}
        action: allow
"""


def sftp_put(access: SshAccess, tmp_path: Path) -> tuple[subprocess.CompletedProcess, Path]:
    """`sftp -b` uploading a file into tmp_path/remote; the result, and where the file would land."""
    source, target = tmp_path / "upload", tmp_path / "remote" / "upload"
    source.write_text("payload")
    target.parent.mkdir(exist_ok=True)
    batch = tmp_path / "batch"
    batch.write_text(f"put {source} {target}\n")
    command = ["sftp", *access.scp_options(), "-b", str(batch), access.destination]
    return subprocess.run(command, capture_output=True, text=True, timeout=60), target


def test_an_sftp_session_is_judged_like_a_command(ssh_access: SshAccess, tmp_path: Path) -> None:
    access = under_policy(ssh_access, tmp_path, NO_FILE_TRANSFER)
    before = last_session_id(ssh_access.gateway)
    result, target = sftp_put(access, tmp_path)
    assert result.returncode != 0
    assert 'rule "no-file-transfer"' in result.stderr
    assert not target.exists()
    recording = new_recording(ssh_access.gateway, before)
    assert recording.data("command") == [{"ch": 1, "text": "sftp", "source": "subsystem"}]
    assert [event["action"] for event in recording.data("policy")] == ["deny"]
    assert recording.data("file") == []


def test_an_allow_list_policy_denies_sftp_unless_it_allows_it(ssh_access: SshAccess, tmp_path: Path) -> None:
    """sftp is no way around `default: deny`; the rules that guard commands allow it, or not."""
    access = under_policy(ssh_access, tmp_path, ALLOW_LIST)
    result, target = sftp_put(access, tmp_path)
    assert result.returncode != 0 and 'rule "default"' in result.stderr
    assert not target.exists()
    assert access.run("ls /").returncode == 0  # the allowed tools still run


def test_sftp_runs_where_no_rule_stops_it(ssh_access: SshAccess, tmp_path: Path) -> None:
    access = guarded(ssh_access, tmp_path)
    before = last_session_id(ssh_access.gateway)
    result, target = sftp_put(access, tmp_path)
    assert result.returncode == 0, result.stderr
    assert target.read_text() == "payload"
    recording = new_recording(ssh_access.gateway, before)
    assert [(event["action"], event["rule"]) for event in recording.data("policy")] == [("allow", "default")]
