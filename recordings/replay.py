"""Reading a recording back: the statement timeline (replay page, exports), live rows, terminal casts.

A recording is JSON Lines (recordings.chain): a header object, then events
`[t, kind, data, link]`. The PostgreSQL engine writes, per statement `n`,
one `sql` event when it starts and a `result` event per result set, with
`policy` and `review` events around them (see StatementReader for where
each one goes). Everything here streams the file line by line: a 1 GB
recording is never held in memory, and a page of statements stops reading
soon after its last statement. Values are shown as recorded: the gateway
masked them before they reached the file.
"""

import datetime
import re
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from django.template.loader import render_to_string

PAGE_SIZE = 200
# Rows kept per result set for display; the count of all recorded rows is kept beside them.
SHOWN_ROWS = 100
LIVE_SHOWN_ROWS = 20
# A statement is complete once a later one started and it has a result; one that never gets a result
# (a pipelined Execute whose answer was lost) is let go this many statements later.
PIPELINE_WINDOW = 64
TERMINAL_KINDS = ("o", "i", "r")
SESSION_KINDS = ("closed", "terminated", "end")
# A statement's number, read without parsing the whole line: the engine writes "n" first in sql and result events.
_NUMBERED = re.compile(rb'\[[-+0-9.eE]+,"(sql|result)",\{"n":(\d+)[,}]')
_TAG_COUNT = re.compile(r"^(SELECT|INSERT \d+|UPDATE|DELETE|MERGE|FETCH|MOVE|COPY) (\d+)$")
# Terminal control sequences (CSI, OSC, single-character escapes): live rows show terminal text without them.
_ANSI = re.compile(r"\x1b(\[[0-?]*[ -/]*[@-~]|\][^\x07\x1b]*(\x07|\x1b\\)|[@-Z\\-_])")
LIVE_TERMINAL_CHARS = 4000
# A terminal event, read from the line's start without parsing it (the writer writes `[t,"o",` compactly):
# its base kind and, for an SSH session's Nth channel (N > 1), N. "review" and the like do not match: `",` follows.
TERMINAL_EVENT = re.compile(rb'\[[-+0-9.eE]+,"([oir])(?::([0-9]+))?",')


@dataclass
class Event:
    """One recorded event that is not a statement's own sql or result."""

    line: int
    t: float
    kind: str
    data: Any


@dataclass
class Statement:
    """One statement `n`: its text and parameters, its result sets, and the decisions about it."""

    n: int
    t: float
    text: str
    params: list | None = None
    results: list[dict] = field(default_factory=list)
    policy: dict | None = None
    review: dict | None = None
    events: list[Event] = field(default_factory=list)

    @property
    def ms(self) -> float | None:
        """The time its result sets took, in milliseconds (None before any result)."""
        times = [result["ms"] for result in self.results if isinstance(result.get("ms"), int | float)]
        return round(sum(times), 3) if times else None

    @property
    def rows(self) -> int | None:
        """Rows returned or affected: from the command tags, else as many as were recorded."""
        counts = [_row_count(result) for result in self.results]
        counts = [count for count in counts if count is not None]
        return sum(counts) if counts else None

    @property
    def error(self) -> str:
        """The first error message of its result sets (a denial is one), or why it was cut short."""
        for result in self.results:
            error = result.get("error")
            if isinstance(error, dict):
                code = error.get("code") or error.get("sqlstate") or ""
                return f"{code}: {error.get('message', '')}" if code else str(error.get("message", ""))
            if result.get("aborted"):
                return f"aborted: {result['aborted']}"
        return ""

    @property
    def denied(self) -> bool:
        return bool(self.policy) and self.policy.get("action") == "deny"


def _row_count(result: dict) -> int | None:
    match = _TAG_COUNT.match(result.get("tag") or "")
    if match:
        return int(match.group(2))
    if "row_count" in result:
        return result["row_count"]
    for key in ("rows", "copy"):
        if isinstance(result.get(key), list):
            return len(result[key])
    return None


