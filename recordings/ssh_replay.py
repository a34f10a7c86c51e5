"""An SSH session's recording as its replay page shows it: what happened beside the terminal, and its channels.

An SSH session is one recording per agent connection, holding the events of
all its channels (see connections/protocols/ssh/). Terminal data ("o", "i",
"r" for channel 1, "o:N"… for channel N) is what asciinema-player replays
(recordings.replay.cast_lines); everything else (channels opened, commands,
policy decisions, reviews, file operations, transfers, forwards, exits, the
session's end) becomes one row each, with a one-line summary that live watch
uses too. A recording can be 100+ MB of terminal data: it is read line by
line, and terminal lines are recognized by their first bytes and never parsed.
"""

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from recordings.replay import TERMINAL_EVENT, describe_event, parse_event

# Rows kept for the page; the events after them are only counted.
ROW_LIMIT = 2000
SUMMARY_CHARS = 300
MIB = 1 << 20
_LINE_BREAKS = re.compile(r"\r\n|\n|\r")


@dataclass
class EventSummary:
    """What a row shows of one SSH event: a pill label, a one-line text, the pill's tone, and a tooltip."""

    label: str
    text: str
    tone: str = ""
    title: str = ""


def ssh_summary(kind: str, data: Any) -> EventSummary:
    """An SSH recording's non-terminal event in one line (at most SUMMARY_CHARS; the whole line in `title`)."""
    data = data if isinstance(data, dict) else {"value": data}
    summarize = SSH_SUMMARIES.get(kind)
    summary = summarize(data) if summarize else EventSummary(kind, _key_values(data))
    text = _LINE_BREAKS.sub(" ↵ ", summary.text)  # a multi-line exec command stays on its row
    if len(text) > SUMMARY_CHARS:
        summary.title = summary.title or text[: SUMMARY_CHARS * 8]
        text = text[: SUMMARY_CHARS - 1] + "…"
    summary.text = text
    return summary


def _key_values(data: dict) -> str:
    return " ".join(f"{key}={value}" for key, value in data.items() if key != "ch")


def byte_size(value: Any) -> str:
    """A byte count as recorded ("14 B"), with MiB or KiB beside it once it is large."""
    if not isinstance(value, int):
        return "? B"
    if value >= MIB:
        return f"{value} B ({value / MIB:.1f} MiB)"
    if value >= 10 * 1024:
        return f"{value} B ({value / 1024:.1f} KiB)"
    return f"{value} B"


def mebibytes(value: Any) -> str:
    """A byte count in MiB, without a trailing ".0" ("64", "0.5")."""
    if not isinstance(value, int | float):
        return "?"
    return f"{value / MIB:.1f}".removesuffix(".0")


def _channel_opened(data: dict) -> EventSummary:
    kind = str(data.get("type", ""))
    extras = []
    if data.get("term") or data.get("width"):
        extras.append(f"{data.get('term', 'pty')} {data.get('width', '?')}×{data.get('height', '?')}")
    extras += [name for key, name in (("x11", "X11 forwarded"), ("agent", "agent forwarded")) if data.get(key)]
    terminal = ", ".join(extras)
    if kind == "shell":
        return EventSummary("shell", "shell opened" + (f" ({terminal})" if terminal else ""))
    if kind == "exec":
        return EventSummary("exec", f"exec: {data.get('command', '')}" + (f" ({terminal})" if terminal else ""))
    if kind == "sftp":
        return EventSummary("sftp", "sftp session opened")
    return EventSummary("subsystem", f"subsystem {kind} opened")


def _command(data: dict) -> EventSummary:
    return EventSummary("command", f"{data.get('source', 'command')}: {data.get('text', '')}")


def _policy(data: dict) -> EventSummary:
    action = str(data.get("action", ""))
    tone = {"allow": "ok", "deny": "danger", "review": "warn"}.get(action, "")
    return EventSummary("policy", f"policy {action} {data.get('rule', '')}: {data.get('message', '')}", tone)


