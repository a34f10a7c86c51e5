"""The recording format on its own: encoding, the hash chain, and what verification reports."""

import hashlib
import json
import uuid

import pytest

from recordings.chain import ChainWriter, Problem, chain_seed, verify_lines

HEADER = {"version": 2, "width": 80, "height": 24, "timestamp": 1767225600, "gatehouse": {"actor": "agent:ci"}}
EVENTS = [
    [0.001, "sql", {"text": "SELECT 1"}],
    [0.002, "result", {"rows": [["1"]], "tag": "SELECT 1"}],
    [0.5, "o", "naïve ☕ \u2028 line"],
    [1.25, "sql", {"text": "SELECT $1", "params": [None, True, 3.5]}],
    [2.0, "end", {"status": "ended"}],
]


@pytest.fixture
def session_id():
    return str(uuid.uuid4())


def encode(session_id, objects=None):
    writer = ChainWriter(session_id)
    return writer, [writer.encode_line(obj) for obj in (objects or [HEADER, *EVENTS])]


def test_it_encodes_a_batch_of_events_as_it_encodes_each_line(session_id):
    """encode_events is the gateway's fast path: the very same bytes and chain as encode_line, fallbacks included."""
    events = [(0.0000014, "sql", {"text": "SELECT 1"}), (0.5, "o", "\ud800 lone surrogate"), (1.0, "x", {"b": b"\x00"})]
    one_by_one, batched = ChainWriter(session_id), ChainWriter(session_id)
    expected = [one_by_one.encode_line(HEADER)]
    expected += [one_by_one.encode_line([round(t * 1e6) / 1e6, kind, data]) for t, kind, data in events]

    lines = batched.encode_line(HEADER) + b"".join(batched.encode_events(events))

    assert lines == b"".join(expected)
    assert (batched.head, batched.line_count) == (one_by_one.head, one_by_one.line_count) == (one_by_one.head, 4)
    assert verify_lines(session_id, lines.splitlines(keepends=True)).ok
    with pytest.raises(ValueError, match="header"):
        ChainWriter(session_id).encode_events(events)