class StatementReader:
    """Streams a recording's statements in order of `n`, from statement `first` on.

    Iterate `statements()`; meanwhile `header`, `server_params`
    and `session_events` (startup notices, "closed", "terminated", "end",
    decisions that never reached a statement) fill in as the file is read,
    and `reached_end` tells whether it was read to the end.

    Where events go: a `policy` event carrying `n` (a denied Query) belongs
    to statement n; one without `n` (an approved or a denied Parse) and the
    `review` events (pending, then decided, both before the statement runs)
    belong to the next `sql` event, if its text is the one decided on.
    Notices, notifications and errors go to the statement that last started.
    """

    def __init__(self, path: Path, first: int = 1, keep_rows: int = SHOWN_ROWS) -> None:
        self.path = Path(path)
        self.first = max(1, first)
        self.keep_rows = keep_rows
        self.header: dict = {}
        self.server_params: dict = {}
        self.session_events: list[Event] = []
        self.reached_end = False
        self._open: OrderedDict[int, Statement] = OrderedDict()
        self._current: Statement | None = None
        self._pending_policy: Event | None = None
        self._pending_review: Event | None = None

    @property
    def kind(self) -> str:
        """What was recorded: "postgres", or "ssh" for a terminal session."""
        meta = self.header.get("gatehouse")
        return str(meta.get("kind", "postgres")) if isinstance(meta, dict) else "postgres"

    def read_header(self) -> dict:
        """Read only the header line (for pages that need the kind before anything else)."""
        with self.path.open("rb") as handle:
            self.header = _parse_header(handle.readline())
        return self.header

    def statements(self) -> Iterator[Statement]:
        with self.path.open("rb") as handle:
            self.header = _parse_header(handle.readline())
            for number, line in enumerate(handle, start=1):
                yield from self._line(number, line)
        self.reached_end = True
        yield from self._drain()

    def _line(self, number: int, line: bytes) -> Iterator[Statement]:
        numbered = _NUMBERED.match(line)
        if numbered and int(numbered.group(2)) < self.first:
            if numbered.group(1) == b"sql":  # a statement before the page: decisions pending for it are its
                self._pending_policy = self._pending_review = None
                self._current = None
            return
        event = parse_event(number, line)
        if event is None:
            return  # a torn last line: the writer is mid-append, or died there
        if event.kind == "sql":
            yield from self._on_sql(event)
        elif event.kind == "result":
            self._on_result(event)
        elif event.kind == "policy":
            self._on_policy(event)
        elif event.kind == "review":
            self._on_review(event)
        elif event.kind == "param" and isinstance(event.data, dict):
            self.server_params.update(event.data)
        elif event.kind in SESSION_KINDS:
            self.session_events.append(event)
        elif event.kind not in TERMINAL_KINDS:
            self._attach(event)

    def _on_sql(self, event: Event) -> Iterator[Statement]:
        data = event.data if isinstance(event.data, dict) else {}
        n = data.get("n")
        if not isinstance(n, int):
            self._attach(event)
            return
        text = data.get("text") or ""
        statement = Statement(n=n, t=event.t, text=text, params=data.get("params"))
        policy, self._pending_policy = self._pending_policy, None
        if policy is not None:
            decided_text = policy.data.get("text")
            if not text or decided_text in (None, text):
                statement.policy = policy.data
                statement.text = text or decided_text or ""
            else:
                self.session_events.append(policy)
        review, self._pending_review = self._pending_review, None
        if review is not None:
            statement.review = review.data
        self._current = statement
        self._open[n] = statement
        yield from self._complete_before(n)

    def _complete_before(self, n: int) -> Iterator[Statement]:
        while self._open:
            oldest = next(iter(self._open.values()))
            if oldest.n >= n or (not oldest.results and oldest.n > n - PIPELINE_WINDOW):
                return
            self._open.popitem(last=False)
            yield oldest

    def _drain(self) -> Iterator[Statement]:
        for event in (self._pending_policy, self._pending_review):
            if event is not None:
                self.session_events.append(event)
        while self._open:
            yield self._open.popitem(last=False)[1]

    def _on_result(self, event: Event) -> None:
        data = event.data if isinstance(event.data, dict) else {}
        statement = self._open.get(data.get("n"))
        if statement is not None:
            statement.results.append(_kept_rows(data, self.keep_rows))

    def _on_policy(self, event: Event) -> None:
        if not isinstance(event.data, dict):
            return
        n = event.data.get("n")
        if n is None:
            if self._pending_policy is not None:
                self.session_events.append(self._pending_policy)
            self._pending_policy = event
        elif (statement := self._open.get(n)) is not None:
            statement.policy = event.data

    def _on_review(self, event: Event) -> None:
        if not isinstance(event.data, dict):
            return
        pending = self._pending_review
        if pending is not None and pending.data.get("id") == event.data.get("id"):
            pending.data = {**pending.data, **event.data}
            return
        if pending is not None:
            self.session_events.append(pending)  # a review whose statement never ran (withdrawn)
        self._pending_review = Event(event.line, event.t, event.kind, dict(event.data))

    def _attach(self, event: Event) -> None:
        if self._current is not None:
            self._current.events.append(event)
        elif self.first == 1:
            self.session_events.append(event)


