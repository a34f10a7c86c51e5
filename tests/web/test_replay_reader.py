"""recordings.replay: statements rebuilt from real recording files, pages, exports, casts and live rows."""

import json

import pytest

from recordings.actions import recording_file
from recordings.models import Session
from recordings.replay import StatementReader, cast_lines, export_rows, live_rows, read_page
from tests.web.recorded_events import DELETE, DENIAL, LOOKUP, MASKED_EMAIL, REVIEW_ID, many_statements, session_events


def test_it_groups_events_into_statements_with_their_decisions(record_session):
    session = record_session(session_events())
    reader = StatementReader(recording_file(session))

    first, second, third = reader.statements()

    assert (first.n, first.text, first.rows, first.ms) == (1, LOOKUP, 1, 0.84)
    assert first.results[0]["column_names"] == ["id", "email", "card"]
    assert first.results[0]["rows"][0][1] == MASKED_EMAIL
    assert (second.text, second.params, second.rows) == (DELETE, ["7"], 1)
    assert second.policy["action"] == "allow"
    assert second.review == {
        "id": REVIEW_ID,
        "rule": "deletes",
        "status": "approved",
        "approvals": 1,
        "by": "alice",
        "comment": "known cleanup",
    }
    assert third.denied and third.policy["rule"] == "no-drops"
    assert third.error == f"42501: {DENIAL}"
    assert [event.kind for event in third.events] == ["notice"]
    assert reader.server_params == {"server_version": "16.4"}
    assert [event.kind for event in reader.session_events] == ["closed", "end"]
    assert reader.reached_end and reader.kind == "postgres"


def test_it_gives_a_denied_parse_its_text_and_keeps_a_withdrawn_review_apart(record_session):
    events = [
        ("review", {"id": "r1", "rule": "deletes", "status": "pending"}),
        ("review", {"id": "r1", "status": "withdrawn", "by": "client"}),
        ("policy", {"action": "deny", "rule": "no-drops", "message": "denied", "text": "DROP TABLE t"}),
        ("sql", {"n": 1, "text": ""}),
        ("result", {"n": 1, "error": {"code": "42501", "message": "denied"}}),
        ("policy", {"action": "allow", "rule": "r", "message": "approved", "text": "SELECT 2"}),
        ("sql", {"n": 2, "text": "SELECT 1"}),
        ("result", {"n": 2, "tag": "SELECT 1", "rows": [["1"]], "columns": [["?column?", 23]]}),
    ]
    session = record_session(events)
    reader = StatementReader(recording_file(session))

    first, second = reader.statements()

    assert (first.text, first.denied, first.review["status"]) == ("DROP TABLE t", True, "withdrawn")
    assert second.policy is None  # decided on another text: not this statement's
    assert [event.data["text"] for event in reader.session_events if event.kind == "policy"] == ["SELECT 2"]


def test_it_pairs_pipelined_results_and_multi_statement_queries(record_session):
    events = [
        ("sql", {"n": 1, "text": "SELECT 1; SELECT 2"}),
        ("result", {"n": 1, "tag": "SELECT 1", "ms": 1.0}),
        ("result", {"n": 1, "tag": "SELECT 1", "ms": 2.0}),
        ("sql", {"n": 2, "text": "SELECT $1", "params": ["a"]}),
        ("sql", {"n": 3, "text": "SELECT $1", "params": ["b"]}),
        ("result", {"n": 2, "tag": "SELECT 1"}),
        ("result", {"n": 3, "aborted": "session ended"}),
    ]
    session = record_session(events)

    statements = list(StatementReader(recording_file(session)).statements())

    assert [(s.n, s.rows, s.ms) for s in statements] == [(1, 2, 3.0), (2, 1, None), (3, None, None)]
    assert statements[2].error == "aborted: session ended"


def test_it_reads_one_page_and_stops_soon_after_it(record_session):
    session = record_session(many_statements(450))
    path = recording_file(session)

    first, second, third = read_page(path, 1), read_page(path, 2), read_page(path, 3)

    assert [s.n for s in first.statements] == list(range(1, 201))
    assert first.has_next and not first.reader.reached_end
    assert [s.n for s in second.statements] == list(range(201, 401))
    assert second.statements[0].results[0]["rows"] == [["201"]]
    assert [s.n for s in third.statements] == list(range(401, 451))
    assert not third.has_next and third.reader.reached_end
    assert read_page(path, 99).statements == []


