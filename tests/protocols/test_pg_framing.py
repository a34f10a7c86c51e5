"""Framing in both directions and DataRow parsing, the byte-level code that `make core` compiles to C.

Compiled, these functions read lengths byte by byte and slice without bounds checks of
their own, so each case here is one a C bug would get wrong: bytes of 0x80 and over
(a signed char), lengths whose low bytes have the high bit set, messages split across
reads at every offset, and lengths that are impossible, truncated or oversized. The
messages are built here with struct, independently of the engine's own builders.
"""

import struct

import pytest

from connections.policy.rules import GuardrailMatch, GuardrailRule, PolicySpec
from connections.policy.session_policy import CompiledPolicy
from connections.protocols.pgwire.messages import MAX_MESSAGE, ProtocolViolation, parse_data_row
from connections.protocols.pgwire.tracker import DENIED_SQL, StatementTracker

SELECT = b"SELECT abalance FROM pgbench_accounts WHERE aid = 1;\0"


def message(kind: bytes, payload: bytes) -> bytes:
    return kind + struct.pack("!I", len(payload) + 4) + payload


def data_row(*values: bytes | None) -> bytes:
    payload = struct.pack("!h", len(values))
    for value in values:
        payload += struct.pack("!i", -1) if value is None else struct.pack("!i", len(value)) + value
    return payload


def row_description(*names: str) -> bytes:
    payload = struct.pack("!h", len(names))
    for name in names:
        payload += name.encode() + b"\0" + struct.pack("!IhIhih", 0, 0, 25, -1, -1, 0)
    return payload


def result(*rows: tuple[bytes | None, ...]) -> bytes:
    """A simple Query's whole answer: columns, rows, tag, ReadyForQuery."""
    width = len(rows[0]) if rows else 1
    body = message(b"T", row_description(*(f"c{n}" for n in range(width))))
    body += b"".join(message(b"D", data_row(*row)) for row in rows)
    return body + message(b"C", f"SELECT {len(rows)}\0".encode()) + message(b"Z", b"I")


def tracker_after_query() -> tuple[StatementTracker, list]:
    events: list = []
    tracker = StatementTracker(lambda kind, data: events.append((kind, data)), 1000, 1 << 20)
    assert tracker.from_client(b"Q", SELECT) is None
    return tracker, events


def recorded_rows(events: list) -> list:
    return [data["rows"] for kind, data in events if kind == "result"]


HIGH_BYTES = bytes(range(128, 256))
LONG_VALUE = b"x" * 70_000  # its length word, 0x00011170, has a low byte over 0x7F


@pytest.mark.parametrize(
    "values",
    [
        (b"1",),
        (None, b"", b"-123"),
        (HIGH_BYTES,),  # every byte that a signed char reads as negative
        (b"y" * 200,),  # length 0xC8
        (LONG_VALUE, None),
        (),
    ],
)
def test_a_data_row_gives_back_its_values(values):
    assert parse_data_row(data_row(*values)) == list(values)


@pytest.mark.parametrize(
    "payload",
    [
        b"",  # no column count
        b"\x00",  # half a column count
        struct.pack("!h", 2) + struct.pack("!i", 1) + b"a",  # a column short
        struct.pack("!h", 1) + struct.pack("!i", 5) + b"abc",  # a value cut short
        struct.pack("!h", 1) + b"\x00\x00",  # a length cut short
        struct.pack("!h", 1) + struct.pack("!i", 0x7FFFFFFF) + b"abc",  # a value of 2 GiB in 7 bytes
        struct.pack("!h", -1),  # 65,535 columns, none present
    ],
)
def test_a_malformed_data_row_raises_instead_of_reading_past_it(payload):
    with pytest.raises((ValueError, IndexError)):
        parse_data_row(payload)


def test_the_tracker_frames_a_whole_answer_and_forwards_it_unchanged():
    tracker, events = tracker_after_query()
    answer = result((b"1",), (HIGH_BYTES,), (LONG_VALUE,))
    forward, framed = tracker.relay_from_server(answer)
    assert (forward, framed) == (answer, len(answer))
    assert recorded_rows(events) == [[["1"], [HIGH_BYTES.decode("utf-8", "replace")], ["x" * 70_000]]]
    assert tracker.transaction_status == b"I" and not tracker.owed


def test_an_answer_split_at_any_offset_is_framed_the_same():
    answer = result((b"-123",), (None,), (b"y" * 200,))
    expected_tracker, expected_events = tracker_after_query()
    expected_tracker.relay_from_server(answer)
    for cut in range(len(answer) + 1):
        tracker, events = tracker_after_query()
        first, framed = tracker.relay_from_server(answer[:cut])
        assert answer[:cut].startswith(first) and len(first) == framed  # whole messages only
        second, rest = tracker.relay_from_server(answer[framed:])
        assert first + second == answer and framed + rest == len(answer)
        assert recorded_rows(events) == recorded_rows(expected_events)


@pytest.mark.parametrize(
    ("length_word", "shown"),
    [
        (b"\xff\xff\xff\xff", "4294967295"),
        (b"\x80\x00\x00\x00", "2147483648"),
        (struct.pack("!I", 3), "3"),
        (struct.pack("!I", MAX_MESSAGE + 1), str(MAX_MESSAGE + 1)),
    ],
)
def test_an_impossible_length_is_a_protocol_violation(length_word, shown):
    tracker, _ = tracker_after_query()
    with pytest.raises(ProtocolViolation, match=f"invalid message length {shown}$"):
        tracker.relay_from_server(message(b"T", row_description("a")) + b"D" + length_word + b"\0" * 8)