def _review(data: dict) -> EventSummary:
    status = str(data.get("status", ""))
    tone = {"approved": "ok", "pending": "warn"}.get(status, "danger")
    by = f" by {data['by']}" if data.get("by") else ""
    comment = f": {data['comment']}" if data.get("comment") else ""
    rule = f" (rule {data['rule']})" if data.get("rule") else ""
    return EventSummary("review", f"review {status}{by}{comment}{rule}", tone)


def _exit(data: dict) -> EventSummary:
    reason = f" ({data['reason']})" if data.get("reason") else ""
    if data.get("signal"):
        core = ", core dumped" if data.get("core_dumped") else ""
        return EventSummary("exit", f"killed by signal {data['signal']}{core}{reason}", "warn")
    status = data.get("status")
    return EventSummary("exit", f"exit {status}{reason}", "" if status == 0 else "warn")


def _file(data: dict) -> EventSummary:
    parts = [str(data.get("op", "?")), str(data.get("path", ""))]
    if data.get("to"):
        parts.append(f"→ {data['to']}")
    if "bytes" in data:
        parts.append(byte_size(data["bytes"]))
    sha = data.get("sha256")
    if isinstance(sha, str) and sha:
        parts.append(f"sha256 {sha[:16]}…")
    elif data.get("sequential") is False:
        parts.append("(not sequential: no hash)")
    if data.get("mode"):
        parts.append(f"mode {data['mode']}")
    if data.get("op") == "list" and "entries" in data:
        parts.append(f"{data['entries']} entries")
    if data.get("content"):
        parts.append("content kept" + (" (first bytes)" if data.get("content_truncated") else ""))
    status = str(data.get("status", "ok"))
    tone = "" if status == "ok" else "warn" if status == "incomplete" else "danger"
    if status != "ok":
        parts.append(f"— {status}" + (f": {data['message']}" if data.get("message") else ""))
    return EventSummary("file", " ".join(parts), tone, f"sha256 {sha}" if isinstance(sha, str) and sha else "")


def _transfer(data: dict) -> EventSummary:
    direction = f" {data['direction']}" if data.get("direction") else ""
    text = f"{data.get('protocol', '?')}{direction}: {data.get('files', 0)} files"
    text += f" ↑{byte_size(data.get('bytes_up'))} ↓{byte_size(data.get('bytes_down'))}"
    if data.get("skipped_packets"):
        text += f", {data['skipped_packets']} packets not parsed"
    if data.get("paths"):
        text += " " + " ".join(str(path) for path in data["paths"])
    return EventSummary("transfer", text)


def _transfer_error(data: dict) -> EventSummary:
    where = f" at {data['at']}" if data.get("at") is not None else ""
    text = f"{data.get('protocol', '?')} {data.get('direction', '')}: {data.get('error', '')}{where}"
    return EventSummary("transfer", text, "danger")


def _target(data: dict) -> str:
    return f"{data.get('host', '?')}:{data.get('port', '?')}"


def _forward_name(data: dict) -> str:
    return f"remote forward (ssh -R) {_target(data)}" if data.get("remote") else f"forward {_target(data)}"


def _forward(data: dict) -> EventSummary:
    source = f" from {data['from']}" if data.get("from") else ""
    return EventSummary("forward", f"{_forward_name(data)} opened{source}")


def _forward_closed(data: dict) -> EventSummary:
    text = f"{_forward_name(data)} ↑{byte_size(data.get('bytes_up'))} ↓{byte_size(data.get('bytes_down'))}"
    return EventSummary("forward", text)


def _forward_refused(data: dict) -> EventSummary:
    return EventSummary("forward", f"{_forward_name(data)} refused", "danger")


def _forward_failed(data: dict) -> EventSummary:
    side = "the client" if data.get("remote") else "the host"
    return EventSummary("forward", f"{_forward_name(data)} failed: {side} could not open it", "danger")