def _parse_header(line: bytes) -> dict:
    try:
        header = orjson.loads(line)
    except orjson.JSONDecodeError:
        return {}
    if not isinstance(header, dict):
        return {}
    header.pop("chain", None)
    return header


def parse_event(number: int, line: bytes) -> Event | None:
    """Line `number` of a recording as an Event, or None if it is not a well-formed event line (a torn last line)."""
    try:
        value = orjson.loads(line)
        t, kind, data = value[0], value[1], value[2]
    except (orjson.JSONDecodeError, IndexError, KeyError, TypeError):
        return None
    if not isinstance(kind, str) or not isinstance(t, int | float):
        return None
    return Event(number, t, kind, data)


def _kept_rows(result: dict, keep: int) -> dict:
    """The result with at most `keep` rows (or COPY lines), how many were recorded, and its column names."""
    for key in ("rows", "copy"):
        rows = result.get(key)
        if isinstance(rows, list) and len(rows) > keep:
            result = {**result, key: rows[:keep], "row_count": len(rows), "rows_cut": True}
    if isinstance(result.get("columns"), list):
        result = {**result, "column_names": column_names(result["columns"])}
    if isinstance(result.get("copy"), list):
        # Templates cannot say result.copy: on a dict that is the copy() method.
        result = {
            **result,
            "copy_lines": [str(line[0]) if isinstance(line, list) else str(line) for line in result["copy"]],
        }
    return result


def column_names(columns: list) -> list[str]:
    """Names of recorded columns, which the engine writes as [name, type oid]."""
    return [str(column[0]) if isinstance(column, list) and column else str(column) for column in columns]


@dataclass
class TimelinePage:
    """One page of a recording's statement timeline."""

    number: int
    statements: list[Statement]
    has_next: bool
    reader: StatementReader

    @property
    def has_previous(self) -> bool:
        return self.number > 1


def read_page(path: Path, number: int, page_size: int = PAGE_SIZE) -> TimelinePage:
    """Statements `(number-1)*page_size+1 ..` of a recording: reads up to just past the page, no further."""
    number = max(1, number)
    reader = StatementReader(path, first=(number - 1) * page_size + 1)
    statements: list[Statement] = []
    has_next = False
    for statement in reader.statements():
        if len(statements) == page_size:
            has_next = True
            break
        statements.append(statement)
    return TimelinePage(number, statements, has_next, reader)


EXPORT_FIELDS = (
    "n",
    "time",
    "text",
    "params",
    "rows",
    "error",
    "duration_ms",
    "policy_action",
    "policy_rule",
    "review_status",
    "review_by",
)


def export_rows(path: Path, started_at: datetime.datetime) -> Iterator[dict]:
    """One flat dict per statement (EXPORT_FIELDS), in order, streamed from the recording."""
    reader = StatementReader(path, keep_rows=0)
    for statement in reader.statements():
        policy = statement.policy or {}
        review = statement.review or {}
        yield {
            "n": statement.n,
            "time": (started_at + datetime.timedelta(seconds=statement.t)).isoformat(),
            "text": statement.text,
            "params": statement.params,
            "rows": statement.rows,
            "error": statement.error,
            "duration_ms": statement.ms,
            "policy_action": policy.get("action", ""),
            "policy_rule": policy.get("rule", ""),
            "review_status": review.get("status", ""),
            "review_by": review.get("by", ""),
        }


