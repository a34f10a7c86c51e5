"""One session channel (shell, exec or sftp) relayed between the agent and the upstream host.

`SessionChannel` is the agent-facing side (an asyncssh server session) and
`UpstreamSide` the host-facing side (a client session on the gateway's own
connection). Each side's callbacks drive the other: data, EOF, signals,
window changes, exit status and exit signal pass through, and each side's
write buffer filling up pauses reading on the other, so a slow reader slows
the writer instead of growing memory.

States: REQUESTED (pty, env, shell/exec/subsystem being asked for) →
STARTING (the command judged, held for review, the upstream channel being
opened; the agent's input waits, reading paused) → OPEN → CLOSED. An exec
(or an sftp session, judged as the program `sftp`) that the policy denies
never reaches the host: the agent gets the reason on stderr and exit status
126, as a shell gives for a command it may not run.
"""

import asyncio
import contextlib
import enum
import logging
from collections import deque
from typing import TYPE_CHECKING

import asyncssh

from .file_transfer import TransferTap, transfer_kind
from .upstream import UpstreamRefused

if TYPE_CHECKING:
    from .client_connection import ClientConnection

logger = logging.getLogger(__name__)

DENIED_EXIT_STATUS = 126
UPSTREAM_FAILED_EXIT_STATUS = 255  # what OpenSSH's own client exits with when the connection fails
# Variables an agent may pass on to the host; the host's AcceptEnv decides too.
ENV_ALLOWLIST = ("LANG", "LC_", "TZ", "TERM")


class State(enum.Enum):
    REQUESTED = "requested"
    STARTING = "starting"
    OPEN = "open"
    CLOSED = "closed"


def allowed_env(env: dict) -> dict:
    """The agent's environment variables that may reach the host."""
    return {name: value for name, value in env.items() if str(name).startswith(ENV_ALLOWLIST)}


