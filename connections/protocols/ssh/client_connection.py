"""One agent's SSH connection to the gateway: who it is, its upstream connection, and its channels.

The SSH user name names the connection; the agent proves who it is with one
of its registered keys, or with a token as the password. An unknown
connection and a forbidden one fail alike. After login the session opens
(one recording for the whole connection) and the gateway starts its own
connection to the host at once, so the first channel does not wait for it
longer than it must. Every channel (shell, exec, sftp, forwarded streams)
rides on that one upstream connection, and each closes on its own.

Agent forwarding, X11 forwarding and remote forwarding (`ssh -R`) are refused
unless the connection allows them; the recording says what was asked for and refused.
"""

import asyncio
import logging
from dataclasses import replace
from typing import TYPE_CHECKING

import asyncssh

from .agent_forwarding import AgentRelay
from .forwarding import Forward
from .session_channel import SessionChannel
from .shell_guard import ShellGuard
from .stream_masker import StreamMasker
from .targets import SshLogin, SshTarget
from .terminal_recorder import RecordingBudget, TerminalRecorder
from .upstream import UpstreamRefused, connect_upstream

if TYPE_CHECKING:
    from .gateway import SshGateway

logger = logging.getLogger(__name__)

TERMINATE_GRACE_SECONDS = 0.2


