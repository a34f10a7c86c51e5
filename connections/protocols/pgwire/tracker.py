"""Turns the two message streams of a PostgreSQL session into recording events.

The tracker pairs every server response with the client request it answers,
using a queue of what the server still owes (as a driver does). It emits a
`sql` event when a statement starts (Query, Execute, FunctionCall) and a
`result` event when each result set ends, with columns, rows up to the
connection's cap, the command tag or error, and the duration. Notices,
notifications and parameter changes become `notice`, `notify` and `param`.

It never changes bytes and never raises into the relay: bookkeeping that
loses track of the conversation logs and resynchronises at ReadyForQuery.
"""

import base64
import logging
import time
from collections import deque
from collections.abc import Callable
from enum import Enum

from .messages import (
    format_for,
    parse_bind,
    parse_data_row,
    parse_error_fields,
    parse_function_call,
    parse_row_description,
    read_cstring,
    read_int32,
)

logger = logging.getLogger(__name__)

EventSink = Callable[[str, object], None]
DESCRIPTION_CACHE_SIZE = 256


class Pending(Enum):
    """What a client message makes the server owe."""

    PARSE = "parse"
    BIND = "bind"
    DESCRIBE = "describe"
    EXECUTE = "execute"
    CLOSE = "close"
    SYNC = "sync"
    QUERY = "query"  # simple Query and FunctionCall: results until ReadyForQuery


def _value(raw: bytes | None, fmt: int) -> object:
    if raw is None:
        return None
    if fmt == 0:
        return raw.decode("utf-8", "replace")
    return {"b64": base64.b64encode(raw).decode("ascii")}


# Kinds that collect a result; a tuple, since Enum hashing is a Python-level call.
RESULT_OWNERS = (Pending.QUERY, Pending.EXECUTE)


def _error_summary(payload: bytes) -> dict:
    """What a recording keeps of an ErrorResponse or NoticeResponse."""
    fields = parse_error_fields(payload)
    return {"code": fields.get("C", ""), "message": fields.get("M", ""), "severity": fields.get("V", "")}


class Execution:
    """One statement in flight, collecting its current result set."""

    __slots__ = ("seq", "started", "columns", "formats", "rows", "row_bytes", "truncated", "copy_bytes", "source")

    def __init__(self, seq: int, columns=None, formats=None) -> None:
        self.seq = seq
        self.started = time.perf_counter()
        self.columns = columns
        self.formats = formats or []
        self.rows: list[list[object]] = []
        self.row_bytes = 0
        self.truncated = False
        self.copy_bytes = 0
        self.source = ("", "")  # (portal, statement) of an Execute

    def reset(self) -> None:
        """Start the next result set of a multi-statement Query."""
        self.started = time.perf_counter()
        self.columns = None
        self.rows = []
        self.row_bytes = 0
        self.truncated = False
        self.copy_bytes = 0


