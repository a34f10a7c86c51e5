"""Turns the two message streams of a PostgreSQL session into recording events.

The tracker pairs every server response with the client request it answers,
using a queue of what the server still owes (as a driver does). It emits a
`sql` event when a statement starts (Query, Execute, FunctionCall) and a
`result` event when each result set ends, with columns, rows up to the
connection's cap, the command tag or error, and the duration. Notices,
notifications and parameter changes become `notice`, `notify` and `param`.

With a session policy it also enforces it, because it is the one place that
knows which server message answers which statement: it judges each Query,
Parse and FunctionCall (`from_client` returns the verdict of one it must not
send), replaces a denied statement by one the server will reject, and turns
that rejection into Gatehouse's own error; it masks DataRows, COPY data,
errors and notices on their way to the client, so only the masked form is
forwarded and recorded.

Bookkeeping never raises into the relay: if it loses track of the
conversation it logs and resynchronises at ReadyForQuery. Masking fails
closed: a message it cannot mask raises MaskingFailed and ends the session.

`make core` compiles this module with Cython, typed by tracker.pxd: an
attribute or a typed method added here must be declared there too.
"""

import base64
import logging
from collections import deque
from collections.abc import Callable
from dataclasses import replace
from time import perf_counter_ns
from typing import NamedTuple

from .messages import (
    MAX_MESSAGE,
    Column,
    ProtocolViolation,
    bind,
    bind_statement,
    describe_portal,
    error_response,
    format_for,
    message,
    parse_bind,
    parse_data_row,
    parse_error_fields,
    parse_function_call,
    parse_row_description,
    query,
    read_cstring,
    read_int32,
)
from .messages import parse as parse_message

logger = logging.getLogger(__name__)

EventSink = Callable[[str, object], None]
DESCRIPTION_CACHE_SIZE = 256
# What a denied statement becomes: a syntax error, so the server fails it exactly
# as it would fail a bad statement (inside a transaction block, the block is
# aborted on both sides) and we only swap its ErrorResponse for ours.
DENIED_SQL = "GATEHOUSE DENIED"
DENIED_SQLSTATE = "42501"  # insufficient_privilege
# What is judged besides a Query (`_client_query`). Bind too: a prepared statement runs again with every
# Bind, perhaps under a newer policy, and a reviewer's approval of its Parse covers one execution, not all that follow.
JUDGED = (b"P", b"F", b"B")
# What a denied Bind names instead of its statement: no such statement, so the server fails it.
DENIED_STATEMENT = "gatehouse denied"


class MaskingFailed(Exception):
    """A server message could not be masked; the session must end rather than leak it.

    `forward` is what `relay_from_server` framed before that message, safe to send first.
    """

    forward = b""


class Pending:
    """What a client message makes the server owe.

    Plain constants, not an Enum: on Python 3.11 an Enum member costs about
    100 ns per access, and the tracker touches several per message.
    """

    PARSE = "parse"
    BIND = "bind"
    DESCRIBE = "describe"
    EXECUTE = "execute"
    CLOSE = "close"
    SYNC = "sync"
    QUERY = "query"  # simple Query and FunctionCall: results until ReadyForQuery
    DENIED = "denied"  # a Parse replaced by DENIED_SQL: its error is ours to rewrite
    OWN_DESCRIBE = "own-describe"  # a Describe we added so masking knows the columns


def _value(raw: bytes | None, fmt: int) -> object:
    if raw is None:
        return None
    if fmt == 0:
        return raw.decode("utf-8", "replace")
    return {"b64": base64.b64encode(raw).decode("ascii")}


# Kinds that collect a result, and kinds a RowDescription or NoData answers.
RESULT_OWNERS = (Pending.QUERY, Pending.EXECUTE)
DESCRIBERS = (Pending.DESCRIBE, Pending.OWN_DESCRIBE)


def _error_summary(payload: bytes) -> dict:
    """What a recording keeps of an ErrorResponse or NoticeResponse."""
    fields = parse_error_fields(payload)
    return {"code": fields.get("C", ""), "message": fields.get("M", ""), "severity": fields.get("V", "")}


