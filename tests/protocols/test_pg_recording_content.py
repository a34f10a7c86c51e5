"""What a PostgreSQL session's recording holds, checked after real sessions through the gateway.

Statements from Query and Parse, bind parameters (text as is, binary as
base64), result columns with type oids, rows up to the cap, command tags,
errors with their SQLSTATE, durations, one result per statement of a
multi-statement Query, and the Session row and seal once the session ends.
"""

import base64
import struct

import psycopg
import pytest

from tests.protocols.nodes import assert_verifies, bot_client
from tests.protocols.wire import (
    SYNC,
    WireClient,
    bind,
    describe_portal,
    execute,
    function_call,
    parse,
    query_message,
)

INT4, INT8, TEXT, BYTEA, NUMERIC, UNKNOWN_COLUMN = 23, 20, 25, 17, 1700, "?column?"
ROW_CAP, BYTE_CAP = 1000, 1 << 20


def b64(raw: bytes) -> dict:
    return {"b64": base64.b64encode(raw).decode()}


def extended(text: str, params: list[bytes | None], formats=(), result_formats=(), describe: bool = True) -> bytes:
    """One Parse/Bind/(Describe)/Execute/Sync round, as a driver sends it."""
    messages = [parse(text), bind(params, formats, result_formats)]
    if describe:
        messages.append(describe_portal())
    return b"".join([*messages, execute(), SYNC])


@pytest.fixture
def raw_session(raw_gateway, sealed_recording, app_name):
    """Runs `script(client)` in a raw session, ends it with Terminate and returns its sealed recording."""

    def run(script):
        client = raw_gateway()
        script(client)
        client.close()
        return sealed_recording(app_name)

    return run


def test_it_records_simple_query_statements_and_results(raw_session) -> None:
    def script(client: WireClient) -> None:
        client.exchange(query_message("SELECT id, name, price FROM items WHERE id <= 3 ORDER BY id"))
        client.exchange(query_message("SELECT 1/0"))
        client.exchange(query_message("SELECT pg_sleep(0.2)"))
        client.exchange(query_message(""))

    recording = raw_session(script)
    select = recording.sql("SELECT id, name, price FROM items WHERE id <= 3 ORDER BY id")
    assert "params" not in select
    [result] = recording.results_for(select["text"])
    assert result["columns"] == [["id", INT4], ["name", TEXT], ["price", NUMERIC]]
    assert result["rows"] == [["1", "item 1", "1.25"], ["2", "item 2", "2.50"], ["3", "item 3", "3.75"]]
    assert result["tag"] == "SELECT 3"
    assert "truncated" not in result and "error" not in result
    [failed] = recording.results_for("SELECT 1/0")
    assert failed["error"] == {"code": "22012", "message": "division by zero", "severity": "ERROR"}
    [slept] = recording.results_for("SELECT pg_sleep(0.2)")
    assert slept["ms"] >= 200  # measured from the Query the gateway forwarded to the server's answer
    assert all(isinstance(r["ms"], float | int) and r["ms"] >= 0 for r in recording.data("result"))
    [empty] = recording.results_for("")
    assert empty["tag"] == ""


def test_it_records_parse_text_and_bind_parameters(raw_session) -> None:
    text = "SELECT $1::int4 + 1, $2::bytea, $3::text, $4::int8"
    params = [b"41", b"\x00\x01\xffraw", None, struct.pack("!q", 2**40)]

    def script(client: WireClient) -> None:
        client.exchange(extended(text, params, formats=(0, 1, 0, 1), result_formats=(1,)))
        client.exchange(extended("SELECT $1::text || '!'", ["ünïcode ✓".encode()], describe=False))
        client.exchange(extended("SELECT 10 / $1::int", [b"0"]))

    recording = raw_session(script)
    statement = recording.sql(text)
    assert statement["params"] == ["41", b64(b"\x00\x01\xffraw"), None, b64(struct.pack("!q", 2**40))]
    [result] = recording.results_for(text)
    assert result["columns"] == [[UNKNOWN_COLUMN, INT4], ["bytea", BYTEA], ["text", TEXT], ["int8", INT8]]
    assert result["rows"] == [
        [b64(struct.pack("!i", 42)), b64(b"\x00\x01\xffraw"), None, b64(struct.pack("!q", 2**40))]
    ]
    assert result["tag"] == "SELECT 1"
    assert recording.sql("SELECT $1::text || '!'")["params"] == ["ünïcode ✓"]
    [undescribed] = recording.results_for("SELECT $1::text || '!'")
    assert undescribed["rows"] == [["ünïcode ✓!"]]
    assert "copy" not in undescribed
    [failed] = recording.results_for("SELECT 10 / $1::int")
    assert failed["error"]["code"] == "22012"