def cast_lines(path: Path, channel: int = 1) -> Iterator[bytes]:
    """One terminal channel of a recording as an asciicast v2 file: a header, then its o/i/r events.

    Channel 1 is the plain "o"/"i"/"r" events; channel N an SSH session's "o:N"/"i:N"/"r:N",
    written back as "o"/"i"/"r". The header takes the channel's terminal size when its "channel"
    event has one. A channel without a PTY wrote bare newlines, which a terminal would draw as a
    staircase: its output gets carriage returns. Chain links are left out; the file is streamed.
    """
    opened = channel_opened(path, channel)
    wanted = {b"o": "o", b"i": "i", b"r": "r"}
    number_bytes = None if channel == 1 else str(channel).encode()
    add_returns = bool(opened) and "term" not in opened
    with path.open("rb") as handle:
        header = _parse_header(handle.readline())
        cast_header = {key: header[key] for key in ("version", "width", "height", "timestamp") if key in header}
        for key in ("width", "height"):
            if isinstance(opened.get(key), int) and opened[key] > 0:
                cast_header[key] = opened[key]
        yield orjson.dumps(cast_header) + b"\n"
        for number, line in enumerate(handle, start=1):
            match = TERMINAL_EVENT.match(line)
            if match is None or match.group(2) != number_bytes:
                continue
            event = parse_event(number, line)
            if event is None:
                continue
            kind, data = wanted[match.group(1)], event.data
            if add_returns and kind == "o" and isinstance(data, str):
                data = data.replace("\r\n", "\n").replace("\n", "\r\n")
            yield orjson.dumps([event.t, kind, data]) + b"\n"


def channel_opened(path: Path, channel: int) -> dict:
    """The data of channel `channel`'s "channel" event ({} if none).

    Reads only up to the channel's first terminal event: the engine records a channel's opening before its data.
    """
    number_bytes = None if channel == 1 else str(channel).encode()
    with path.open("rb") as handle:
        handle.readline()
        for number, line in enumerate(handle, start=1):
            match = TERMINAL_EVENT.match(line)
            if match is not None:
                if match.group(2) == number_bytes:
                    return {}
                continue
            if b'"channel"' not in line[:40]:
                continue
            event = parse_event(number, line)
            data = event.data if event is not None and event.kind == "channel" else None
            if isinstance(data, dict) and data.get("ch") == channel:
                return data
    return {}


def terminal_kind(kind: str) -> tuple[str, int] | None:
    """A terminal event's base kind and channel: "o" -> ("o", 1), "i:3" -> ("i", 3); None for other kinds."""
    base, _, number = kind.partition(":")
    if base not in TERMINAL_KINDS:
        return None
    if not number:
        return base, 1
    return (base, int(number)) if number.isascii() and number.isdigit() else None


def recording_kind(path: Path) -> str:
    """The header's gatehouse.kind: "postgres" or "ssh" ("postgres" if unreadable)."""
    reader = StatementReader(path)
    try:
        reader.read_header()
    except OSError:
        return "postgres"
    return reader.kind


# --- live watch -------------------------------------------------------------------


@dataclass
class LiveRow:
    """What one timeline row of live watch shows of an event."""

    line: int
    t: float
    kind: str
    tone: str  # "", "ok", "warn" or "danger": the pill's colour
    summary: str
    code: str = ""
    columns: list = field(default_factory=list)
    rows: list = field(default_factory=list)


def describe_event(line: int, t: float, kind: str, data: Any) -> LiveRow:
    """One event as a live row: a one-line summary, the statement text, and (for a result) a few rows."""
    data = data if isinstance(data, dict) else {"value": data}
    row = LiveRow(line=line, t=t, kind=kind, tone="", summary="")
    describe = _describe_terminal if terminal_kind(kind) else _DESCRIBERS.get(kind) or _ssh_describer(kind)
    if describe is not None:
        describe(row, data)
    else:
        row.summary = " ".join(f"{key}={value}" for key, value in data.items())[:300]
    return row


def _describe_sql(row: LiveRow, data: dict) -> None:
    row.summary = f"statement {data.get('n', '?')}"
    row.code = str(data.get("text", ""))
    if data.get("params"):
        row.summary += f" · params {orjson.dumps(data['params']).decode()[:200]}"