def _listen(data: dict) -> EventSummary:
    return EventSummary("forward", f"the host listens on {_target(data)} for the client (ssh -R)", "warn")


def _listen_failed(data: dict) -> EventSummary:
    text = f"the host could not listen on {_target(data)} (ssh -R): {data.get('reason', '')}"
    return EventSummary("forward", text, "danger")


REFUSABLE_REQUESTS = {"agent": "agent forwarding (ssh -A)", "x11": "X11 forwarding (ssh -X)"}


def _request_refused(data: dict) -> EventSummary:
    request = REFUSABLE_REQUESTS.get(data.get("request"), str(data.get("request", "?")))
    return EventSummary("refused", f"{request} asked for and refused: not allowed on this connection", "danger")


def _agent(data: dict) -> EventSummary:
    return EventSummary("agent", "the host used the client's forwarded SSH agent", "warn")


def _upstream(data: dict) -> EventSummary:
    return EventSummary("upstream", f"connected to {data.get('user', '?')}@{_target(data)}", "ok")


def _upstream_failed(data: dict) -> EventSummary:
    return EventSummary("upstream", f"upstream failed: {data.get('reason', '')}", "danger")


def _error(data: dict) -> EventSummary:
    return EventSummary("error", str(data.get("message", "")), "danger")


def _signal(data: dict) -> EventSummary:
    return EventSummary("signal", f"signal {data.get('signal', '?')} sent", "warn")


def _truncated(data: dict) -> EventSummary:
    text = f"terminal recording stopped at {mebibytes(data.get('limit_bytes'))} MiB (the session's cap)"
    return EventSummary("truncated", text, "warn")


def _session_end(kind: str) -> Callable[[dict], EventSummary]:
    """terminated, closed, end: as live watch says them."""

    def summarize(data: dict) -> EventSummary:
        row = describe_event(0, 0.0, kind, data)
        return EventSummary(kind, row.summary, row.tone)

    return summarize


SSH_SUMMARIES: dict[str, Callable[[dict], EventSummary]] = {
    "channel": _channel_opened,
    "command": _command,
    "policy": _policy,
    "review": _review,
    "exit": _exit,
    "file": _file,
    "transfer": _transfer,
    "transfer_error": _transfer_error,
    "forward": _forward,
    "forward_closed": _forward_closed,
    "forward_refused": _forward_refused,
    "forward_failed": _forward_failed,
    "listen": _listen,
    "listen_failed": _listen_failed,
    "agent": _agent,
    "request_refused": _request_refused,
    "upstream": _upstream,
    "upstream_failed": _upstream_failed,
    "error": _error,
    "signal": _signal,
    "truncated": _truncated,
    "terminated": _session_end("terminated"),
    "closed": _session_end("closed"),
    "end": _session_end("end"),
}


# --- the replay page ------------------------------------------------------------------

# OpenSSH's sftp stats a path before most commands: such rows are hidden unless asked for, and counted.
# A quoted "op":"stat" can only be the key and its value: quotes inside recorded strings are escaped.
_FILE_EVENT = re.compile(rb'\[[-+0-9.eE]+,"file",')
_STAT_OP = b'"op":"stat"'


@dataclass
class ActivityRow:
    """One row of the page's activity list."""

    line: int
    t: float
    channel: int | None
    kind: str  # the pill's label
    summary: str
    tone: str = ""
    title: str = ""


@dataclass
class TerminalChannel:
    """A channel with terminal data to replay, and what its "channel" event said about it."""

    number: int
    type: str = ""
    command: str = ""
    term: str = ""

    @property
    def label(self) -> str:
        """A short name for the channel selector: "shell", "exec: uname -a", or "terminal" if never described."""
        if self.type == "exec" and self.command:
            command = self.command if len(self.command) <= 40 else self.command[:39] + "…"
            return f"exec: {command}"
        return self.type or "terminal"