def _message_length(data: bytes, pos: int) -> int:
    """The length word of the message at `pos` (the caller checked that its 5-byte header is there)."""
    if data[pos + 1] & 0x80:  # 2 GiB or more
        return int.from_bytes(data[pos + 1 : pos + 5])
    return (  # read as in messages.parse_data_row
        (data[pos + 1] & 0xFF) << 24
        | (data[pos + 2] & 0xFF) << 16
        | (data[pos + 3] & 0xFF) << 8
        | (data[pos + 4] & 0xFF)
    )


def _replaced(parts: list | None, data: bytes, sent: int, pos: int, replacement: bytes) -> list:
    """`parts` (None: a new list) with data[sent:pos] and then the replacement of the message at `pos`."""
    if parts is None:
        parts = []
    parts.append(data[sent:pos])
    parts.append(replacement)
    return parts


def _spliced(parts: list | None, data: bytes, sent: int, pos: int) -> bytes:
    """data[:pos] with messages replaced: `parts` holds the pieces up to `sent`, replacements included.

    None for `parts` means nothing was replaced (and `sent` is 0): the relay loops make the list only
    when a message is replaced (`_replaced`), so that the common read is passed on as it came.
    """
    if parts is None:
        return data if pos == len(data) else data[:pos]
    parts.append(data[sent:pos])
    return b"".join(parts)


class Described(NamedTuple):
    """A RowDescription: as recorded, the format codes it carries, and each field for masking."""

    columns: list
    formats: list[int]
    fields: tuple[Column, ...]


UNPLANNED = object()  # an Execution's row_masker before its first DataRow


class Execution:
    """One statement in flight, collecting its current result set."""

    __slots__ = (
        "seq",
        "started",
        "columns",
        "formats",
        "fields",
        "row_masker",
        "rows",
        "row_bytes",
        "truncated",
        "copy_bytes",
        "source",
        "denied",
        "text",
        "result_index",
    )

    def __init__(self, seq: int, described: "Described | None" = None, formats=None) -> None:
        self.seq = seq
        self.started = perf_counter_ns()
        self.columns = described.columns if described is not None else None
        self.fields = described.fields if described is not None else None
        self.row_masker = UNPLANNED
        self.formats = formats or []
        self.rows: list[list[object]] = []
        self.row_bytes = 0
        self.truncated = False
        self.copy_bytes = 0
        self.source = ("", "")  # (portal, statement) of an Execute
        self.denied = None  # the Verdict, for a Query we replaced by DENIED_SQL
        self.text = ""
        self.result_index = 0  # which statement of a multi-statement Query the result set is from

    def describe(self, described: "Described") -> None:
        self.columns = described.columns
        self.fields = described.fields
        self.row_masker = UNPLANNED

    def reset(self) -> None:
        """Start the next result set of a multi-statement Query."""
        self.result_index += 1
        self.started = perf_counter_ns()
        self.columns = None
        self.fields = None
        self.row_masker = UNPLANNED
        self.rows = []
        self.row_bytes = 0
        self.truncated = False
        self.copy_bytes = 0