def test_it_records_one_result_per_statement_of_a_query(raw_session) -> None:
    several = "SELECT 1 AS one; UPDATE items SET price = price WHERE id <= 4; SELECT 'x' AS x, 2 AS y"
    broken = "SELECT 'before'; SELECT 1/0; SELECT 'never run'"

    def script(client: WireClient) -> None:
        client.exchange(query_message(several))
        client.exchange(query_message(broken))

    recording = raw_session(script)
    results = recording.results_for(several)
    assert len(recording.data("sql")) == 2
    assert [r["tag"] for r in results] == ["SELECT 1", "UPDATE 4", "SELECT 1"]
    assert [r.get("columns") for r in results] == [[["one", INT4]], None, [["x", TEXT], ["y", INT4]]]
    assert [r.get("rows") for r in results] == [[["1"]], None, [["x", "2"]]]
    after_error = recording.results_for(broken)
    assert [r.get("tag") for r in after_error] == ["SELECT 1", None]
    assert after_error[0]["rows"] == [["before"]]
    assert after_error[1]["error"]["code"] == "22012"


def test_it_caps_recorded_rows_and_marks_the_result_truncated(connect, sealed_recording, app_name) -> None:
    conn = connect(autocommit=True)
    statements = {
        "at the row cap": "SELECT i FROM generate_series(1, 1000) AS i",
        "over the row cap": "SELECT i FROM generate_series(1, 1500) AS i",
        "over the byte cap": "SELECT repeat('x', 10000) FROM generate_series(1, 200)",
    }
    seen = {name: conn.execute(statement).fetchall() for name, statement in statements.items()}
    copy = "COPY (SELECT repeat('y', 1000) FROM generate_series(1, 2000)) TO STDOUT"
    with conn.cursor() as cur, cur.copy(copy) as copying:
        copied = b"".join(bytes(chunk) for chunk in copying)
    conn.close()
    assert [len(rows) for rows in seen.values()] == [ROW_CAP, ROW_CAP + 500, 200]  # the client gets everything

    recording = sealed_recording(app_name)
    [at_cap] = recording.results_for(statements["at the row cap"])
    assert len(at_cap["rows"]) == ROW_CAP and "truncated" not in at_cap
    [over_rows] = recording.results_for(statements["over the row cap"])
    assert over_rows["truncated"] is True
    assert over_rows["rows"] == [[str(i)] for i in range(1, ROW_CAP + 1)]
    assert over_rows["tag"] == f"SELECT {ROW_CAP + 500}"
    [over_bytes] = recording.results_for(statements["over the byte cap"])
    assert over_bytes["truncated"] is True
    # As many whole rows as fit in 1 MiB (counting each row's bytes on the wire), and not one more.
    row_size = 2 + 4 + 10000
    assert over_bytes["rows"] == [["x" * 10000]] * (BYTE_CAP // row_size)
    [copied_out] = recording.results_for(copy)
    assert copied_out["truncated"] is True and copied_out["tag"] == "COPY 2000"
    assert copied_out["copy_bytes"] == len(copied) == 2000 * 1001
    assert copied_out["copy"] == [["y" * 1000 + "\n"]] * (BYTE_CAP // 1001)


def test_it_records_copy_in_and_out(connect, sealed_recording, app_name) -> None:
    conn = connect(autocommit=True)
    conn.execute("CREATE TEMP TABLE landed (id int, note text)")
    with conn.cursor() as cur:
        with cur.copy("COPY landed FROM STDIN") as copy:
            copy.write(b"1\tfirst\n2\tsecond\n")
        with cur.copy("COPY (SELECT id, note FROM landed ORDER BY id) TO STDOUT") as copy:
            assert b"".join(bytes(chunk) for chunk in copy) == b"1\tfirst\n2\tsecond\n"
    conn.close()

    recording = sealed_recording(app_name)
    [copy_in] = recording.results_for("COPY landed FROM STDIN")
    assert copy_in["tag"] == "COPY 2"
    assert "".join(chunk for [chunk] in copy_in["copy"]) == "1\tfirst\n2\tsecond\n"
    [copy_out] = recording.results_for("COPY (SELECT id, note FROM landed ORDER BY id) TO STDOUT")
    assert copy_out["copy"] == [["1\tfirst\n"], ["2\tsecond\n"]] and copy_out["copy_bytes"] == 17


def test_it_records_each_statement_of_a_pipeline(connect, sealed_recording, app_name) -> None:
    conn = connect(autocommit=True)
    with conn.pipeline():
        conn.execute("SELECT id FROM items WHERE id = %s", (1,))
        conn.execute("SELECT name, email FROM items WHERE id = %s", (2,))
        conn.execute("SELECT %s::text AS greeting", ("hello",))
    conn.close()

    recording = sealed_recording(app_name)
    results = recording.data("result")
    assert [r["columns"] for r in results] == [[["id", INT4]], [["name", TEXT], ["email", TEXT]], [["greeting", TEXT]]]
    assert [r["rows"] for r in results] == [[["1"]], [["item 2", "user2@example.com"]], [["hello"]]]


def test_it_records_a_function_call(raw_session) -> None:
    def script(client: WireClient) -> None:
        (oid,) = client.query("SELECT 'int4pl'::regproc::oid")[0]
        client.exchange(function_call(int(oid), [struct.pack("!i", 2), struct.pack("!i", 40)], 1, 1))

    recording = raw_session(script)
    call = recording.data("sql")[-1]
    assert "function call" in call["text"]
    assert call["params"] == [b64(struct.pack("!i", 2)), b64(struct.pack("!i", 40))]
    assert recording.data("result")[-1]["value"] == b64(struct.pack("!i", 42))


def test_it_records_a_function_call_in_text(raw_session) -> None:
    def script(client: WireClient) -> None:
        (oid,) = client.query("SELECT 'int4pl'::regproc::oid")[0]
        client.exchange(function_call(int(oid), [b"2", b"40"], 0, 0))

    recording = raw_session(script)
    assert recording.data("sql")[-1]["params"] == ["2", "40"]
    assert recording.data("result")[-1]["value"] == "42"


def test_it_records_notices_notifications_and_parameter_changes(gateway_psql, sealed_recording, app_name) -> None:
    gateway_psql(
        "-c",
        "DO $$ BEGIN RAISE NOTICE 'careful: %', 7; END $$",
        "-c",
        "LISTEN jobs",
        "-c",
        "NOTIFY jobs, 'run-42'",
        "-c",
        "SET application_name = 'renamed-bot'",
    )
    recording = sealed_recording(app_name)
    assert {"code": "00000", "message": "careful: 7", "severity": "NOTICE"} in recording.data("notice")
    assert [(n["channel"], n["payload"]) for n in recording.data("notify")] == [("jobs", "run-42")]
    assert {"application_name": "renamed-bot"} in recording.data("param")


def test_it_seals_the_session_with_its_counters(gateway, gateway_psql, sealed_recording, app_name) -> None:
    gateway_psql("-c", "SELECT count(*) FROM items", "-c", "SELECT 1/0", "-c", "SELECT 'done'", check=False)
    recording = sealed_recording(app_name)
    row, header = recording.row, recording.header["gatehouse"]
    assert row["status"] == "ended"
    assert (header["actor"], header["account"], header["connection"]) == ("agent:ci-bot", "ci-bot", "pg-main")
    assert header["application_name"] == row["application_name"] == app_name
    assert header["client_addr"].startswith("127.0.0.1:")
    # Without ON_ERROR_STOP psql goes on after the failed command.
    assert [sql["text"] for sql in recording.data("sql")] == [
        "SELECT count(*) FROM items",
        "SELECT 1/0",
        "SELECT 'done'",
    ]
    end = recording.data("end")[0]
    assert row["statements"] == end["statements"] == len(recording.data("sql"))
    assert row["errors"] == end["errors"] == 1
    assert row["bytes_from_client"] == end["bytes_from_client"] > 0
    assert row["bytes_to_client"] == end["bytes_to_client"] > 0
    assert row["line_count"] == len(recording.events) + 1
    assert row["chain_head"] == recording.events[-1][-1]
    assert recording.events[-1][1] == "end"

    assert_verifies(gateway, header["session"])
    assert_verifies(gateway, "--all")


def test_it_records_why_a_session_closed(gateway, sealed_recording, app_name) -> None:
    client = bot_client(gateway, application_name=app_name)
    client.query("SELECT 1")
    client.sock.close()  # no Terminate: the client just goes away

    recording = sealed_recording(app_name)
    assert recording.data("closed") == [{"reason": "client disconnected"}]
    assert recording.row["status"] == "ended"


def test_it_keeps_the_session_usable_after_recording_odd_values(connect, sealed_recording, app_name) -> None:
    conn = connect(autocommit=True)
    odd = "SELECT %s::text, %s::bytea, chr(128512)"
    assert conn.execute(odd, ('tab\tnewline\n quote" backslash\\', b"\x80\xfe")).fetchone()[2] == "😀"
    with pytest.raises(psycopg.errors.InvalidTextRepresentation):
        conn.execute("SELECT 'not a number'::int")
    assert conn.execute("SELECT 'fine'").fetchone() == ("fine",)
    conn.close()

    recording = sealed_recording(app_name)
    [result] = recording.results_for("SELECT $1::text, $2::bytea, chr(128512)")
    assert result["rows"][0][0] == 'tab\tnewline\n quote" backslash\\'
    assert result["rows"][0][2] == "😀"
    [failed] = recording.results_for("SELECT 'not a number'::int")
    assert failed["error"]["code"] == "22P02"
