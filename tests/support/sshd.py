"""A throwaway OpenSSH server for tests and benchmarks: the upstream host behind the SSH gateway.

`running_sshd()` starts the system's sshd in the foreground on a free loopback
port with its own host key, its own authorized_keys (holding a key made here,
the one the gateway logs in with) and internal-sftp. It logs in as the user
running the tests; under root (CI) that is root, allowed by key only.

    with running_sshd() as sshd:
        subprocess.run(["ssh", *sshd.client_options(), "true"])
"""

import getpass
import os
import secrets
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.support.ports import free_port, wait_for_port
from tests.support.watchdog import start_watchdog, stop_watchdog

HOST = "127.0.0.1"
SSHD = "/usr/sbin/sshd"
START_TIMEOUT = 15.0


def make_key(path: Path, kind: str = "ed25519", comment: str = "gatehouse-test") -> Path:
    """ssh-keygen a passphrase-less key pair at path (and path.pub); returns path."""
    subprocess.run(
        ["ssh-keygen", "-q", "-t", kind, "-N", "", "-C", comment, "-f", str(path)],
        check=True,
        capture_output=True,
    )
    return path


class SshServer:
    """One sshd: its directory, port, host key and the key pair that may log in as `user`."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.port = free_port(HOST)
        self.host = HOST
        self.user = getpass.getuser()
        self.host_key = make_key(root / "ssh_host_ed25519_key", comment="sshd-host")
        self.client_key = make_key(root / "upstream_key", comment="gateway-upstream")
        # A canary in the upstream key's comment would not help: the private key itself is the canary.
        self.authorized_keys = root / "authorized_keys"
        shutil.copy(root / "upstream_key.pub", self.authorized_keys)
        self.config = root / "sshd_config"
        self.process: subprocess.Popen[bytes] | None = None
        self._watchdog: subprocess.Popen[bytes] | None = None

    @property
    def host_public_key(self) -> str:
        """The host key as a known_hosts-style `type base64` line (no comment)."""
        kind, blob, *_ = (self.root / "ssh_host_ed25519_key.pub").read_text().split()
        return f"{kind} {blob}"

    @property
    def xauthority(self) -> Path:
        return self.root / "Xauthority"

    @property
    def log_file(self) -> Path:
        return self.root / "sshd.log"

    def write_config(self, extra: str = "") -> None:
        self.config.write_text(
            f"Port {self.port}\nListenAddress {HOST}\nHostKey {self.host_key}\n"
            f"AuthorizedKeysFile {self.authorized_keys}\nPidFile {self.root / 'sshd.pid'}\n"
            "PasswordAuthentication no\nKbdInteractiveAuthentication no\nUsePAM no\nStrictModes no\n"
            "PermitRootLogin prohibit-password\nSubsystem sftp internal-sftp\nAllowTcpForwarding yes\n"
            "AcceptEnv LANG LC_* GATEHOUSE_TEST_*\nPrintMotd no\nPrintLastLog no\nLogLevel VERBOSE\n"
            "MaxSessions 64\nMaxStartups 200\nAllowAgentForwarding yes\nX11Forwarding yes\n"
            # sshd stores each forwarded display's cookie with xauth: here, not in the user's home.
            f"SetEnv XAUTHORITY={self.xauthority}\n" + extra
        )

    def start(self) -> None:
        self.write_config()
        if os.geteuid() == 0:
            Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # sshd's privilege separation directory
        with open(self.log_file, "ab") as log:
            self.process = subprocess.Popen(
                [SSHD, "-D", "-e", "-f", str(self.config)],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        self._watchdog = start_watchdog('kill -KILL "$1" 2>/dev/null', str(self.process.pid))
        if not wait_for_port(HOST, self.port, START_TIMEOUT, still_starting=lambda: self.process.poll() is None):
            log = self.log_file.read_text(errors="replace")
            self.stop()
            raise RuntimeError(f"sshd did not start on {HOST}:{self.port}:\n{log[-3000:]}")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        stop_watchdog(self._watchdog)
        self._watchdog = None

    def client_options(self, known_hosts: Path | None = None) -> list[str]:
        """OpenSSH client options that reach this server directly, with the upstream key."""
        known = known_hosts or self.root / "known_hosts_direct"
        if not known.exists():
            known.write_text(f"[{HOST}]:{self.port} {self.host_public_key}\n")
        return [
            *("-p", str(self.port), "-i", str(self.client_key), "-o", f"UserKnownHostsFile={known}"),
            *("-o", "StrictHostKeyChecking=yes", "-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes"),
            f"{self.user}@{HOST}",
        ]


@contextmanager
def running_sshd() -> Iterator[SshServer]:
    """An sshd for the duration of the block, in a temporary directory removed afterwards."""
    root = Path(tempfile.mkdtemp(prefix=f"gatehouse-sshd-{secrets.token_hex(3)}-"))
    server = SshServer(root)
    try:
        server.start()
        yield server
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)