def _describe_result(row: LiveRow, data: dict) -> None:
    statement = Statement(n=data.get("n", 0), t=row.t, text="", results=[data])
    parts = [f"statement {data.get('n', '?')}"]
    if data.get("tag"):
        parts.append(str(data["tag"]))
    if statement.rows is not None:
        parts.append(f"{statement.rows} rows")
    if statement.ms is not None:
        parts.append(f"{statement.ms} ms")
    if statement.error:
        parts.append(statement.error)
        row.tone = "danger"
    row.summary = " · ".join(parts)
    row.columns = column_names(data.get("columns") or [])
    row.rows = (data.get("rows") or [])[:LIVE_SHOWN_ROWS]


def _describe_policy(row: LiveRow, data: dict) -> None:
    action = data.get("action", "")
    row.tone = {"allow": "ok", "deny": "danger", "review": "warn"}.get(action, "")
    row.summary = f"{action} by rule {data.get('rule', '')}: {data.get('message', '')}"
    row.code = str(data.get("text", ""))


def _describe_review(row: LiveRow, data: dict) -> None:
    status = data.get("status", "")
    row.tone = {"approved": "ok", "pending": "warn"}.get(status, "danger")
    by = f" by {data['by']}" if data.get("by") else ""
    comment = f": {data['comment']}" if data.get("comment") else ""
    row.summary = f"review {status}{by}{comment} (rule {data.get('rule', '…')})"


def _describe_message(row: LiveRow, data: dict) -> None:
    row.tone = "danger" if row.kind == "error" else "warn"
    row.summary = f"{data.get('severity', '')} {data.get('code', '')} {data.get('message', '')}".strip()


def _describe_terminal(row: LiveRow, data: dict) -> None:
    text = data.get("value")
    base, channel = terminal_kind(row.kind) or (row.kind, 1)
    row.kind = {"o": "output", "i": "input"}.get(base, base) + (f" #{channel}" if channel > 1 else "")
    row.code = _ANSI.sub("", text)[:LIVE_TERMINAL_CHARS] if isinstance(text, str) else ""


def _ssh_describer(kind: str) -> Callable[[LiveRow, dict], None] | None:
    """The describer of an SSH kind (command, exit, file, forward…), summarized by recordings.ssh_replay."""
    from recordings.ssh_replay import SSH_SUMMARIES  # it builds on this module, so it is imported when first used

    return _describe_ssh if kind in SSH_SUMMARIES else None


def _describe_ssh(row: LiveRow, data: dict) -> None:
    from recordings.ssh_replay import ssh_summary  # see _ssh_describer

    summary = ssh_summary(row.kind, data)
    channel = data.get("ch")
    row.kind, row.tone = summary.label, summary.tone
    row.summary = (f"#{channel} " if isinstance(channel, int) else "") + summary.text


def _describe_session(row: LiveRow, data: dict) -> None:
    row.tone = "danger" if row.kind == "terminated" else ""
    if row.kind == "terminated":
        row.summary = f"terminated by {data.get('by', '?')}: {data.get('reason', '')}"
    elif row.kind == "closed":
        row.summary = f"closed: {data.get('reason', '')}"
    else:
        counters = ", ".join(f"{key} {value}" for key, value in data.items() if key != "status")
        row.summary = f"session {data.get('status', 'ended')}" + (f" ({counters})" if counters else "")


_DESCRIBERS = {
    "sql": _describe_sql,
    "result": _describe_result,
    "policy": _describe_policy,
    "review": _describe_review,
    "error": _describe_message,
    "notice": _describe_message,
    "closed": _describe_session,
    "terminated": _describe_session,
    "end": _describe_session,
    "o": _describe_terminal,
    "i": _describe_terminal,
}


def live_rows(events: list[tuple[int, float, str, Any]], skipped: int = 0) -> str:
    """Timeline rows for live watch, as a fragment htmx's ws extension appends to `<tbody id="live-events">`.

    `events` are (line number, t, kind, data) as read from the recording or
    published by the session's node; terminal output and input show as text
    without control sequences, resizes not at all. `skipped` says how many events were
    left out (published faster than a watcher is sent them) and adds a row saying so.
    """
    rows = [describe_event(line, t, kind, data) for line, t, kind, data in events if not _is_resize(kind)]
    return render_to_string("recordings/_live_rows.html", {"rows": rows, "skipped": skipped})


def _is_resize(kind: str) -> bool:
    return kind == "r" or kind.startswith("r:")