class StatementTracker:
    """Follows one session's conversation and emits `sql`/`result` events."""

    def __init__(self, sink: EventSink, max_rows: int, max_bytes: int) -> None:
        self.sink = sink
        self.max_rows = max_rows
        self.max_bytes = max_bytes
        self.owed: deque[tuple[Pending, object]] = deque()
        self.statements: dict[str, str] = {}
        self.statement_columns: dict[str, list] = {}
        self.portals: dict[str, tuple[str, list[object], list[int]]] = {}
        self.portal_columns: dict[str, list] = {}
        self.statement_count = 0
        self.error_count = 0
        self.transaction_status = b"I"
        self.copy_in: Execution | None = None
        self.descriptions: dict[bytes, tuple[list, list[int]]] = {}

    # --- client → server -----------------------------------------------------

    def from_client(self, kind: bytes, payload: bytes) -> None:
        handler = self._client_handlers.get(kind)
        if handler is not None:
            try:
                handler(self, payload)
            except Exception:  # a recording problem must never break the relay
                logger.exception("tracker lost a client %r message", kind)

    def _on_query(self, payload: bytes) -> None:
        text = payload[:-1].decode("utf-8", "replace")  # one NUL-terminated string
        self.owed.append((Pending.QUERY, self._start(text, None)))

    def _on_parse(self, payload: bytes) -> None:
        name, pos = read_cstring(payload, 0)
        text, _ = read_cstring(payload, pos)
        self.statements[name] = text
        self.statement_columns.pop(name, None)
        self.owed.append((Pending.PARSE, name))

    def _on_bind(self, payload: bytes) -> None:
        bind = parse_bind(payload)
        params = [_value(p, format_for(bind.param_formats, i)) for i, p in enumerate(bind.params)]
        self.portals[bind.portal] = (bind.statement, params, bind.result_formats)
        self.portal_columns.pop(bind.portal, None)
        self.owed.append((Pending.BIND, bind.portal))

    def _on_describe(self, payload: bytes) -> None:
        name, _ = read_cstring(payload, 1)
        self.owed.append((Pending.DESCRIBE, (payload[:1], name)))

    def _on_execute(self, payload: bytes) -> None:
        portal, _ = read_cstring(payload, 0)
        statement, params, formats = self.portals.get(portal, ("", [], []))
        text = self.statements.get(statement, "")
        columns = self.portal_columns.get(portal) or self.statement_columns.get(statement)
        execution = self._start(text, params, columns, formats)
        execution.source = (portal, statement)
        self.owed.append((Pending.EXECUTE, execution))

    def _on_close(self, payload: bytes) -> None:
        name, _ = read_cstring(payload, 1)
        if payload[:1] == b"S":
            self.statements.pop(name, None)
            self.statement_columns.pop(name, None)
        else:
            self.portals.pop(name, None)
        self.owed.append((Pending.CLOSE, name))

    def _on_sync(self, payload: bytes) -> None:
        self.owed.append((Pending.SYNC, None))

    def _on_function_call(self, payload: bytes) -> None:
        call = parse_function_call(payload)
        args = [_value(a, format_for(call.arg_formats, i)) for i, a in enumerate(call.args)]
        execution = self._start(f"-- function call, oid {call.function_oid}", args, formats=[call.result_format])
        self.owed.append((Pending.QUERY, execution))

    def _on_copy_data(self, payload: bytes) -> None:
        if self.copy_in is not None:
            self._add_copy(self.copy_in, payload)

    def _start(self, text: str, params, columns=None, formats=None) -> Execution:
        self.statement_count += 1
        execution = Execution(self.statement_count, columns, formats)
        event = {"n": execution.seq, "text": text}
        if params:
            event["params"] = params
        self.sink("sql", event)
        return execution

    _client_handlers = {
        b"Q": _on_query,
        b"P": _on_parse,
        b"B": _on_bind,
        b"D": _on_describe,
        b"E": _on_execute,
        b"C": _on_close,
        b"S": _on_sync,
        b"F": _on_function_call,
        b"d": _on_copy_data,
    }

    # --- server → client -----------------------------------------------------

    def from_server(self, kind: bytes, data: bytes, start: int, end: int) -> None:
        """See the server message data[start:end] (its payload) of type `kind`."""
        try:
            if kind == b"D":  # the hot path: no copy once the result is past its cap
                self._on_data_row(data, start, end)
                return
            handler = self._server_handlers.get(kind)
            if handler is not None:
                handler(self, data[start:end])
        except Exception:  # a recording problem must never break the relay
            logger.exception("tracker lost a server %r message", kind)

    def _head(self) -> tuple[Pending, object] | None:
        return self.owed[0] if self.owed else None

    def _pop(self, *expected: Pending) -> object:
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
        self._pop(Pending.CLOSE)

    def _on_row_description(self, payload: bytes) -> None:
        columns, formats = self._describe(bytes(payload))
        head = self._head()
        if head and head[0] is Pending.DESCRIBE:
            self.owed.popleft()
            kind, name = head[1]
            target = self.statement_columns if kind == b"S" else self.portal_columns
            target[name] = columns
            self._describe_sent_executes(kind, name, columns)
        elif (execution := self._current()) is not None:
            execution.columns = columns
            execution.formats = formats

    def _describe_sent_executes(self, kind: bytes, name: str, columns: list) -> None:
        """Give the columns to Executes already sent: a client pipelines Describe and Execute."""
        by_portal = kind == b"P"
        redefined_by = Pending.BIND if by_portal else Pending.PARSE
        for pending, item in self.owed:
            if pending is redefined_by and item == name:
                return
            described = pending is Pending.EXECUTE and item.source[0 if by_portal else 1] == name
            if described and (by_portal or item.columns is None):
                item.columns = columns

    def _describe(self, payload: bytes) -> tuple[list, list[int]]:
        # A hot statement returns the same RowDescription every time.
        described = self.descriptions.get(payload)
        if described is None:
            if len(self.descriptions) >= DESCRIPTION_CACHE_SIZE:
                self.descriptions.clear()
            fields = parse_row_description(payload)
            columns = [[name, oid] for name, oid, _fmt in fields]
            formats = [fmt for _name, _oid, fmt in fields]
            described = self.descriptions[payload] = (columns, formats if any(formats) else [])
        return described

    def _on_no_data(self, payload: bytes) -> None:
        self._pop(Pending.DESCRIBE)

    def _on_data_row(self, data: bytes, start: int, end: int) -> None:
        execution = self._current()
        if execution is None or execution.truncated:
            return
        if len(execution.rows) >= self.max_rows or execution.row_bytes + end - start > self.max_bytes:
            execution.truncated = True
            return
        formats = execution.formats
        values = parse_data_row(data[start:end])
        if formats:
            row = [_value(v, format_for(formats, i)) for i, v in enumerate(values)]
        else:
            row = [None if v is None else v.decode("utf-8", "replace") for v in values]
        execution.rows.append(row)
        execution.row_bytes += end - start

    def _on_server_copy_data(self, payload: bytes) -> None:
        execution = self._current()
        if execution is not None:
            self._add_copy(execution, payload)

    def _add_copy(self, execution: Execution, payload: bytes) -> None:
        execution.copy_bytes += len(payload)
        if execution.truncated or execution.row_bytes + len(payload) > self.max_bytes:
            execution.truncated = True
            return
        execution.rows.append([payload.decode("utf-8", "replace")])
        execution.row_bytes += len(payload)

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

    def _on_notice(self, payload: bytes) -> None:
        self.sink("notice", _error_summary(payload))

    def _on_notification(self, payload: bytes) -> None:
        pid, pos = read_int32(payload, 0)
        channel, pos = read_cstring(payload, pos)
        self.sink("notify", {"pid": pid, "channel": channel, "payload": read_cstring(payload, pos)[0]})

    def _on_parameter_status(self, payload: bytes) -> None:
        name, pos = read_cstring(payload, 0)
        self.sink("param", {name: read_cstring(payload, pos)[0]})

    def _on_error(self, payload: bytes) -> None:
        self.error_count += 1
        error = _error_summary(payload)
        head = self._head()
        if head and head[0] is Pending.QUERY:
            self._finish({"error": error})
            return
        # Extended protocol: the server skips everything up to the next Sync.
        failed = None
        while self.owed and self.owed[0][0] is not Pending.SYNC:
            kind, item = self.owed.popleft()
            if kind is Pending.EXECUTE and failed is None:
                failed = item
        if failed is not None:
            self._emit(failed, {"error": error})
        else:
            self.sink("error", error)

    def _on_ready(self, payload: bytes) -> None:
        self.transaction_status = payload[:1]
        self.copy_in = None
        while self.owed:
            kind, _ = self.owed.popleft()
            if kind in (Pending.SYNC, Pending.QUERY):
                return
            logger.debug("tracker resynchronised past %s", kind)

    def _finish(self, outcome: dict) -> None:
        if not self.owed or self.owed[0][0] not in RESULT_OWNERS:
            return
        kind, execution = self.owed[0]
        self._emit(execution, outcome)
        if kind is Pending.EXECUTE:
            self.owed.popleft()
        else:
            execution.reset()
        self.copy_in = None

    def _emit(self, execution: Execution, outcome: dict) -> None:
        event = {"n": execution.seq, "ms": round((time.perf_counter() - execution.started) * 1e6) / 1e3}
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

    _server_handlers = {
        b"1": _on_parse_complete,
        b"2": _on_bind_complete,
        b"3": _on_close_complete,
        b"T": _on_row_description,
        b"n": _on_no_data,
        b"d": _on_server_copy_data,
        b"G": _on_copy_in,
        b"C": _on_command_complete,
        b"I": _on_empty_query,
        b"s": _on_portal_suspended,
        b"V": _on_function_result,
        b"E": _on_error,
        b"Z": _on_ready,
        b"N": _on_notice,
        b"A": _on_notification,
        b"S": _on_parameter_status,
    }

    def close(self, reason: str) -> None:
        """The session ended: statements still owed a result end with `reason`."""
        while self.owed:
            kind, item = self.owed.popleft()
            if kind in (Pending.QUERY, Pending.EXECUTE):
                self._emit(item, {"aborted": reason})