class StatementTracker:
    """Follows one session's conversation, enforces its policy and emits recording events.

    `policy` is None (nothing judged, nothing masked) or a
    connections.policy.session_policy.SessionPolicy: `check(sql)`,
    `check_parse(name, sql)` and `check_function_call(oid)` give Verdicts,
    `objection(sql)` gives one unless it allows the query (then None),
    `forget(name)` drops a closed prepared statement, `masker` masks.
    """

    def __init__(self, sink: EventSink, max_rows: int, max_bytes: int, policy=None) -> None:
        self.sink = sink
        self.max_rows = max_rows
        self.max_bytes = max_bytes
        self.owed: deque[tuple[str, object]] = deque()
        self.statements: dict[str, str] = {}
        self.approved_statement: str | None = None  # a reviewed Parse whose next Bind is covered
        self.statement_columns: dict[str, Described] = {}
        self.portals: dict[str, tuple[str, list[object], list[int]]] = {}
        self.portal_columns: dict[str, Described] = {}
        self.statement_count = 0
        self.error_count = 0
        self.denied_count = 0
        self.transaction_status = b"I"
        self.copy_in: Execution | None = None
        self.copy_out = None  # (CopyShape or None, header row still to come) of the COPY TO STDOUT under way
        self.descriptions: dict[bytes, Described] = {}
        self.policy = None
        self.masker = None
        self.set_policy(policy)
        self.client_handlers = {
            b"Q": self._on_query,
            b"P": self._on_parse,
            b"B": self._on_bind,
            b"D": self._on_describe,
            b"E": self._on_execute,
            b"C": self._on_close,
            b"S": self._on_sync,
            b"F": self._on_function_call,
            b"d": self._on_copy_data,
        }
        self.server_handlers = {
            b"1": self._on_parse_complete,
            b"2": self._on_bind_complete,
            b"3": self._on_close_complete,
            b"T": self._on_row_description,
            b"n": self._on_no_data,
            b"d": self._on_server_copy_data,
            b"G": self._on_copy_in,
            b"H": self._on_copy_out,
            b"C": self._on_command_complete,
            b"I": self._on_empty_query,
            b"s": self._on_portal_suspended,
            b"V": self._on_function_result,
            b"E": self._on_error,
            b"Z": self._on_ready,
            b"N": self._on_notice,
            b"A": self._on_notification,
            b"S": self._on_parameter_status,
        }

    def set_policy(self, policy) -> None:
        """Apply `policy` from the next message on (a live session's policy was changed)."""
        self.policy = policy
        self.masker = policy.masker if policy is not None else None

    # --- client → server -----------------------------------------------------

    def relay_from_client(self, data: bytes, limit: int) -> tuple[bytes, int, tuple | None]:
        """Frame client bytes that start at a message: (what to send upstream, bytes framed, stop).

        Each whole message goes through `from_client`; a denied one is replaced by what `deny` sends.
        Framing stops at a Terminate or at a statement held for review, which is framed but not sent:
        `stop` is then (kind, payload, verdict), the verdict None for a Terminate. Otherwise `stop` is
        None, and what follows the last whole message is the caller's to keep for the next read.
        Raises ProtocolViolation on a length under 4 or over `limit`. Compiled, this loop is C.
        """
        raw = data  # char * in tracker.pxd, as in relay_from_server
        pos, size, sent = 0, len(data), 0
        parts = None
        while size - pos >= 5:
            length = _message_length(data, pos)
            if length < 4 or length > limit:
                raise ProtocolViolation(f"invalid message length {length}")
            end = pos + 1 + length
            if end > size:
                break
            kind = raw[pos : pos + 1]
            if kind == b"X":
                return _spliced(parts, data, sent, pos), end, (kind, b"", None)
            payload = raw[pos + 5 : end]
            outcome = self.from_client(kind, payload)
            if outcome is not None:
                if type(outcome) is not bytes:
                    if outcome.action == "review":
                        return _spliced(parts, data, sent, pos), end, (kind, payload, outcome)
                    outcome = self.deny(kind, payload, outcome)
                parts = _replaced(parts, data, sent, pos, outcome)
                sent = end
            pos = end
        return _spliced(parts, data, sent, pos), pos, None

    def from_client(self, kind: bytes, payload: bytes):
        """See one client message before it is sent.

        Returns None to send it as it is, bytes to send instead of it, or the
        Verdict (deny or review) of a statement that must not be sent as it is:
        the caller then calls `deny` or, once a review approves it, `allow`.
        """
        if kind == b"Q":
            return self._client_query(payload)
        if self.policy is not None and kind in JUDGED:
            verdict = self._judge(kind, payload)
            if verdict.action != "allow":
                return verdict
        return self._track(kind, payload)

    def _client_query(self, payload: bytes):
        """`from_client` for a Query, the hot message: its text is decoded once, for the verdict and the recording."""
        text = self._text_of(b"Q", payload)
        if self.policy is not None:
            verdict = self.policy.objection(text)
            if verdict is not None:
                return verdict
        try:
            self._on_query_text(text)
        except Exception:  # a recording problem must never break the relay
            logger.exception("tracker lost a client %r message", b"Q")
        return None

    def allow(self, kind: bytes, payload: bytes, verdict) -> bytes | None:
        """Track a held message that a reviewer approved; returns what `from_client` would."""
        self._record_verdict(verdict, text=self._text_of(kind, payload))
        if kind == b"P":  # the approval covers the statement's next Bind: one execution
            self.approved_statement = read_cstring(payload, 0)[0]
        return self._track(kind, payload)

    def deny(self, kind: bytes, payload: bytes, verdict) -> bytes:
        """Track a denied message; returns what to send instead, for the server to reject."""
        self.denied_count += 1
        if kind == b"P":
            name, _ = read_cstring(payload, 0)
            self.statements.pop(name, None)
            self._record_verdict(verdict, text=self._text_of(kind, payload))
            self.owed.append((Pending.DENIED, verdict))
            return parse_message(name, DENIED_SQL)
        if kind == b"B":
            self._record_verdict(verdict, text=self._text_of(kind, payload))
            self.owed.append((Pending.DENIED, verdict))
            return bind("", DENIED_STATEMENT)
        # A Query, or a FunctionCall (which cannot be made to fail): the server rejects a query instead.
        execution = self._start(self._text_of(kind, payload), None)
        execution.denied = verdict
        self._record_verdict(verdict, n=execution.seq)
        self.owed.append((Pending.QUERY, execution))
        return query(DENIED_SQL)

    def _judge(self, kind: bytes, payload: bytes):
        if kind == b"B":
            return self._judge_bind(bind_statement(payload))
        if kind == b"P":
            name, pos = read_cstring(payload, 0)
            return self.policy.check_parse(name, read_cstring(payload, pos)[0])
        return self.policy.check_function_call(parse_function_call(payload).function_oid)

    def _judge_bind(self, name: str):
        verdict = self.policy.check(self.statements.get(name, ""))
        if verdict.action == "review" and name == self.approved_statement:
            self.approved_statement = None
            return replace(verdict, action="allow")
        return verdict

    def _text_of(self, kind: bytes, payload: bytes) -> str:
        if kind == b"Q":
            return payload[:-1].decode("utf-8", "replace")  # one NUL-terminated string
        if kind == b"B":
            return self.statements.get(bind_statement(payload), "")
        if kind == b"P":
            _name, pos = read_cstring(payload, 0)
            return read_cstring(payload, pos)[0]
        return f"-- function call, oid {parse_function_call(payload).function_oid}"

    def recorded_text(self, text: str) -> str:
        """A statement's text as recordings and reviewers get it: masked if the policy masks."""
        return self.masker.mask_statement(text) if self.masker is not None else text

    def _record_verdict(self, verdict, text: str | None = None, n: int | None = None) -> None:
        event = {"action": verdict.action, "rule": verdict.rule, "message": verdict.message}
        if n is not None:
            event["n"] = n
        if text is not None:
            event["text"] = self.recorded_text(text)
        self.sink("policy", event)

    def _track(self, kind: bytes, payload: bytes) -> bytes | None:
        handler = self.client_handlers.get(kind)
        if handler is None:
            return None
        try:
            return handler(payload)
        except Exception:  # a recording problem must never break the relay
            logger.exception("tracker lost a client %r message", kind)
            return None

    def _on_query(self, payload: bytes) -> None:
        self._on_query_text(self._text_of(b"Q", payload))

    def _on_query_text(self, text: str) -> None:
        self.owed.append((Pending.QUERY, self._start(text, None)))

    def _on_parse(self, payload: bytes) -> None:
        name, pos = read_cstring(payload, 0)
        text, _ = read_cstring(payload, pos)
        self.statements[name] = text
        self.statement_columns.pop(name, None)
        self.owed.append((Pending.PARSE, name))

    def _on_bind(self, payload: bytes) -> None:
        bind = parse_bind(payload)
        values = bind.params
        if self.masker is not None:  # the recording keeps parameters masked, text or binary
            values = [None if p is None else self.masker.mask_bytes(p) for p in values]
        params = [_value(p, format_for(bind.param_formats, i)) for i, p in enumerate(values)]
        self.portals[bind.portal] = (bind.statement, params, bind.result_formats)
        self.portal_columns.pop(bind.portal, None)
        self.owed.append((Pending.BIND, bind.portal))

    def _on_describe(self, payload: bytes) -> None:
        name, _ = read_cstring(payload, 1)
        self.owed.append((Pending.DESCRIBE, (payload[:1], name)))

    def _on_execute(self, payload: bytes) -> bytes | None:
        portal, _ = read_cstring(payload, 0)
        statement, params, formats = self.portals.get(portal, ("", [], []))
        text = self.statements.get(statement, "")
        described = self.portal_columns.get(portal) or self.statement_columns.get(statement)
        added = None
        if described is None and self.masker is not None:
            # Masking needs the columns before the first DataRow: ask the server, and keep its answer to ourselves.
            self.owed.append((Pending.OWN_DESCRIBE, portal))
            added = describe_portal(portal) + message(b"E", payload)
        execution = self._start(text, params, described, formats)
        execution.source = (portal, statement)
        self.owed.append((Pending.EXECUTE, execution))
        return added

    def _on_close(self, payload: bytes) -> None:
        name, _ = read_cstring(payload, 1)
        if payload[:1] == b"S":
            self.statements.pop(name, None)
            self.statement_columns.pop(name, None)
        else:
            self.portals.pop(name, None)
        self.owed.append((Pending.CLOSE, (payload[:1], name)))

    def _on_sync(self, payload: bytes) -> None:
        self.owed.append((Pending.SYNC, None))

    def _on_function_call(self, payload: bytes) -> None:
        call = parse_function_call(payload)
        args = [_value(a, format_for(call.arg_formats, i)) for i, a in enumerate(call.args)]
        execution = self._start(self._text_of(b"F", payload), args, None, [call.result_format])
        self.owed.append((Pending.QUERY, execution))

    def _on_copy_data(self, payload: bytes) -> None:
        if self.copy_in is not None:
            self._add_copy(self.copy_in, payload)

    def _start(self, text: str, params, described: Described | None = None, formats=None) -> Execution:
        self.statement_count += 1
        execution = Execution(self.statement_count, described, formats)
        execution.text = text
        if self.masker is not None:
            text = self.masker.mask_statement(text)
        event = {"n": execution.seq, "text": text}
        if params:
            event["params"] = params
        self.sink("sql", event)
        return execution

    # --- server → client -----------------------------------------------------

    def relay_from_server(self, data: bytes) -> tuple[bytes, int]:
        """Frame server bytes that start at a message: (what to forward to the client, bytes framed).

        Each whole message goes through `from_server`; what follows the last one is the caller's to keep
        for the next read. Raises ProtocolViolation on an impossible message length. The lengths are read
        byte by byte (`_message_length`): compiled, this loop is C.
        """
        raw = data  # char * in tracker.pxd: a slice of it is one copy, without a slice object
        pos, size, sent = 0, len(data), 0
        parts = None
        while size - pos >= 5:
            length = _message_length(data, pos)
            if length < 4 or length > MAX_MESSAGE:
                raise ProtocolViolation(f"upstream sent an invalid message length {length}")
            end = pos + 1 + length
            if end > size:
                break
            try:
                replacement = self.from_server(raw[pos : pos + 1], data, pos + 5, end)
            except MaskingFailed as exc:
                exc.forward = _spliced(parts, data, sent, pos)
                raise
            if replacement is not None:
                parts = _replaced(parts, data, sent, pos, replacement)
                sent = end
            pos = end
        return _spliced(parts, data, sent, pos), pos

    def from_server(self, kind: bytes, data: bytes, start: int, end: int) -> bytes | None:
        """See the server message data[start:end] (its payload) of type `kind`.

        Returns None to forward it unchanged, or the whole message to forward
        instead (b"" to drop it). Raises MaskingFailed rather than forward a
        message it should mask and cannot.
        """
        if not 0 <= start <= end <= len(data):  # the compiled slices below trust these bounds
            raise ValueError("the message's bounds lie outside the data")
        if kind == b"D":  # the hot path: no copy once the result is past its cap
            return self._on_data_row(data, start, end)
        handler = self.server_handlers.get(kind)
        if handler is None:
            return None
        raw = data  # char * in tracker.pxd, as in relay_from_server
        try:
            return handler(raw[start:end])
        except MaskingFailed:
            raise
        except Exception:  # a recording problem must never break the relay
            logger.exception("tracker lost a server %r message", kind)
            return None

    def _head(self) -> tuple[str, object] | None:
        return self.owed[0] if self.owed else None

    def _pop(self, *expected: str) -> object:
        if self.owed and self.owed[0][0] in expected:
            return self.owed.popleft()[1]
        return None

    def _current(self) -> Execution | None:
        owed = self.owed
        if owed and owed[0][0] in RESULT_OWNERS:
            return owed[0][1]
        return None

    def _on_parse_complete(self, payload: bytes) -> None:
        self._pop(Pending.PARSE)

    def _on_bind_complete(self, payload: bytes) -> None:
        self._pop(Pending.BIND)

    def _on_close_complete(self, payload: bytes) -> None:
        closed = self._pop(Pending.CLOSE)
        if closed is not None and closed[0] == b"S" and self.policy is not None:
            self.policy.forget(closed[1])  # only now is the statement surely gone

    def _on_row_description(self, payload: bytes) -> bytes | None:
        described = self._describe(payload)
        if not self.owed:
            return None
        pending, item = self.owed[0]
        if pending in RESULT_OWNERS:
            item.describe(described)
            item.formats = described.formats
        elif pending in DESCRIBERS:
            self.owed.popleft()
            if pending == Pending.OWN_DESCRIBE:
                self._describe_sent_executes(b"P", item, described)
                return b""
            kind, name = item
            target = self.statement_columns if kind == b"S" else self.portal_columns
            target[name] = described
            self._describe_sent_executes(kind, name, described)
        return None

    def _describe_sent_executes(self, kind: bytes, name: str, described: Described) -> None:
        """Give the columns to Executes already sent: a client pipelines Describe and Execute."""
        by_portal = kind == b"P"
        redefined_by = Pending.BIND if by_portal else Pending.PARSE
        for pending, item in self.owed:
            if pending == redefined_by and item == name:
                return
            matches = pending == Pending.EXECUTE and item.source[0 if by_portal else 1] == name
            if matches and (by_portal or item.columns is None):
                item.describe(described)

    def _describe(self, payload: bytes) -> Described:
        # A hot statement returns the same RowDescription every time.
        described = self.descriptions.get(payload)
        if described is None:
            if len(self.descriptions) >= DESCRIPTION_CACHE_SIZE:
                self.descriptions.clear()
            fields = tuple(parse_row_description(payload))
            formats = [field.format for field in fields]
            columns = [[field.name, field.type_oid] for field in fields]
            described = self.descriptions[payload] = Described(columns, formats if any(formats) else [], fields)
        return described

    def _on_no_data(self, payload: bytes) -> bytes | None:
        head = self._head()
        if head and head[0] in DESCRIBERS:
            self.owed.popleft()
            if head[0] == Pending.OWN_DESCRIBE:
                return b""
        return None

    def _on_data_row(self, data: bytes, start: int, end: int) -> bytes | None:
        execution = self._current()
        replacement = None
        if self.masker is not None:
            replacement = self._mask_row(execution, data, start, end)
            if replacement is not None:
                data, start, end = replacement, 5, len(replacement)
        if execution is None or execution.truncated:
            return replacement
        if len(execution.rows) >= self.max_rows or execution.row_bytes + end - start > self.max_bytes:
            execution.truncated = True
            return replacement
        raw = data  # char * in tracker.pxd, as in relay_from_server; from_server checked the bounds
        try:
            self._record_row(execution, raw[start:end], end - start)
        except Exception:  # a recording problem must never break the relay
            logger.exception("tracker lost a DataRow")
        return replacement

    def _record_row(self, execution: Execution, payload: bytes, size: int) -> None:
        formats = execution.formats
        values = parse_data_row(payload)
        if formats:
            row = [_value(v, format_for(formats, i)) for i, v in enumerate(values)]
        else:
            row = [None if v is None else v.decode("utf-8", "replace") for v in values]
        execution.rows.append(row)
        execution.row_bytes += size

    def _mask_row(self, execution: Execution | None, data: bytes, start: int, end: int) -> bytes | None:
        if execution is None or execution.fields is None:
            raise MaskingFailed("a DataRow arrived for a result whose columns are unknown")
        row_masker = execution.row_masker
        if row_masker is UNPLANNED:
            row_masker = execution.row_masker = self._plan_masking(execution)
        if row_masker is None:
            return None
        payload = data[start:end]
        try:
            masked = row_masker.mask_row(payload)
        except ValueError as exc:
            raise MaskingFailed(f"malformed DataRow: {exc}") from None
        return None if masked is payload else message(b"D", masked)

    def _plan_masking(self, execution: Execution):
        fields = execution.fields
        formats = execution.formats
        if formats:  # an Execute: the Bind's result formats, not the Describe's zeros
            fields = tuple(field._replace(format=format_for(formats, i)) for i, field in enumerate(fields))
        return self.masker.for_columns(fields)

    def _on_server_copy_data(self, payload: bytes) -> bytes | None:
        execution = self._current()
        replacement = None
        if self.masker is not None:
            masked = self._mask_copy_row(payload)
            if masked is not payload:
                payload = masked
                replacement = message(b"d", masked)
        if execution is not None:
            self._add_copy(execution, payload)
        return replacement

    def _mask_copy_row(self, payload: bytes) -> bytes:
        shape, header_next = self.copy_out or (None, False)
        if header_next:  # column names, not data: only the detectors apply
            self.copy_out = (shape, False)
            return self.masker.mask_bytes(payload)
        if shape is None:
            return self.masker.mask_copy_row(payload, None, False)
        return self.masker.mask_copy_row(payload, shape.columns, shape.csv, shape.delimiter)

    def _add_copy(self, execution: Execution, payload: bytes) -> None:
        execution.copy_bytes += len(payload)
        if execution.truncated or execution.row_bytes + len(payload) > self.max_bytes:
            execution.truncated = True
            return
        execution.rows.append([payload.decode("utf-8", "replace")])
        execution.row_bytes += len(payload)

    def _on_copy_out(self, payload: bytes) -> None:
        if self.masker is None:
            return
        if payload[:1] != b"\0":
            raise MaskingFailed("a binary COPY TO STDOUT cannot be masked")
        execution = self._current()
        shape = self.policy.copy_shape(execution.text, execution.result_index) if execution is not None else None
        self.copy_out = (shape, shape is not None and shape.csv and shape.header)

    def _on_copy_in(self, payload: bytes) -> None:
        self.copy_in = self._current()

    def _on_command_complete(self, payload: bytes) -> None:
        self._finish({"tag": payload[:-1].decode("utf-8", "replace")})

    def _on_empty_query(self, payload: bytes) -> None:
        self._finish({"tag": ""})

    def _on_portal_suspended(self, payload: bytes) -> None:
        self._finish({"tag": "", "suspended": True})

    def _on_function_result(self, payload: bytes) -> None:
        length, pos = read_int32(payload, 0)
        execution = self._current()
        result_format = execution.formats[0] if execution is not None and execution.formats else 0
        value = None if length < 0 else _value(payload[pos : pos + length], result_format)
        self._finish({"tag": "", "value": value})

    def _on_notice(self, payload: bytes) -> bytes | None:
        replacement, payload = self._mask_fields(b"N", payload)
        self.sink("notice", _error_summary(payload))
        return replacement

    def _mask_fields(self, kind: bytes, payload: bytes) -> tuple[bytes | None, bytes]:
        if self.masker is None:
            return None, payload
        masked = self.masker.mask_error_fields(payload)
        if masked is payload:
            return None, payload
        return message(kind, masked), masked

    def _on_notification(self, payload: bytes) -> None:
        pid, pos = read_int32(payload, 0)
        channel, pos = read_cstring(payload, pos)
        self.sink("notify", {"pid": pid, "channel": channel, "payload": read_cstring(payload, pos)[0]})

    def _on_parameter_status(self, payload: bytes) -> None:
        name, pos = read_cstring(payload, 0)
        self.sink("param", {name: read_cstring(payload, pos)[0]})

    def _on_error(self, payload: bytes) -> bytes | None:
        self.error_count += 1
        denial = self._denial_at_head()
        if denial is not None:
            replacement = error_response(DENIED_SQLSTATE, denial.message)
            payload = replacement[5:]
        else:
            replacement, payload = self._mask_fields(b"E", payload)
        error = _error_summary(payload)
        head = self._head()
        if head and head[0] == Pending.QUERY:
            self._finish({"error": error})
            return replacement
        # Extended protocol: the server skips everything up to the next Sync.
        failed = None
        while self.owed and self.owed[0][0] != Pending.SYNC:
            kind, item = self.owed.popleft()
            if kind == Pending.EXECUTE and failed is None:
                failed = item
        if failed is not None:
            self._emit(failed, {"error": error})
        else:
            self.sink("error", error)
        return replacement

    def _denial_at_head(self):
        """The verdict behind the statement this error answers, if we made the server fail it."""
        head = self._head()
        if head is None:
            return None
        if head[0] == Pending.DENIED:
            return head[1]
        if head[0] == Pending.QUERY:
            return head[1].denied
        return None

    def _on_ready(self, payload: bytes) -> None:
        self.transaction_status = payload[:1]
        self.copy_in = None
        while self.owed:
            kind, _ = self.owed.popleft()
            if kind in (Pending.SYNC, Pending.QUERY):
                return
            logger.debug("tracker resynchronised past %s", kind)

    def _finish(self, outcome: dict) -> None:
        self.copy_out = None
        if not self.owed or self.owed[0][0] not in RESULT_OWNERS:
            return
        kind, execution = self.owed[0]
        self._emit(execution, outcome)
        if kind == Pending.EXECUTE:
            self.owed.popleft()
        else:
            execution.reset()
        self.copy_in = None

    def _emit(self, execution: Execution, outcome: dict) -> None:
        # Whole microseconds, in integers: compiled, that is C arithmetic rather than a call to round().
        elapsed_us = (perf_counter_ns() - execution.started) // 1000
        event = {"n": execution.seq, "ms": elapsed_us / 1e3}
        if execution.columns is not None:
            event["columns"] = execution.columns
            event["rows"] = execution.rows
        elif execution.copy_bytes:
            event["copy"] = execution.rows
            event["copy_bytes"] = execution.copy_bytes
        elif execution.rows:  # DataRows of an Execute whose portal nobody described
            event["rows"] = execution.rows
        if execution.truncated:
            event["truncated"] = True
        event.update(outcome)
        self.sink("result", event)

    def close(self, reason: str) -> None:
        """The session ended: statements still owed a result end with `reason`."""
        while self.owed:
            kind, item = self.owed.popleft()
            if kind in (Pending.QUERY, Pending.EXECUTE):
                self._emit(item, {"aborted": reason})