def test_it_joins_a_big_batch_into_segments_of_about_a_mebibyte(session_id):
    events = [(n / 10, "o", "x" * 100_000) for n in range(25)]
    one_by_one, batched = ChainWriter(session_id), ChainWriter(session_id)
    expected = [one_by_one.encode_line(HEADER), *(one_by_one.encode_line([t, k, d]) for t, k, d in events)]
    batched.encode_line(HEADER)

    segments = batched.encode_events(events)

    # Whole lines; a segment ends with the line that takes it past 1 MiB.
    assert [len(segment) // 100_000 for segment in segments] == [11, 11, 3]
    assert expected[0] + b"".join(segments) == b"".join(expected)


def test_it_round_trips_header_and_events(session_id):
    writer, lines = encode(session_id)

    result = verify_lines(session_id, lines)

    assert result.ok
    assert result.line_count == writer.line_count == 6
    assert result.chain_head == writer.head
    assert result.valid_bytes == sum(len(line) for line in lines)
    header = json.loads(lines[0])
    assert header["version"] == 2 and header["gatehouse"] == {"actor": "agent:ci"}
    header_body = json.dumps(HEADER, separators=(",", ":")).encode()
    assert header["chain"] == hashlib.sha256(chain_seed(session_id) + header_body).hexdigest()
    # Players see [t, kind, data] and ignore the link in fourth place.
    assert [json.loads(line)[:3] for line in lines[1:]] == EVENTS


def test_it_stores_the_compact_body_with_the_link_spliced_in(session_id):
    _, lines = encode(session_id)

    text = lines[1].decode()
    body = json.dumps(EVENTS[0], separators=(",", ":"), ensure_ascii=False)
    link = json.loads(text)[3]

    assert text == body[:-1] + ',"' + link + '"]\n'
    assert "☕" in lines[3].decode()  # UTF-8, not \u escapes


def test_it_chains_a_lone_surrogate_as_escaped_json(session_id):
    bad_text = b"caf\xe9".decode("utf-8", "surrogateescape")
    _, lines = encode(session_id, [HEADER, [0.1, "o", bad_text]])

    assert verify_lines(session_id, lines).ok
    assert json.loads(lines[1])[2] == bad_text


def test_it_encodes_bytes_as_base64_rather_than_failing(session_id):
    _, lines = encode(session_id, [HEADER, [0.1, "copy", b"\x00\x01binary"]])

    assert verify_lines(session_id, lines).ok
    assert json.loads(lines[1])[2] == "AAFiaW5hcnk="


def test_it_refuses_lines_that_cannot_carry_a_link(session_id):
    with pytest.raises(ValueError, match="header"):
        ChainWriter(session_id).encode_line([0.1, "o", "x"])
    with pytest.raises(ValueError, match="chain"):
        ChainWriter(session_id).encode_line({"version": 2, "chain": "x"})
    writer = ChainWriter(session_id)
    writer.encode_line(HEADER)
    with pytest.raises(ValueError, match="event"):
        writer.encode_line({"not": "an event"})


def test_it_names_an_edited_line(session_id):
    _, lines = encode(session_id)
    lines[2] = lines[2].replace(b'"1"', b'"2"')

    result = verify_lines(session_id, lines)

    assert not result.ok
    assert (result.bad_line, result.problem) == (3, Problem.MISMATCH)
    assert result.line_count == 2
    assert result.describe().startswith("line 3: chain link mismatch")


def test_it_names_the_line_after_a_deleted_one(session_id):
    _, lines = encode(session_id)
    del lines[3]

    result = verify_lines(session_id, lines)

    assert (result.ok, result.bad_line, result.problem) == (False, 4, Problem.MISMATCH)


def test_it_names_the_first_of_two_swapped_lines(session_id):
    _, lines = encode(session_id)
    lines[2], lines[4] = lines[4], lines[2]

    result = verify_lines(session_id, lines)

    assert (result.ok, result.bad_line, result.problem) == (False, 3, Problem.MISMATCH)


def test_it_rejects_a_line_taken_from_another_recording(session_id):
    other_id = str(uuid.uuid4())
    _, lines = encode(session_id)
    _, other_lines = encode(other_id)

    result = verify_lines(session_id, [*lines[:1], *other_lines[1:]])

    assert (result.ok, result.bad_line) == (False, 2)


def test_it_reports_a_missing_or_forged_link(session_id):
    _, lines = encode(session_id)
    event = json.loads(lines[2])
    lines[2] = (json.dumps(event[:3], separators=(",", ":")) + "\n").encode()
    result = verify_lines(session_id, lines)
    assert (result.bad_line, result.problem) == (3, Problem.NO_LINK)

    _, lines = encode(session_id)
    lines[1] = lines[1][:-4] + b'XY"]\n'  # not hex any more
    result = verify_lines(session_id, lines)
    assert (result.bad_line, result.problem) == (2, Problem.NO_LINK)


def test_it_reports_bad_json_bad_utf8_and_a_missing_header(session_id):
    _, lines = encode(session_id)
    broken = lines[2].replace(b'"result",', b'"result";')
    result = verify_lines(session_id, [*lines[:2], broken, *lines[3:]])
    assert (result.bad_line, result.problem) == (3, Problem.BAD_JSON)

    result = verify_lines(session_id, [*lines[:1], b"\xff\xfe\n", *lines[1:]])
    assert (result.bad_line, result.problem) == (2, Problem.NOT_UTF8)

    result = verify_lines(session_id, lines[1:])
    assert (result.bad_line, result.problem) == (1, Problem.NO_LINK)

    result = verify_lines(session_id, [])
    assert (result.ok, result.bad_line, result.problem) == (False, 1, Problem.EMPTY)


def test_it_reports_an_incomplete_last_line_distinctly(session_id):
    _, lines = encode(session_id)
    cut = lines[-1][:20]

    result = verify_lines(session_id, [*lines[:-1], cut])

    assert not result.ok
    assert (result.bad_line, result.problem) == (len(lines), Problem.INCOMPLETE)
    assert "incomplete last line" in result.reason
    # Everything before the cut verifies, and recovery knows where to cut.
    assert result.line_count == len(lines) - 1
    assert result.valid_bytes == sum(len(line) for line in lines[:-1])
    assert result.chain_head == verify_lines(session_id, lines[:-1]).chain_head


def test_it_continues_a_chain_from_a_snapshot(session_id):
    writer, lines = encode(session_id)
    state = writer.snapshot()
    writer.encode_line([3.0, "o", "lost"])
    writer.restore(state)
    lines.append(writer.encode_line([3.0, "o", "kept"]))

    assert verify_lines(session_id, lines).ok
