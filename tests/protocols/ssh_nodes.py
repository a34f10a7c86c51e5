"""What the SSH tests share: a gateway node provisioned for an sshd, OpenSSH command lines, and sessions.

`provision_ssh` does as an operator would: `connections add --kind ssh` with
the sshd's upstream key and pinned host key, `agents add`, `agents add-key`
with a key made here, a token for password logins, and `agents grant`.
"""

import os
import subprocess
from dataclasses import dataclass, replace
from pathlib import Path

from tests.protocols.nodes import Recording, poll, read_recording, session_rows
from tests.support.gateway_process import HOST, GatewayProcess
from tests.support.sshd import SshServer, make_key

SSH_TIMEOUT = 60.0
PASSWORD_VAR = "GATEHOUSE_TEST_SSH_TOKEN"


@dataclass
class SshAccess:
    """How a test's clients reach one SSH connection through one gateway node."""

    gateway: GatewayProcess
    sshd: SshServer
    connection: str
    agent: str
    agent_key: Path
    token: str
    known_hosts: Path

    def options(self, *extra: str, key: Path | None = None) -> list[str]:
        """OpenSSH options for the gateway: no user config, the gateway's host key pinned, the agent's key.

        `extra` come first: for OpenSSH the first value given for an option wins.
        """
        return [
            *extra,
            *("-F", "/dev/null", "-o", f"UserKnownHostsFile={self.known_hosts}", "-o", "StrictHostKeyChecking=yes"),
            *("-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes", "-o", "ConnectTimeout=20"),
            *("-i", str(key or self.agent_key)),
        ]

    @property
    def destination(self) -> str:
        return f"{self.connection}@{HOST}"

    def ssh(self, *args: str, options: tuple[str, ...] = ()) -> list[str]:
        """`ssh` through the gateway: ssh [options] -p PORT connection@host ARGS."""
        return ["ssh", *self.options(*options), "-p", str(self.gateway.ssh_port), self.destination, *args]

    def run(self, *args: str, timeout: float = SSH_TIMEOUT, **kwargs) -> subprocess.CompletedProcess:
        """Run `ssh ... ARGS` to completion, capturing bytes."""
        return subprocess.run(self.ssh(*args), capture_output=True, timeout=timeout, **kwargs)

    def scp_options(self) -> list[str]:
        return [*self.options(), "-P", str(self.gateway.ssh_port)]

    def remote(self, path: str | Path) -> str:
        """An scp/sftp remote path through the gateway."""
        return f"{self.destination}:{path}"


def gateway_known_hosts(gateway: GatewayProcess, path: Path) -> Path:
    """A known_hosts file holding the node's SSH host key (made on its first start)."""
    key_file = gateway.data_dir / "ssh" / "host_ed25519_key"
    public = subprocess.run(["ssh-keygen", "-y", "-f", str(key_file)], capture_output=True, text=True, check=True)
    path.write_text(f"[{HOST}]:{gateway.ssh_port} {public.stdout.strip()}\n")
    return path


def add_ssh_connection(
    access: SshAccess,
    name: str,
    *options: str,
    port: int | None = None,
    known_host: str | None = None,
    pin: bool = True,
) -> SshAccess:
    """Another connection to (by default) the same sshd, granted to the same agent; an SshAccess for it.

    `options` go to `connections add` as they are (`--allow-agent-forwarding`, ...).
    """
    sshd = access.sshd
    add = ["connections", "add", name, "--kind", "ssh", "--host", sshd.host, "--port", str(port or sshd.port)]
    add += ["--user", sshd.user, "--key-file", str(sshd.client_key), *options]
    if pin:
        add += ["--known-host", known_host or sshd.host_public_key]
    access.gateway.manage(*add, check=True)
    access.gateway.manage("agents", "grant", access.agent, name, check=True)
    return replace(access, connection=name)


def provision_ssh(
    gateway: GatewayProcess,
    sshd: SshServer,
    workdir: Path,
    connection: str = "web-01",
    agent: str = "ssh-bot",
    forwarding: str = "",
    pin: bool = True,
) -> SshAccess:
    """Register sshd as CONNECTION and AGENT with a key and a token; the node must have started once."""
    add = ["connections", "add", connection, "--kind", "ssh", "--host", sshd.host, "--port", str(sshd.port)]
    add += ["--user", sshd.user, "--key-file", str(sshd.client_key)]
    if pin:
        add += ["--known-host", sshd.host_public_key]
    if forwarding:
        add += ["--allow-forwarding", forwarding]
    gateway.manage(*add, check=True)
    agent_key = make_key(workdir / f"{agent}_key", comment=agent)
    gateway.manage("agents", "add", agent, check=True)
    gateway.manage("agents", "add-key", agent, f"{agent_key}.pub", check=True)
    token = gateway.manage("agents", "token", agent, check=True).stdout.strip().splitlines()[-1].strip()
    gateway.manage("agents", "grant", agent, connection, check=True)
    known_hosts = gateway_known_hosts(gateway, workdir / f"known_hosts_{gateway.ssh_port}")
    return SshAccess(gateway, sshd, connection, agent, agent_key, token, known_hosts)


def askpass_env(secret: str, workdir: Path) -> dict[str, str]:
    """An environment in which OpenSSH reads its password from SSH_ASKPASS (the secret stays out of argv)."""
    script = workdir / "askpass.sh"
    script.write_text('#!/bin/sh\nprintf "%s\\n" "$GATEHOUSE_TEST_SSH_TOKEN"\n')
    script.chmod(0o700)
    env = dict(os.environ)
    env.update(SSH_ASKPASS=str(script), SSH_ASKPASS_REQUIRE="force", DISPLAY=":0", **{PASSWORD_VAR: secret})
    return env


def last_session_id(gateway: GatewayProcess) -> int:
    """The id of the node's newest Session row (0 if none): sessions after it are a test's own."""
    rows = session_rows(gateway)
    return rows[-1]["id"] if rows else 0


def new_ssh_sessions(gateway: GatewayProcess, after: int, count: int = 1, sealed: bool = True) -> list[dict]:
    """The SSH sessions opened after session id `after`, once `count` of them exist (and are sealed)."""

    def ready() -> list[dict] | None:
        rows = [row for row in session_rows(gateway) if row["id"] > after]
        if len(rows) < count or (sealed and any(row["status"] == "live" or not row["seal"] for row in rows)):
            return None
        return rows

    rows = poll(ready, SSH_TIMEOUT)
    assert rows, (
        f"expected {count} new session(s) after {after}: {[r for r in session_rows(gateway) if r['id'] > after]}"
    )
    return rows


def new_recording(gateway: GatewayProcess, after: int) -> Recording:
    """The recording of the one SSH session opened after `after`, once it is sealed."""
    (recording,) = new_recordings(gateway, after, 1)
    return recording


def new_recordings(gateway: GatewayProcess, after: int, count: int) -> list[Recording]:
    """The recordings of the `count` SSH sessions opened after `after`, oldest first, once they are sealed."""
    rows = new_ssh_sessions(gateway, after, count)
    assert len(rows) == count, rows
    return [read_recording(gateway, row) for row in rows]