def test_a_largest_length_waits_for_more_bytes():
    tracker, _ = tracker_after_query()
    head = b"D" + struct.pack("!I", MAX_MESSAGE) + b"\0" * 100
    assert tracker.relay_from_server(head) == (b"", 0)


@pytest.mark.parametrize(("start", "end"), [(-1, 3), (2, 1), (0, 99), (50, 60)])
def test_from_server_refuses_bounds_outside_the_data(start, end):
    tracker, _ = tracker_after_query()
    data = message(b"C", b"SELECT 1\0")
    with pytest.raises(ValueError, match="bounds"):
        tracker.from_server(b"C", data, start, end)


# --- client to server ---------------------------------------------------------------------------

CLIENT_LIMIT = 1 << 20
GUARD = PolicySpec(
    name="framing",
    guardrails=(
        GuardrailRule("no-drop", "deny", GuardrailMatch(kind=("DROP",))),
        GuardrailRule("deletes-by-review", "review", GuardrailMatch(kind=("DELETE",))),
    ),
)


def query(sql: str) -> bytes:
    return message(b"Q", sql.encode() + b"\0")


def guarded_tracker() -> tuple[StatementTracker, list]:
    events: list = []
    policy = CompiledPolicy(GUARD, ("framing", 1), b"k" * 32).for_session()
    return StatementTracker(lambda kind, data: events.append((kind, data)), 1000, 1 << 20, policy), events


def recorded_texts(events: list) -> list[str]:
    return [data["text"] for kind, data in events if kind == "sql"]


PIPELINE = (
    query("SELECT 1")
    + message(b"P", b"s1\0SELECT $1::text\0\0\0")
    + message(b"B", b"\0s1\0\0\0\0\1" + struct.pack("!i", len(HIGH_BYTES)) + HIGH_BYTES + b"\0\0")
    + message(b"E", b"\0\0\0\0\0")
    + message(b"S", b"")
    + query("SELECT " + "x" * 200)  # a length word with a low byte over 0x7F
)


def test_client_messages_pass_through_as_they_came():
    tracker, events = guarded_tracker()
    send, framed, stop = tracker.relay_from_client(PIPELINE, CLIENT_LIMIT)
    assert (send, framed, stop) == (PIPELINE, len(PIPELINE), None)
    assert recorded_texts(events) == ["SELECT 1", "SELECT $1::text", "SELECT " + "x" * 200]


def test_client_bytes_split_at_any_offset_are_framed_the_same():
    for cut in range(len(PIPELINE) + 1):
        tracker, events = guarded_tracker()
        first, framed, stop = tracker.relay_from_client(PIPELINE[:cut], CLIENT_LIMIT)
        assert stop is None and PIPELINE[:cut].startswith(first) and len(first) == framed  # whole messages only
        second, rest, stop = tracker.relay_from_client(PIPELINE[framed:], CLIENT_LIMIT)
        assert stop is None and first + second == PIPELINE and framed + rest == len(PIPELINE)
        assert len(recorded_texts(events)) == 3


@pytest.mark.parametrize(
    ("length_word", "shown"),
    [
        (b"\xff\xff\xff\xff", "4294967295"),
        (b"\x80\x00\x00\x00", "2147483648"),
        (struct.pack("!I", 3), "3"),
        (struct.pack("!I", CLIENT_LIMIT + 1), str(CLIENT_LIMIT + 1)),
    ],
)
def test_an_impossible_client_length_is_a_protocol_violation(length_word, shown):
    tracker, _ = guarded_tracker()
    with pytest.raises(ProtocolViolation, match=f"^invalid message length {shown}$"):
        tracker.relay_from_client(query("SELECT 1") + b"Q" + length_word + b"SELECT 1", CLIENT_LIMIT)


def test_a_client_length_at_the_limit_waits_for_more_bytes():
    tracker, _ = guarded_tracker()
    assert tracker.relay_from_client(b"Q" + struct.pack("!I", CLIENT_LIMIT) + b"SELECT", CLIENT_LIMIT) == (b"", 0, None)


def test_a_terminate_stops_framing_and_what_follows_it_is_not_sent():
    tracker, events = guarded_tracker()
    before = query("SELECT 1")
    data = before + message(b"X", b"") + query("SELECT 2")
    assert tracker.relay_from_client(data, CLIENT_LIMIT) == (before, len(before) + 5, (b"X", b"", None))
    assert recorded_texts(events) == ["SELECT 1"]


def test_a_denied_query_is_replaced_and_its_neighbours_pass_unchanged():
    tracker, events = guarded_tracker()
    before, after = query("SELECT 1"), query("SELECT 2")
    send, framed, stop = tracker.relay_from_client(before + query("DROP TABLE t") + after, CLIENT_LIMIT)
    assert (send, stop) == (before + query(DENIED_SQL) + after, None)
    assert framed == len(before + query("DROP TABLE t") + after)
    assert recorded_texts(events) == ["SELECT 1", "DROP TABLE t", "SELECT 2"]
    assert [data["rule"] for kind, data in events if kind == "policy"] == ["no-drop"]


def test_a_statement_held_for_review_stops_framing_and_is_not_sent():
    tracker, events = guarded_tracker()
    before, held, after = query("SELECT 1"), query("DELETE FROM t WHERE id = 1"), query("SELECT 2")
    send, framed, stop = tracker.relay_from_client(before + held + after, CLIENT_LIMIT)
    assert (send, framed) == (before, len(before + held))
    kind, payload, verdict = stop
    assert (kind, payload, verdict.action, verdict.rule) == (b"Q", held[5:], "review", "deletes-by-review")
    assert recorded_texts(events) == ["SELECT 1"]  # the held statement is recorded once it is decided