def test_it_keeps_only_the_shown_rows_of_a_big_result(record_session):
    rows = [[str(i)] for i in range(500)]
    session = record_session(
        [("sql", {"n": 1, "text": "SELECT i"}), ("result", {"n": 1, "columns": [["i", 23]], "rows": rows})]
    )

    (statement,) = StatementReader(recording_file(session)).statements()

    assert len(statement.results[0]["rows"]) == 100
    assert statement.results[0]["row_count"] == 500 and statement.rows == 500


def test_it_skips_a_torn_last_line(record_session):
    session = record_session(many_statements(2), status=Session.Status.LIVE)
    with recording_file(session).open("ab") as handle:
        handle.write(b'[0.5,"sql",{"n":3,"te')

    statements = list(StatementReader(recording_file(session)).statements())

    assert [s.n for s in statements] == [1, 2]


def test_it_exports_one_flat_row_per_statement(record_session):
    session = record_session(session_events())

    rows = list(export_rows(recording_file(session), session.started_at))

    assert [row["n"] for row in rows] == [1, 2, 3]
    assert rows[1] | {"time": None, "duration_ms": None} == {
        "n": 2,
        "time": None,
        "text": DELETE,
        "params": ["7"],
        "rows": 1,
        "error": "",
        "duration_ms": None,
        "policy_action": "allow",
        "policy_rule": "deletes",
        "review_status": "approved",
        "review_by": "alice",
    }
    assert rows[2]["policy_action"] == "deny" and rows[2]["error"].startswith("42501")
    assert rows[0]["time"].startswith(session.started_at.date().isoformat())


def test_it_makes_an_asciicast_of_a_terminal_session(record_session):
    events = [("o", "$ "), ("i", "ls\r"), ("r", "100x30"), ("o", "README.md\r\n"), ("closed", {"reason": "exit"})]
    session = record_session(events, kind="ssh")

    header, *lines = [json.loads(line) for line in cast_lines(recording_file(session))]

    assert header["version"] == 2 and header["width"] == 80 and "chain" not in header
    assert [line[1:] for line in lines] == [["o", "$ "], ["i", "ls\r"], ["r", "100x30"], ["o", "README.md\r\n"]]
    assert all(len(line) == 3 for line in lines)


def test_it_renders_live_rows_for_the_ws_extension_to_append():
    events = [
        (1, 0.01, "sql", {"n": 1, "text": "SELECT <b>1</b>"}),
        (2, 0.02, "result", {"n": 1, "ms": 0.5, "columns": [["x", 23]], "rows": [["1"]], "tag": "SELECT 1"}),
        (3, 0.03, "o", "\x1b[1;32mgreen\x1b[0m prompt$ "),
        (5, 0.05, "r", "100x30"),
        (4, 0.04, "terminated", {"by": "alice", "reason": "enough"}),
    ]

    html = live_rows(events)

    assert html.strip().startswith('<tbody id="live-events" hx-swap-oob="beforeend">')
    assert html.strip().endswith("</tbody>")
    assert html.count('<tr id="event-') == 4
    assert "SELECT &lt;b&gt;1&lt;/b&gt;" in html and "<b>1</b>" not in html
    assert "SELECT 1 · 1 rows · 0.5 ms" in html
    assert "terminated by alice: enough" in html
    assert "green prompt$ " in html and "\x1b" not in html and "[1;32m" not in html
    assert "100x30" not in html


def test_it_says_how_many_live_events_were_skipped():
    html = live_rows([], skipped=12)

    assert 'id="live-events"' in html and "12 events came faster" in html


@pytest.mark.parametrize("data", [None, "text", 5, {"unexpected": "shape"}])
def test_it_renders_odd_event_data_without_failing(data):
    html = live_rows([(1, 0.0, "result", data), (2, 0.0, "mystery", data)])

    assert html.count('<tr id="event-') == 2