@dataclass
class SshActivity:
    """What the page shows of an SSH recording besides the player."""

    rows: list[ActivityRow] = field(default_factory=list)
    not_shown: int = 0  # rows past the limit
    hidden_stats: int = 0  # sftp stat operations left out (all of them, when hidden)
    channels: list[TerminalChannel] = field(default_factory=list)
    truncated_limit: int | None = None  # the session's terminal-data cap, once it was reached
    truncated_t: float | None = None

    @property
    def more(self) -> bool:
        """Whether some rows were left out for the limit."""
        return self.not_shown > 0

    @property
    def truncated(self) -> bool:
        return self.truncated_limit is not None

    @property
    def truncated_mib(self) -> str:
        return mebibytes(self.truncated_limit)

    @cached_property
    def channel_numbers(self) -> list[int]:
        return [channel.number for channel in self.channels]


class _ActivityReader:
    """Builds an SshActivity one recording line at a time."""

    def __init__(self, show_stats: bool, row_limit: int) -> None:
        self.show_stats = show_stats
        self.row_limit = row_limit
        self.activity = SshActivity()
        self.data_channels: set[bytes | None] = set()  # as the terminal kinds name them: None is channel 1
        self.opened: dict[int, dict] = {}
        self.exec_commands: dict[int, str] = {}

    def line(self, number: int, line: bytes) -> None:
        terminal = TERMINAL_EVENT.match(line)
        if terminal is not None:
            self.data_channels.add(terminal.group(2))
            return
        if not self.show_stats and _STAT_OP in line and _FILE_EVENT.match(line):
            self.activity.hidden_stats += 1
            return
        event = parse_event(number, line)
        if event is None:
            return  # a torn last line: the writer is mid-append, or died there
        data = event.data if isinstance(event.data, dict) else {"value": event.data}
        if not self._noted(event.kind, event.t, data):
            self._add_row(number, event.t, event.kind, data)

    def _noted(self, kind: str, t: float, data: dict) -> bool:
        """Keep what the summary needs; True if the event needs no row of its own."""
        channel = data.get("ch")
        if kind == "channel" and isinstance(channel, int):
            self.opened[channel] = data
            if data.get("type") == "exec":
                self.exec_commands[channel] = str(data.get("command", ""))
        elif kind == "truncated" and self.activity.truncated_limit is None:
            self.activity.truncated_limit = data.get("limit_bytes") if isinstance(data.get("limit_bytes"), int) else 0
            self.activity.truncated_t = t
        elif kind == "command" and data.get("source") == "exec" and isinstance(channel, int):
            # The exec's channel row already says this command.
            return self.exec_commands.get(channel) == data.get("text")
        return False

    def _add_row(self, number: int, t: float, kind: str, data: dict) -> None:
        if len(self.activity.rows) >= self.row_limit:
            self.activity.not_shown += 1
            return
        summary = ssh_summary(kind, data)
        channel = data.get("ch") if isinstance(data.get("ch"), int) else None
        self.activity.rows.append(
            ActivityRow(number, t, channel, summary.label, summary.text, summary.tone, summary.title)
        )

    def finish(self) -> SshActivity:
        numbers = sorted(1 if name is None else int(name) for name in self.data_channels)
        for number in numbers:
            opened = self.opened.get(number, {})
            kind, command = str(opened.get("type", "")), str(opened.get("command", ""))
            self.activity.channels.append(TerminalChannel(number, kind, command, str(opened.get("term", ""))))
        return self.activity


def read_activity(path: Path, show_stats: bool = False, row_limit: int = ROW_LIMIT) -> SshActivity:
    """An SSH recording's rows (at most `row_limit`), its terminal channels, and whether it was truncated.

    Reads the whole file once, streaming: terminal data is skipped unparsed. sftp `stat`
    operations are counted and left out unless `show_stats`.
    """
    reader = _ActivityReader(show_stats, row_limit)
    with Path(path).open("rb") as handle:
        handle.readline()  # the header
        for number, line in enumerate(handle, start=1):
            reader.line(number, line)
    return reader.finish()
