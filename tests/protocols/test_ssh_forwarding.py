"""Forwarding through the SSH gateway with real OpenSSH clients: -L and -W, -R, agent forwarding (-A), X11 (-Y).

Each kind is off unless the connection allows it: direct-tcpip and remote
forwarding per address, agent and X11 forwarding by a switch each. The shared
connection allows only -L to the loopback host; the others get connections
of their own.
"""

import os
import re
import socket
import struct
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.protocols.nodes import unique_name
from tests.protocols.ssh_nodes import SshAccess, add_ssh_connection, last_session_id, new_recording
from tests.support.ports import free_port, wait_for_port
from tests.support.sshd import make_key


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


# --- remote forwarding (ssh -R) ---------------------------------------------------------------


def start_remote_forward(access: SshAccess, spec: str) -> tuple[subprocess.Popen, int]:
    """`ssh -N -R spec` through the gateway; the port the host listens on, as OpenSSH reports it (or 0)."""
    tunnel = subprocess.Popen(
        access.ssh(options=("-N", "-v", "-o", "ExitOnForwardFailure=yes", "-R", spec)),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    for line in tunnel.stderr:
        # -v: "remote forward success for: listen 127.0.0.1:0, connect ..." then "Allocated port N ..."
        if match := re.search(r"Allocated port (\d+) for remote forward", line):
            threading.Thread(target=tunnel.stderr.read, daemon=True).start()  # -v goes on: keep the pipe drained
            return tunnel, int(match.group(1))
        if "remote forward failure" in line or "forwarding failed" in line:
            break
    return tunnel, 0


def test_remote_forwarding_is_refused_unless_the_connection_allows_it(
    ssh_access: SshAccess, echo_server: EchoServer
) -> None:
    before = last_session_id(ssh_access.gateway)
    tunnel, port = start_remote_forward(ssh_access, f"127.0.0.1:0:127.0.0.1:{echo_server.port}")
    assert tunnel.wait(30) == 255  # ExitOnForwardFailure
    assert port == 0
    recording = new_recording(ssh_access.gateway, before)
    assert recording.data("forward_refused") == [{"remote": True, "host": "127.0.0.1", "port": 0}]
    assert recording.data("listen") == []


def test_it_forwards_a_remote_port_on_a_connection_that_allows_it(
    ssh_access: SshAccess, echo_server: EchoServer
) -> None:
    """The host listens on a port it picks (-R 0:...); a connection to it there reaches the client's server."""
    access = add_ssh_connection(ssh_access, unique_name("reverse"), "--allow-remote-forwarding", "127.0.0.1:*")
    before = last_session_id(access.gateway)
    tunnel, port = start_remote_forward(access, f"127.0.0.1:0:127.0.0.1:{echo_server.port}")
    try:
        assert port, "the gateway did not report the port the host listens on"
        # sshd (the host) listens on 127.0.0.1:port; this test runs on the same machine.
        with socket.create_connection(("127.0.0.1", port), timeout=10) as conn, conn.makefile("rwb") as stream:
            stream.write(b"from the host\n")
            stream.flush()
            assert stream.readline() == b"echo: from the host\n"
    finally:
        tunnel.terminate()
        tunnel.wait(10)
    recording = new_recording(access.gateway, before)
    assert recording.data("listen") == [{"remote": True, "host": "127.0.0.1", "port": port}]
    (opened,) = recording.data("forward")
    assert opened["remote"] is True and opened["port"] == port and opened["from"].startswith("127.0.0.1:")
    (closed,) = recording.data("forward_closed")
    assert (closed["bytes_up"], closed["bytes_down"]) == (20, 14)  # up: what the client's server answered


def test_a_client_gone_mid_stream_closes_the_hosts_end_and_seals_the_session(
    ssh_access: SshAccess, echo_server: EchoServer
) -> None:
    access = add_ssh_connection(ssh_access, unique_name("reverse-drop"), "--allow-remote-forwarding", "127.0.0.1:*")
    before = last_session_id(access.gateway)
    tunnel, port = start_remote_forward(access, f"127.0.0.1:0:127.0.0.1:{echo_server.port}")
    assert port
    with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
        conn.sendall(b"first\n")
        assert conn.recv(64) == b"echo: first\n"
        tunnel.kill()  # no goodbye: the client's TCP connection just ends
        tunnel.wait(10)
        assert conn.recv(64) == b""  # the host's end is closed, not left hanging
    recording = new_recording(access.gateway, before)
    assert recording.data("forward_closed")[0]["bytes_up"] == len(b"echo: first\n")
    assert access.run("true").returncode == 0  # and the gateway serves the next client


def test_remote_forwarding_to_a_dead_host_fails_cleanly(ssh_access: SshAccess) -> None:
    options = ("--allow-remote-forwarding", "127.0.0.1:*")
    access = add_ssh_connection(ssh_access, unique_name("reverse-dead"), *options, port=free_port())
    before = last_session_id(access.gateway)
    tunnel, port = start_remote_forward(access, "127.0.0.1:0:127.0.0.1:9")
    assert tunnel.wait(30) == 255 and port == 0
    recording = new_recording(access.gateway, before)
    assert "unreachable" in recording.data("upstream_failed")[0]["reason"]
    assert recording.data("listen") == []
    assert ssh_access.run("true").returncode == 0  # the gateway serves the others


def test_remote_forwarding_is_refused_on_an_address_the_connection_does_not_list(ssh_access: SshAccess) -> None:
    access = add_ssh_connection(ssh_access, unique_name("reverse-one"), "--allow-remote-forwarding", "127.0.0.1:1")
    before = last_session_id(access.gateway)
    tunnel, port = start_remote_forward(access, "0.0.0.0:0:127.0.0.1:9")
    assert tunnel.wait(30) == 255 and port == 0
    recording = new_recording(access.gateway, before)
    assert recording.data("forward_refused") == [{"remote": True, "host": "0.0.0.0", "port": 0}]


# --- agent forwarding (ssh -A) ----------------------------------------------------------------


@dataclass
class Agent:
    """A running ssh-agent holding one key: what `ssh -A` forwards."""

    socket: Path
    fingerprint: str

    def env(self) -> dict[str, str]:
        return {**os.environ, "SSH_AUTH_SOCK": str(self.socket)}


@pytest.fixture
def ssh_agent(tmp_path: Path) -> Iterator[Agent]:
    sock = tmp_path / "agent.sock"
    process = subprocess.Popen(["ssh-agent", "-D", "-a", str(sock)], stdout=subprocess.DEVNULL)
    try:
        key = make_key(tmp_path / "forwarded_key", comment="forwarded-key")
        agent = Agent(sock, "")
        for _ in range(100):
            if sock.exists():
                break
            threading.Event().wait(0.05)
        subprocess.run(["ssh-add", str(key)], env=agent.env(), check=True, capture_output=True)
        listing = subprocess.run(["ssh-keygen", "-lf", f"{key}.pub"], capture_output=True, text=True, check=True)
        agent.fingerprint = listing.stdout.split()[1]
        yield agent
    finally:
        process.terminate()
        process.wait(10)


def list_agent_keys(access: SshAccess, agent: Agent, *options: str) -> subprocess.CompletedProcess:
    """`ssh [options] ... ssh-add -l`: the keys the host can see in its SSH_AUTH_SOCK."""
    command = access.ssh("ssh-add", "-l", options=options)
    return subprocess.run(command, capture_output=True, text=True, timeout=60, env=agent.env())


def test_agent_forwarding_is_refused_unless_the_connection_allows_it(ssh_access: SshAccess, ssh_agent: Agent) -> None:
    before = last_session_id(ssh_access.gateway)
    result = list_agent_keys(ssh_access, ssh_agent, "-A")
    assert result.returncode == 2, result  # ssh-add: no agent to talk to
    assert ssh_agent.fingerprint not in result.stdout
    recording = new_recording(ssh_access.gateway, before)
    (channel,) = recording.data("channel")
    assert "agent" not in channel and recording.data("agent") == []
    assert recording.data("request_refused") == [{"request": "agent"}]  # an auditor sees that it asked


def test_the_host_uses_the_forwarded_agent_on_a_connection_that_allows_it(
    ssh_access: SshAccess, ssh_agent: Agent
) -> None:
    access = add_ssh_connection(ssh_access, unique_name("agent-fwd"), "--allow-agent-forwarding")
    before = last_session_id(access.gateway)
    result = list_agent_keys(access, ssh_agent, "-A")
    assert result.returncode == 0, result
    assert ssh_agent.fingerprint in result.stdout and "forwarded-key" in result.stdout
    recording = new_recording(access.gateway, before)
    (channel,) = recording.data("channel")
    assert channel["agent"] is True
    assert recording.data("agent") == [{"use": 1}]
    assert recording.data("request_refused") == []


def test_an_agent_not_forwarded_by_the_client_stays_out_of_reach(ssh_access: SshAccess, ssh_agent: Agent) -> None:
    """The connection allows forwarding, but this client did not ask (-a): the host's requests go nowhere.

    The host still has an SSH_AUTH_SOCK (the gateway's connection to it forwards agents for every
    channel), so ssh-add reaches a socket, and fails there.
    """
    access = add_ssh_connection(ssh_access, unique_name("agent-off"), "--allow-agent-forwarding")
    before = last_session_id(access.gateway)
    result = list_agent_keys(access, ssh_agent, "-a")
    assert result.returncode == 1 and "communication with agent failed" in result.stderr, result
    assert ssh_agent.fingerprint not in result.stdout
    recording = new_recording(access.gateway, before)
    assert recording.data("agent") == []


# --- X11 forwarding (ssh -Y) ------------------------------------------------------------------

# Run on the host: open $DISPLAY with the cookie sshd stored for it, as an X client does, and print the reply.
X11_CLIENT = """
import os, socket, struct, subprocess
host, _, rest = os.environ["DISPLAY"].rpartition(":")
number = rest.split(".")[0]
listing = subprocess.run(["xauth", "list"], capture_output=True, text=True).stdout
entries = [line.split() for line in listing.splitlines()]
cookie = next(entry[2] for entry in entries if entry and entry[0].endswith(":" + number))
name, data = b"MIT-MAGIC-COOKIE-1", bytes.fromhex(cookie)
setup = b"l\\0" + struct.pack("<HHHH2x", 11, 0, len(name), len(data)) + name + b"\\0\\0" + data
with socket.create_connection((host or "localhost", 6000 + int(number)), timeout=10) as conn:
    conn.sendall(setup)
    print("reply:", conn.recv(64).decode())
"""


class FakeXServer:
    """Listens as X display 127.0.0.1:N and answers a connection setup: "granted" for its own cookie only."""

    def __init__(self, root: Path) -> None:
        self.cookie = os.urandom(16)
        self.listener, self.display = self._listen()
        self.authority = root / "client-Xauthority"
        cookie = self.cookie.hex()
        add = ["xauth", "-f", str(self.authority), "add", self.display, "MIT-MAGIC-COOKIE-1", cookie]
        subprocess.run(add, check=True, capture_output=True)
        self.cookies_seen: list[bytes] = []
        threading.Thread(target=self._serve, daemon=True).start()

    @staticmethod
    def _listen() -> tuple[socket.socket, str]:
        for number in range(50, 100):
            try:
                return socket.create_server(("127.0.0.1", 6000 + number)), f"127.0.0.1:{number}"
            except OSError:
                continue
        raise RuntimeError("no free X display number")

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            with conn:
                header = conn.recv(12, socket.MSG_WAITALL)
                name_length, data_length = struct.unpack("<6xHH2x", header)
                padded = (name_length + 3) // 4 * 4
                body = conn.recv(padded + data_length, socket.MSG_WAITALL)
                self.cookies_seen.append(body[padded : padded + data_length])
                conn.sendall(b"granted" if self.cookies_seen[-1] == self.cookie else b"refused")

    def env(self) -> dict[str, str]:
        return {**os.environ, "DISPLAY": self.display, "XAUTHORITY": str(self.authority)}

    def close(self) -> None:
        self.listener.close()


@pytest.fixture
def x_server(tmp_path: Path) -> Iterator[FakeXServer]:
    server = FakeXServer(tmp_path)
    yield server
    server.close()


def run_x11_client(access: SshAccess, x_server: FakeXServer, tmp_path: Path) -> subprocess.CompletedProcess:
    script = tmp_path / "x11_client.py"
    script.write_text(X11_CLIENT)
    command = access.ssh("python3", str(script), options=("-Y",))
    return subprocess.run(command, capture_output=True, text=True, timeout=60, env=x_server.env())


def test_x11_forwarding_is_refused_unless_the_connection_allows_it(
    ssh_access: SshAccess, x_server: FakeXServer, tmp_path: Path
) -> None:
    before = last_session_id(ssh_access.gateway)
    result = run_x11_client(ssh_access, x_server, tmp_path)
    assert result.returncode != 0 and "reply:" not in result.stdout
    assert "X11 forwarding request failed" in result.stderr
    assert x_server.cookies_seen == []
    recording = new_recording(ssh_access.gateway, before)
    (channel,) = recording.data("channel")
    assert "x11" not in channel
    assert recording.data("request_refused") == [{"request": "x11", "ch": 1}]


def test_a_program_on_the_host_reaches_the_clients_display_on_a_connection_that_allows_x11(
    ssh_access: SshAccess, x_server: FakeXServer, tmp_path: Path
) -> None:
    """Three cookie swaps on the way (host's sshd, the gateway, the client); the display sees its own."""
    access = add_ssh_connection(ssh_access, unique_name("x11"), "--allow-x11-forwarding")
    before = last_session_id(access.gateway)
    result = run_x11_client(access, x_server, tmp_path)
    assert result.returncode == 0, result
    assert "reply: granted" in result.stdout
    assert x_server.cookies_seen == [x_server.cookie]
    recording = new_recording(access.gateway, before)
    (channel,) = recording.data("channel")
    assert channel["x11"] is True
    assert recording.data("request_refused") == []
