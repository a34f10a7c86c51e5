"""Judging an interactive shell's command lines on Enter.

A guard-rail, not a sandbox: the gateway rebuilds each line from the
agent's keystrokes (connections.protocols.ssh.line_editor) and judges it
when Enter is pressed. An allowed line gets its Enter; a denied one is killed
and gets a Ctrl-C instead, with the reason on the agent's terminal; a line under review
keeps its Enter, and everything typed after it, until reviewers decide. A
script, an alias or a line recalled from history can still run what no
typed line shows, which is why bots should use exec, where the whole
command is judged before the host sees it.
"""

import asyncio
import logging
from collections.abc import Awaitable
from typing import TYPE_CHECKING

from .line_editor import Enter, LineEditor

if TYPE_CHECKING:
    from .client_connection import ClientConnection
    from .session_channel import SessionChannel

logger = logging.getLogger(__name__)

INTERRUPT = b"\x03"
KILL_LINE = b"\x05\x15"  # Ctrl-E (end of line), Ctrl-U (kill to its start)
INTERRUPT_DELAY_SECONDS = 0.1
DENY_SETTLE_SECONDS = 0.5


class ShellGuard:
    """One shell channel's line editor and the decisions on its lines."""

    def __init__(self, channel: "SessionChannel", owner: "ClientConnection") -> None:
        self.channel = channel
        self.owner = owner
        self.editor = LineEditor()
        self.holding = False
        self._pending: asyncio.Task | None = None

    def feed(self, data: bytes) -> list:
        """The agent's input as pieces: bytes to forward, and Enter items to decide."""
        return self.editor.feed(data)

    def enter(self, piece: Enter) -> None:
        """Decide one line: forward its Enter, replace it with Ctrl-C, or hold it (a review, a long line)."""
        if not piece.line.strip() and not piece.uncertain:
            self.channel.send_upstream(piece.key)
            return
        number = self.channel.number
        if len(piece.line) > self.owner.inline_judge_chars:
            self._decide_later(self.owner.judge(piece.line, number, "shell", piece.uncertain), piece.key)
            return
        verdict = self.owner.check(piece.line, number, "shell", piece.uncertain)
        if verdict is None or verdict.action == "allow":
            self.channel.send_upstream(piece.key)
        elif verdict.action == "deny":
            self._deny(verdict.message)
        else:
            self.channel.tell_agent(verdict.message)
            self._decide_later(self.owner.review(verdict), piece.key)

    def _deny(self, message: str) -> None:
        """Clear the line and send Ctrl-C instead of the Enter; what the agent types next waits a moment.

        The terminal delivers Ctrl-C as a signal, apart from the input stream, and a busy shell may not
        have cleared its line when the next keys arrive: they would be added to the denied line and run
        with it. So the line is first killed in-band (End, then Ctrl-U: readline and a cooked terminal
        both drop the line), Ctrl-C follows once the shell has read that, and later keys wait longer still.
        """
        self.channel.send_upstream(KILL_LINE)
        self.channel.tell_agent(message)
        self.holding = True
        loop = asyncio.get_running_loop()
        loop.call_later(INTERRUPT_DELAY_SECONDS, self.channel.send_upstream, INTERRUPT)
        loop.call_later(DENY_SETTLE_SECONDS, self._settled)

    def _settled(self) -> None:
        self.holding = False
        self.channel.drain()

    def _decide_later(self, decision: Awaitable, key: bytes) -> None:
        """Hold the Enter, and everything typed after it, until `decision` gives the final verdict."""
        self.holding = True
        self._pending = asyncio.ensure_future(self._apply(decision, key))

    async def _apply(self, decision: Awaitable, key: bytes) -> None:
        try:
            final = await decision
        except Exception:
            logger.exception("deciding a shell line failed; denying it")
            self._deny("Gatehouse denied this command: it could not be judged")
            return
        if final is None or final.action == "allow":  # None: no policy (any more)
            self.channel.send_upstream(key)
            self._settled()
        else:
            self._deny(final.message)

    def close(self) -> None:
        if self._pending is not None and not self._pending.done():
            self._pending.cancel()  # withdraws a review