class ClientConnection(asyncssh.SSHServer):
    """asyncssh's server callbacks for one agent connection."""

    inline_judge_chars = 2048  # longer commands are judged in a worker thread (see `judge`)

    def __init__(self, gateway: "SshGateway") -> None:
        self.gateway = gateway
        self.directory = gateway.directory
        self.conn: asyncssh.SSHServerConnection | None = None
        self.client_addr = ""
        self.connection_name = ""
        self.failed_attempts = 0
        self.login: SshLogin | None = None
        self.target: SshTarget | None = None
        self.session = None  # the directory's handle: public_id, record
        self.policy = None
        self.budget: RecordingBudget | None = None
        self.channels = 0
        self.open_channels: set[SessionChannel] = set()
        self.bytes_from_client = self.bytes_to_client = self.commands = self.errors = 0
        self.closing_status = "ended"
        self.closing_reason = ""
        self.lost = False
        self._recording: asyncio.Task | None = None
        self._upstream: asyncio.Task | None = None
        self.agent_relay: AgentRelay | None = None

    # --- connection -------------------------------------------------------------

    def connection_made(self, conn: asyncssh.SSHServerConnection) -> None:
        self.conn = conn
        peer = conn.get_extra_info("peername") or ("",)
        self.client_addr = str(peer[0])

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        if self._recording is not None and not self._recording.done():
            # Still opening: close the session once it is open, so no session stays live.
            self._recording.add_done_callback(lambda _task: self._close_session(exc))
        if self._upstream is not None:
            self._upstream.cancel()
            if self._upstream.done() and not self._upstream.cancelled() and self._upstream.exception() is None:
                self._upstream.result().close()
        if self.agent_relay is not None:
            self.agent_relay.close()
        self.gateway.forget(self)
        self._close_session(exc)

    def _close_session(self, exc: Exception | None) -> None:
        if self.session is not None:
            if exc is not None and self.closing_status == "ended":
                self.closing_reason = self.closing_reason or f"connection lost: {exc}"
            counters = {
                "statements": self.commands,
                "errors": self.errors,
                "bytes_from_client": self.bytes_from_client,
                "bytes_to_client": self.bytes_to_client,
            }
            self.directory.close_session(self.session, self.closing_status, self.closing_reason, counters)
            self.session = None

    # --- authentication -----------------------------------------------------------

    def begin_auth(self, username: str) -> bool:
        self.connection_name = username
        return True

    def public_key_auth_supported(self) -> bool:
        return True

    def password_auth_supported(self) -> bool:
        return True

    async def validate_public_key(self, username: str, key: asyncssh.SSHKey) -> bool:
        public_key = key.export_public_key("openssh").decode()
        return self._accept(await self.directory.login_by_key(username, public_key))

    async def validate_password(self, username: str, password: str) -> bool:
        return self._accept(await self.directory.login_by_token(username, password))

    def _accept(self, login: SshLogin | None) -> bool:
        if login is not None and login.granted:
            self.login = login
            return True
        self.failed_attempts += 1
        if self.failed_attempts >= self.gateway.config.max_auth_attempts:
            logger.info("ssh: %s made too many failed login attempts", self.client_addr)
            self.conn.disconnect(asyncssh.DISC_NO_MORE_AUTH_METHODS_AVAILABLE, "too many authentication failures")
        return False

    def auth_completed(self) -> None:
        """Start opening the session's recording, then the upstream connection; channels wait for them."""
        self.target = self.directory.target_for(self.login)
        self.policy = self.directory.policy_for(self.login)
        self._limit_forwarding()
        self._recording = asyncio.ensure_future(self._open_recording())
        self._upstream = asyncio.ensure_future(self._connect_upstream())
        # Channels report a failure to the agent; a connection that opens none must not log it as unretrieved.
        self._upstream.add_done_callback(lambda task: task.cancelled() or task.exception())

    def _limit_forwarding(self) -> None:
        """Narrow the listener's agent and X11 forwarding to what this connection allows.

        asyncssh grants both from connection-wide options and asks the server no callback first;
        the listener allows them (SshGateway.serve) and each connection switches off what it must
        not have. They are read when the client asks, which can only be after authentication.
        """
        conn, target = self.conn, self.target
        conn._agent_forwarding = target.agent_forwarding
        conn._x11_forwarding = target.x11_forwarding
        # asyncssh refuses what is off without telling the server; these stand-ins record the refusal first.
        if not target.agent_forwarding:
            conn.create_agent_listener = self._refuse_agent_forwarding
        if not target.x11_forwarding:
            conn.attach_x11_listener = self._refuse_x11_forwarding

    async def _refuse_agent_forwarding(self) -> bool:
        """asyncssh's create_agent_listener on a connection without agent forwarding."""
        await self.recording_opened()
        self.record("request_refused", {"request": "agent"})
        return False

    async def _refuse_x11_forwarding(self, chan: asyncssh.SSHServerChannel, *_x11_request) -> None:
        """asyncssh's attach_x11_listener on a connection without X11 forwarding: no display."""
        await self.recording_opened()
        event = {"request": "x11"}
        for channel in self.open_channels:
            if channel.chan is chan:
                event["ch"] = channel.number
        self.record("request_refused", event)

    async def _open_recording(self) -> None:
        client_version = self.conn.get_extra_info("client_version") or ""
        try:
            self.session = await self.directory.open_session(self.login, self.client_addr, str(client_version))
        except Exception:
            logger.exception("could not open a session record; refusing the connection")
            self.conn.disconnect(asyncssh.DISC_BY_APPLICATION, "Gatehouse could not record this session")
            raise
        self.budget = RecordingBudget(self.session.record, self.gateway.config.record_max_bytes)
        if not self.lost:  # a client gone meanwhile is closed by connection_lost's callback instead
            self.gateway.register(self)

    async def recording_opened(self) -> None:
        """Wait until the session is recorded: nothing a channel does may go unrecorded."""
        await asyncio.shield(self._recording)

    async def _connect_upstream(self) -> asyncssh.SSHClientConnection:
        # Shielded: cancelling this (the agent left) must not cancel the recording's opening, or its row stays live.
        await asyncio.shield(self._recording)
        config = self.gateway.config
        agent_path = await self._start_agent_relay() if self.target.agent_forwarding else None
        try:
            connection = await connect_upstream(
                self.target, config.connect_timeout, config.keepalive_seconds, agent_path=agent_path
            )
        except UpstreamRefused as exc:
            self.record("upstream_failed", {"reason": str(exc)})
            self.closing_status, self.closing_reason = "interrupted", str(exc)
            raise
        self.record("upstream", {"host": self.target.host, "port": self.target.port, "user": self.target.user})
        return connection

    async def _start_agent_relay(self) -> str:
        self.agent_relay = AgentRelay(self, self.gateway.runtime_dir / f"agent-{self.session.public_id}")
        return await self.agent_relay.start()

    async def upstream_connection(self) -> asyncssh.SSHClientConnection:
        """The gateway's connection to the host; raises UpstreamRefused if it could not be made."""
        return await asyncio.shield(self._upstream)

    # --- channels -------------------------------------------------------------------

    def session_requested(self) -> SessionChannel:
        self.channels += 1
        return SessionChannel(self, self.channels)

    def connection_requested(self, dest_host: str, dest_port: int, orig_host: str, orig_port: int):
        """direct-tcpip (`ssh -L`): only to destinations the connection allows."""
        return self._forward_from_host(dest_host, dest_port)

    async def _forward_from_host(self, dest_host: str, dest_port: int):
        await self.recording_opened()
        if not self.target.allows_forwarding_to(dest_host, dest_port):
            self.record("forward_refused", {"host": dest_host, "port": dest_port})
            raise asyncssh.ChannelOpenError(
                asyncssh.OPEN_ADMINISTRATIVELY_PROHIBITED,
                f"Gatehouse: forwarding to {dest_host}:{dest_port} is not allowed on this connection",
            )
        self.channels += 1
        return await Forward(self, self.channels, dest_host, dest_port).open_from_host()

    def server_requested(self, listen_host: str, listen_port: int):
        """Remote forwarding (`ssh -R`): the host listens for the client, only on addresses the connection allows."""
        return self._listen_on_host(listen_host, listen_port)

    async def _listen_on_host(self, listen_host: str, listen_port: int) -> asyncssh.SSHListener | bool:
        await self.recording_opened()
        event = {"remote": True, "host": listen_host, "port": listen_port}
        if not self.target.allows_listening_on(listen_host, listen_port):
            self.record("forward_refused", event)
            return False
        listener = None

        def forward_to_client(orig_host: str, orig_port: int):
            # The port the host chose, when the client asked for any (`-R 0:...`): the client knows it by that.
            self.channels += 1
            forward = Forward(self, self.channels, listen_host, listener.get_port(), remote=True)
            return forward.open_to_client(orig_host, orig_port)

        try:
            connection = await self.upstream_connection()
            listener = await connection.create_server(forward_to_client, listen_host, listen_port, encoding=None)
        except UpstreamRefused:
            return False
        except (asyncssh.ChannelListenError, asyncssh.Error, OSError) as exc:  # refused, or the host went away
            self.record("listen_failed", {**event, "reason": str(exc) or type(exc).__name__})
            return False
        self.record("listen", {**event, "port": listener.get_port()})
        return listener

    # --- what channels use ---------------------------------------------------------

    def record(self, kind: str, data: object) -> None:
        if self.session is not None:
            self.session.record(kind, data)

    def terminal_recorder(self, number: int) -> TerminalRecorder:
        return TerminalRecorder(self.budget, number)

    @property
    def masks_output(self) -> bool:
        """Whether the policy's content detectors apply to terminal output."""
        return self.policy is not None and bool(self.policy.detector_rules)

    def new_masker(self) -> StreamMasker:
        """A masker for one output stream of one channel (see masks_output)."""
        return StreamMasker(self.policy.detector_rules, self.policy.hash_key)

    def mask_text(self, text: str) -> str:
        return self.policy.mask_text(text) if self.policy is not None else text

    @property
    def judges_commands(self) -> bool:
        """Whether the policy has anything to say about commands."""
        return self.policy is not None and self.policy.judges_commands

    def shell_guard(self, channel: SessionChannel) -> ShellGuard:
        """Records an interactive shell's lines, and judges them on Enter whenever a policy judges commands.

        Every shell has one, policy or not, so a policy attached while it runs applies from its next line.
        """
        return ShellGuard(channel, self)

    def check(self, command: str, channel: int, source: str, uncertain: bool = False):
        """Record a short command and the policy's verdict on it (None without a policy); no review here."""
        self._record_command(command, channel, source, uncertain)
        if self.policy is None:
            return None
        return self._record_verdict(self.policy.check_command(command, uncertain), channel)

    async def judge(self, command: str, channel: int, source: str, uncertain: bool = False):
        """Record a command and the policy's final verdict on it, after review if it needs one; None without a policy.

        A long command is parsed off the event loop: the shell parser takes about 20 µs a character,
        and other sessions must not wait for it.
        """
        if len(command) <= self.inline_judge_chars or self.policy is None:
            verdict = self.check(command, channel, source, uncertain)
        else:
            self._record_command(command, channel, source, uncertain)
            verdict = await asyncio.to_thread(self.policy.check_command, command, uncertain)
            self._record_verdict(verdict, channel)
        if verdict is not None and verdict.action == "review":
            verdict = await self.review(verdict)
        return verdict

    async def judge_blind_shell(self, channel: int):
        """The final verdict on a shell without a terminal, whose commands come from input no editor follows."""
        self._record_command("", channel, "shell without a terminal")
        verdict = self._record_verdict(self.policy.check_blind_shell(), channel)
        return await self.review(verdict) if verdict.action == "review" else verdict

    def _record_command(self, command: str, channel: int, source: str, uncertain: bool = False) -> None:
        self.commands += 1
        event = {"ch": channel, "text": self.mask_text(command), "source": source}
        if uncertain:
            event["uncertain"] = True  # the gateway could not see the whole line (history, completion)
        self.record("command", event)

    def _record_verdict(self, verdict, channel: int):
        decision = {"action": verdict.action, "rule": verdict.rule, "message": verdict.message}
        self.record("policy", {"ch": channel, **decision})
        if verdict.action == "deny":
            self.errors += 1
        return verdict

    async def review(self, verdict):
        """Hold a command until reviewers decide; the final verdict is allow or deny.

        Reviewers see the command as the recording has it: masked.
        """
        verdict = await self.directory.review(
            self.session, replace(verdict, statement=self.mask_text(verdict.statement))
        )
        if verdict.action != "allow":
            self.errors += 1
        return verdict

    def terminate(self, reason: str) -> None:
        """End the agent's connection now (a reviewer's terminate, an expired grant, shutdown).

        Each open channel tells the agent why on stderr first; the disconnect follows a moment later,
        since asyncssh drops what is still unsent when it disconnects.
        """
        self.closing_status, self.closing_reason = "terminated", reason
        for channel in list(self.open_channels):
            channel.end(f"Gatehouse: {reason}")
        asyncio.get_running_loop().call_later(TERMINATE_GRACE_SECONDS, self._disconnect, reason)

    def _disconnect(self, reason: str) -> None:
        if not self.lost:
            self.conn.disconnect(asyncssh.DISC_BY_APPLICATION, f"Gatehouse: {reason}")
