"""Server-side framing and DataRow parsing, the byte-level code that `make core` compiles to C.

Compiled, these functions read lengths byte by byte and slice without bounds checks of
their own, so each case here is one a C bug would get wrong: bytes of 0x80 and over
(a signed char), lengths whose low bytes have the high bit set, messages split across
reads at every offset, and lengths that are impossible, truncated or oversized. The
messages are built here with struct, independently of the engine's own builders.
"""

import struct

import pytest

from connections.protocols.pgwire.messages import MAX_MESSAGE, ProtocolViolation, parse_data_row
from connections.protocols.pgwire.tracker import StatementTracker

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