class SessionChannel(asyncssh.SSHServerSession):
    """The agent's side of one session channel."""

    def __init__(self, owner: "ClientConnection", number: int) -> None:
        self.owner = owner
        self.number = number
        self.state = State.REQUESTED
        self.chan: asyncssh.SSHServerChannel | None = None
        self.upstream: asyncssh.SSHClientChannel | None = None
        self.kind = ""  # "shell", "exec" or "subsystem"
        self.command: str | None = None
        self.subsystem: str | None = None
        self.pty: tuple[str, tuple, dict] | None = None
        self.recorder = None  # the channel's TerminalRecorder, once the session is recorded
        self.masks: dict = {}  # output stream (None: stdout, 1: stderr) -> its StreamMasker, under a masking policy
        self.mask_timers: dict = {}
        self.shell_guard = None  # set for a shell under a policy: judges each line on Enter
        self.tap: TransferTap | None = None  # sftp, scp and rsync: file operations instead of terminal data
        self.pending: deque = deque()  # input held behind a decision
        self.early_input: list[bytes] = []
        self.eof_pending = False  # the agent's EOF, waiting for the channel to open or held input to drain
        self.exit_status: int | None = None
        self.exit_signal: tuple | None = None
        self._start_task: asyncio.Task | None = None
        self._paused_for_decision = False

    # --- requests (before the session starts) ---------------------------------

    def connection_made(self, chan: asyncssh.SSHServerChannel) -> None:
        self.chan = chan
        self.owner.open_channels.add(self)

    def pty_requested(self, term_type: str, term_size: tuple, term_modes: dict) -> bool:
        self.pty = (term_type, term_size, term_modes)
        return True

    def shell_requested(self) -> bool:
        self.kind = "shell"
        return True

    def exec_requested(self, command: str) -> bool:
        self.kind, self.command = "exec", command
        return True

    def subsystem_requested(self, subsystem: str) -> bool:
        if subsystem != "sftp":
            logger.info("refused subsystem %r", subsystem)
            return False
        self.kind, self.subsystem = "subsystem", subsystem
        return True

    def session_started(self) -> None:
        self.state = State.STARTING
        self.chan.pause_reading()  # the agent's input waits until the host's channel is open
        self._start_task = asyncio.ensure_future(self._start())
        self._start_task.add_done_callback(self._started)

    def _started(self, task: asyncio.Task) -> None:
        if task.cancelled() or task.exception() is None:
            return
        logger.error("ssh: channel %d failed to start", self.number, exc_info=task.exception())
        self._fail("the gateway failed to start this channel")

    # --- starting ---------------------------------------------------------------

    async def _start(self) -> None:
        await self.owner.recording_opened()
        self.recorder = self.owner.terminal_recorder(self.number)
        self._record_open()
        verdict = await self._judge_start()
        if verdict is not None and verdict.action != "allow":
            self._refuse(verdict.message)
            return
        try:
            await self._open_upstream()
        except UpstreamRefused as exc:
            self._fail(str(exc))
            return
        except asyncssh.ChannelOpenError as exc:
            self._fail(f"the upstream host refused the channel: {exc.reason}")
            return
        self.state = State.OPEN
        for data in self.early_input:
            self.data_received(data, None)
        self.early_input.clear()
        self._forward_eof_when_drained()
        self.chan.resume_reading()

    async def _judge_start(self):
        """The verdict that lets the channel open, or None: on an exec's command, an sftp session
        (as the program `sftp`), or a shell without a terminal (it will read commands unseen)."""
        if self.kind == "exec":
            return await self.owner.judge(self.command, self.number, "exec")
        if self.kind == "subsystem" and self.owner.judges_commands:
            # Judged like a command, so that a policy's default and its `programs: [sftp]` rules
            # govern file transfer too: sftp must not be a way around them (scp and rsync run as execs).
            return await self.owner.judge(self.subsystem, self.number, "subsystem")
        if self.kind == "shell" and self.pty is None and self.owner.judges_commands:
            # `ssh host < script`: the shell reads its commands from input with no line editing to follow.
            return await self.owner.judge_blind_shell(self.number)
        return None

    async def _open_upstream(self) -> None:
        connection = await self.owner.upstream_connection()
        options = {"env": allowed_env(dict(self.chan.get_environment())), "encoding": None}
        if self.pty is not None:
            term_type, term_size, term_modes = self.pty
            options.update(request_pty="force", term_type=term_type, term_size=term_size, term_modes=term_modes)
        else:
            options["request_pty"] = False
        if self.kind == "subsystem":
            options["subsystem"] = self.subsystem
        display = self.chan.get_x11_display()
        if display is not None:  # granted only on connections that allow X11 (ClientConnection._limit_forwarding)
            x11_auth_path = self.owner.gateway.x11_auth_path
            options.update(x11_forwarding="ignore_failure", x11_display=display, x11_auth_path=x11_auth_path)
        self.upstream, _session = await connection.create_session(
            lambda: UpstreamSide(self), self.command if self.kind == "exec" else None, **options
        )

    def _record_open(self) -> None:
        event = {"ch": self.number, "type": self.subsystem or self.kind}
        if self.command is not None:
            event["command"] = self.owner.mask_text(self.command)
        if self.pty is not None:
            term_type, (width, height, *_), _modes = self.pty
            event.update(term=term_type, width=width, height=height)
        if self.chan.get_x11_display() is not None:
            event["x11"] = True
        if self.chan.get_agent_path() is not None:
            event["agent"] = True
        self.owner.record("channel", event)
        kind = transfer_kind(self.kind, self.subsystem, self.command)
        if kind:
            self.tap = TransferTap(
                kind, self.number, self.owner.record, self.owner.target.record_file_content, self.command
            )
        elif self.pty is not None:
            self.recorder.resize(width, height)
            self.shell_guard = self.owner.shell_guard(self) if self.kind == "shell" else None
        if self.tap is None and self.owner.masks_output:
            self.masks = {None: self.owner.new_masker(), asyncssh.EXTENDED_DATA_STDERR: self.owner.new_masker()}

    def end(self, message: str) -> None:
        """The gateway ends this channel (the session is being terminated): tell the agent, close both sides."""
        if self.upstream is not None:
            self.upstream.close()
        if self.state is not State.CLOSED:
            self._close_with_message(message, UPSTREAM_FAILED_EXIT_STATUS)

    def _refuse(self, message: str) -> None:
        """A denied exec or sftp session: the reason on stderr, exit status 126, and the host never sees it."""
        self._close_with_message(message, DENIED_EXIT_STATUS)

    def _fail(self, message: str) -> None:
        self.owner.record("error", {"ch": self.number, "message": message})
        self.owner.errors += 1
        self._close_with_message(f"Gatehouse: {message}", UPSTREAM_FAILED_EXIT_STATUS)

    def _close_with_message(self, message: str, status: int) -> None:
        self.state = State.CLOSED
        newline = b"\r\n" if self.pty is not None else b"\n"
        with contextlib.suppress(asyncssh.Error, OSError):
            self.chan.write_stderr(message.encode() + newline)
            self.chan.exit(status)
        self.owner.record("exit", {"ch": self.number, "status": status})

    # --- agent → host -------------------------------------------------------------

    def data_received(self, data: bytes, datatype: int | None) -> None:
        if self.state is not State.OPEN:
            if self.state is not State.CLOSED:
                # Sent before the host's channel was open (reading pauses then, but what had arrived is delivered).
                self.early_input.append(data)
            return
        self.owner.bytes_from_client += len(data)
        if self.tap is not None:
            self.tap.from_client(data)
        elif self.shell_guard is not None:
            self.pending.extend(self.shell_guard.feed(data))
            self.drain()
            return
        else:
            self.recorder.input(data)
        self.upstream.write(data)

    def drain(self) -> None:
        """Forward held-back shell input up to the next line that needs a decision."""
        while self.pending and self.state is State.OPEN and not self.shell_guard.holding:
            piece = self.pending.popleft()
            if isinstance(piece, bytes):
                self.recorder.input(piece)
                self.upstream.write(piece)
            else:
                self.shell_guard.enter(piece)
        self._forward_eof_when_drained()
        # Pause reading only on the change, so as not to undo a pause for flow control.
        if self.shell_guard.holding != self._paused_for_decision:
            self._paused_for_decision = self.shell_guard.holding
            (self.chan.pause_reading if self._paused_for_decision else self.chan.resume_reading)()

    def send_upstream(self, data: bytes) -> None:
        """Input decided by the shell guard: an allowed Enter, or the Ctrl-C that replaces a denied one."""
        if self.state is not State.OPEN:
            return
        self.recorder.input(data)
        self.upstream.write(data)

    def tell_agent(self, message: str) -> None:
        """A line from the gateway on the agent's terminal (it is recorded as output too)."""
        if self.state is State.CLOSED:
            return
        data = f"\r\n{message}\r\n".encode()
        self.recorder.output(data)
        self.chan.write(data)

    def eof_received(self) -> bool:
        self.eof_pending = True
        self._forward_eof_when_drained()
        return True  # half-closed: the host may still answer

    def _forward_eof_when_drained(self) -> None:
        """Pass the agent's EOF on once the host has all input before it, held lines included."""
        if not self.eof_pending or self.state is not State.OPEN or self.pending:
            return
        if self.shell_guard is not None and self.shell_guard.holding:
            return
        self.eof_pending = False
        self.upstream.write_eof()

    def signal_received(self, signal: str) -> None:
        self.owner.record("signal", {"ch": self.number, "signal": signal})
        if self.upstream is not None:
            self.upstream.send_signal(signal)

    def break_received(self, msec: int) -> bool:
        if self.upstream is not None:
            self.upstream.send_break(msec)
        return True

    def terminal_size_changed(self, width: int, height: int, pixwidth: int, pixheight: int) -> None:
        if self.recorder is not None:
            self.recorder.resize(width, height)
        if self.upstream is not None:
            self.upstream.change_terminal_size(width, height, pixwidth, pixheight)

    def pause_writing(self) -> None:
        if self.upstream is not None:
            self.upstream.pause_reading()

    def resume_writing(self) -> None:
        if self.upstream is not None:
            self.upstream.resume_reading()

    def connection_lost(self, exc: Exception | None) -> None:
        """The agent closed the channel (or the connection went): close the host's side, withdraw a review."""
        self.state = State.CLOSED
        self.owner.open_channels.discard(self)
        if self._start_task is not None and not self._start_task.done():
            self._start_task.cancel()
        if self.upstream is not None:
            self.upstream.close()
        if self.shell_guard is not None:
            self.shell_guard.close()
        if self.tap is not None:
            self.tap.close()
        for timer in self.mask_timers.values():
            timer.cancel()

    # --- host → agent -------------------------------------------------------------

    def output(self, data: bytes, datatype: int | None) -> None:
        if self.tap is not None:
            self.tap.from_host(data, datatype)
        else:
            if self.masks:
                data = self._mask(data, datatype)
            self.recorder.output(data)
        self._write(data, datatype)

    def _mask(self, data: bytes, datatype: int | None) -> bytes:
        """Mask one stream's output; what the masker holds back goes out when no more comes for a moment."""
        masker = self.masks[datatype]
        data = masker.feed(data)
        timer = self.mask_timers.pop(datatype, None)
        if timer is not None:
            timer.cancel()  # more output came: the hold starts again, so a secret is not cut in two
        if masker.holding:
            loop = asyncio.get_running_loop()
            self.mask_timers[datatype] = loop.call_later(masker.hold_seconds, self.flush_masks, datatype)
        return data

    def flush_masks(self, *datatypes: int | None) -> None:
        """Release what the maskers of these streams (default: all) hold back."""
        for datatype in datatypes or tuple(self.masks):
            self.mask_timers.pop(datatype, None)
            masker = self.masks[datatype]
            if masker.holding and self.state is not State.CLOSED:
                data = masker.flush()
                self.recorder.output(data)
                self._write(data, datatype)

    def _write(self, data: bytes, datatype: int | None) -> None:
        if not data:
            return
        self.owner.bytes_to_client += len(data)
        if datatype == asyncssh.EXTENDED_DATA_STDERR:
            self.chan.write_stderr(data)
        else:
            self.chan.write(data)

    def upstream_eof(self) -> None:
        self.flush_masks()
        if self.state is not State.CLOSED:
            self.chan.write_eof()

    def upstream_closed(self, exc: Exception | None) -> None:
        """The host closed the channel: record how it ended, and pass its exit status or signal on."""
        self.flush_masks()
        if self.tap is not None:
            self.tap.close()
        reason = ""
        if self.exit_signal is None and self.exit_status is None:
            reason = f"the upstream host closed the channel{f': {exc}' if exc else ''}"
        self.owner.record("exit", self._exit_event(reason))  # even if the agent closed first, as a mux client may
        if self.state is not State.CLOSED:
            self.state = State.CLOSED
            with contextlib.suppress(asyncssh.Error, OSError):
                self._pass_exit(reason)

    def _exit_event(self, reason: str) -> dict:
        event: dict = {"ch": self.number}
        if self.exit_signal is not None:
            event.update(signal=self.exit_signal[0], core_dumped=self.exit_signal[1])
        elif reason:
            event.update(status=UPSTREAM_FAILED_EXIT_STATUS, reason=reason)
        else:
            event["status"] = self.exit_status
        return event

    def _pass_exit(self, reason: str) -> None:
        if self.exit_signal is not None:
            self.chan.exit_with_signal(*self.exit_signal)
        elif reason:
            self.chan.write_stderr(f"Gatehouse: {reason}\n".encode())
            self.chan.exit(UPSTREAM_FAILED_EXIT_STATUS)
        else:
            self.chan.exit(self.exit_status)


class UpstreamSide(asyncssh.SSHClientSession):
    """The host's side of one session channel: everything goes to its SessionChannel."""

    def __init__(self, channel: SessionChannel) -> None:
        self.channel = channel

    def data_received(self, data: bytes, datatype: int | None) -> None:
        self.channel.output(data, datatype)

    def eof_received(self) -> bool:
        self.channel.upstream_eof()
        return True

    def exit_status_received(self, status: int) -> None:
        self.channel.exit_status = status

    def exit_signal_received(self, signal: str, core_dumped: bool, msg: str, lang: str) -> None:
        self.channel.exit_signal = (signal, core_dumped, msg, lang)

    def pause_writing(self) -> None:
        self.channel.chan.pause_reading()

    def resume_writing(self) -> None:
        self.channel.chan.resume_reading()

    def connection_lost(self, exc: Exception | None) -> None:
        self.channel.upstream_closed(exc)
