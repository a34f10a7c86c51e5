"""Real PostgreSQL clients through the gateway: psql, psycopg (sync, async, pipeline), pgbench, raw protocol.

Wherever it makes sense a test runs the same client twice, once through the
gateway and once straight to the cluster, and compares what it got.
"""

import asyncio
import re
import struct
import subprocess
import threading
from collections.abc import Callable, Iterator
from decimal import Decimal

import psycopg
import pytest
from psycopg import errors, sql

from tests.protocols.nodes import clean_env, wait_for_upstream_query
from tests.protocols.wire import (
    SYNC,
    WireClient,
    bind,
    cancel_request,
    describe_portal,
    error_fields,
    execute,
    function_call,
    kinds_of,
    parse,
    query_message,
    rows_of,
)
from tests.support.gateway_process import GatewayProcess

ITEMS_QUERY = "SELECT id, name, email, price, created_at FROM items ORDER BY id"
PGBENCH_TABLES = ("pgbench_accounts", "pgbench_branches", "pgbench_tellers", "pgbench_history")


def all_rows(conn: psycopg.Connection, query: str, params: object = None, binary: bool = False) -> list[tuple]:
    with conn.cursor(binary=binary) as cur:
        return cur.execute(query, params).fetchall()


def copy_out(conn: psycopg.Connection, statement: str) -> bytes:
    with conn.cursor() as cur, cur.copy(statement) as copy:
        return b"".join(bytes(chunk) for chunk in copy)


@pytest.fixture
def scratch_table(direct: psycopg.Connection, app_name: str) -> Iterator[str]:
    """A real table (so direct access sees what the gateway wrote), dropped after the test."""
    name = app_name.replace("-", "_")
    direct.execute(
        sql.SQL("CREATE TABLE {} (id int PRIMARY KEY, name text, price numeric(10, 2))").format(sql.Identifier(name))
    )
    yield name
    direct.execute(sql.SQL("DROP TABLE {}").format(sql.Identifier(name)))


# --- psql ------------------------------------------------------------------------


def test_it_runs_psql_queries_like_direct(gateway_psql, direct_psql) -> None:
    for statement in (ITEMS_QUERY, "SELECT 1; SELECT 'two', 2.5; SELECT count(*) FROM items"):
        through = gateway_psql("-c", statement)
        assert through.stdout == direct_psql("-c", statement).stdout
    assert through.stdout.splitlines() == ["1", "two|2.5", "100"]
    assert len(gateway_psql("-c", ITEMS_QUERY).stdout.splitlines()) == 100


def test_it_copies_in_and_out_with_psql(gateway_psql, direct, tmp_path) -> None:
    exported = tmp_path / "items.csv"
    gateway_psql("-c", f"\\copy ({ITEMS_QUERY}) TO '{exported}' WITH (FORMAT csv)")
    assert exported.read_bytes() == copy_out(direct, f"COPY ({ITEMS_QUERY}) TO STDOUT WITH (FORMAT csv)")

    inline = "".join(f"{i},inline {i},i{i}@example.com,{i}.50,2024-02-01 00:00:00+00\n" for i in range(1, 2001))
    script = (
        "CREATE TEMP TABLE copied (LIKE items);\n"
        f"\\copy copied FROM '{exported}' WITH (FORMAT csv)\n"
        "CREATE TEMP TABLE streamed (LIKE items);\n"
        f"COPY streamed FROM STDIN WITH (FORMAT csv);\n{inline}\\.\n"
        "SELECT count(*), sum(price), min(email), max(created_at) FROM copied;\n"
        "SELECT count(*), sum(price), max(name) FROM streamed;\n"
    )
    output = gateway_psql("-v", "ON_ERROR_STOP=1", stdin=script).stdout.splitlines()
    items_summary = direct.execute("SELECT count(*), sum(price), min(email), max(created_at) FROM items").fetchone()
    assert output[:4] == ["CREATE TABLE", "COPY 100", "CREATE TABLE", "COPY 2000"]
    assert output[4].split("|")[:3] == [str(items_summary[0]), str(items_summary[1]), items_summary[2]]
    assert output[5] == f"2000|{sum(Decimal(f'{i}.50') for i in range(1, 2001))}|inline 999"


def test_it_rolls_back_a_failed_transaction_in_psql(gateway_psql, direct_psql) -> None:
    script = (
        "CREATE TEMP TABLE ledger (n int);\n"
        "BEGIN;\n"
        "INSERT INTO ledger VALUES (1);\n"
        "SELECT 1/0;\n"
        "INSERT INTO ledger VALUES (2);\n"
        "ROLLBACK;\n"
        "SELECT count(*) FROM ledger;\n"
    )
    through = gateway_psql(stdin=script)
    straight = direct_psql(stdin=script)
    assert (through.stdout, through.stderr) == (straight.stdout, straight.stderr)
    assert "ERROR:  division by zero" in through.stderr
    assert "ERROR:  current transaction is aborted" in through.stderr
    assert through.stdout.splitlines()[-2:] == ["ROLLBACK", "0"]


def test_it_delivers_notifications(connect, gateway_psql) -> None:
    listener = connect(autocommit=True)
    listener.execute("LISTEN gatehouse_news")
    gateway_psql("-c", "NOTIFY gatehouse_news, 'from another session'")
    notes = list(listener.notifies(timeout=10, stop_after=1))
    assert [(note.channel, note.payload) for note in notes] == [("gatehouse_news", "from another session")]

    own = gateway_psql("-c", "LISTEN gatehouse_self; NOTIFY gatehouse_self, 'echo'").stdout
    assert 'Asynchronous notification "gatehouse_self" with payload "echo" received' in own


def test_it_passes_notices_to_the_client(connect, gateway_psql) -> None:
    result = gateway_psql("-c", "DO $$BEGIN RAISE NOTICE 'gatehouse notice %', 42; END$$")
    assert "NOTICE:  gatehouse notice 42" in result.stderr

    conn = connect(autocommit=True)
    notices: list[tuple[str | None, str | None]] = []
    # A Diagnostic is only valid inside the handler: keep its fields, not it.
    conn.add_notice_handler(lambda notice: notices.append((notice.severity, notice.message_primary)))
    conn.execute("DO $$BEGIN RAISE WARNING 'careful: %', 'stairs'; END$$")
    assert notices == [("WARNING", "careful: stairs")]


def test_it_reports_parameter_status_like_direct(connect, direct, app_name) -> None:
    conn = connect(autocommit=True)
    for name in ("server_version", "server_encoding", "DateStyle", "TimeZone", "standard_conforming_strings"):
        assert conn.info.parameter_status(name) == direct.info.parameter_status(name)
    assert conn.info.parameter_status("application_name") == app_name

    conn.execute("SET application_name = 'renamed-mid-session'")
    assert conn.info.parameter_status("application_name") == "renamed-mid-session"
    conn.execute("SET client_encoding = 'LATIN1'")
    assert conn.info.parameter_status("client_encoding") == "LATIN1"
    assert conn.info.encoding == "iso8859-1"
    assert conn.execute("SELECT 'café, naïve'").fetchone() == ("café, naïve",)


# --- psycopg, sync -------------------------------------------------------------------


def test_it_binds_parameters_like_direct(connect, direct) -> None:
    conn = connect()
    query = "SELECT id, name, price, created_at FROM items WHERE id = ANY(%s) AND name LIKE %s ORDER BY id"
    params = ([3, 14, 15, 92, 65], "item 1%")
    assert all_rows(conn, query, params) == all_rows(direct, query, params) != []
    typed = "SELECT %s::int8, %s::text, %s::numeric, %s::bytea, %s::jsonb, %s::int[], %s::text IS NULL"
    values = (2**40, "ünïcode ✓", Decimal("12.345"), b"\x00\xffraw", '{"k": [1, 2]}', [1, None, 3], None)
    assert all_rows(conn, typed, values) == all_rows(direct, typed, values)


def test_it_runs_prepared_statements(connect, direct) -> None:
    conn = connect(autocommit=True)
    query = "SELECT id, email, price FROM items WHERE id = %s"
    for item in (1, 7, 42, 99, 100, 7):
        assert conn.execute(query, (item,), prepare=True).fetchall() == direct.execute(query, (item,)).fetchall()
    prepared = conn.execute("SELECT statement FROM pg_prepared_statements").fetchall()
    assert ("SELECT id, email, price FROM items WHERE id = $1",) in prepared


def test_it_returns_binary_results_like_direct(connect, direct) -> None:
    conn = connect()
    typed = (
        "SELECT 1::int2, 2::int8, 1.5::float8, 12.30::numeric, 'x'::bytea, date '2024-02-29',"
        " '{1,2,3}'::int[], '{\"a\": 1}'::jsonb, NULL::text, '6b0c0d3e-1f2a-4b5c-8d9e-0f1a2b3c4d5e'::uuid"
    )
    for query in (ITEMS_QUERY, typed):
        with conn.cursor(binary=True) as cur:
            rows = cur.execute(query).fetchall()
            assert cur.pgresult.fformat(0) == 1
        assert rows == all_rows(direct, query, binary=True) == all_rows(direct, query)


def test_it_runs_executemany(connect, direct, scratch_table) -> None:
    conn = connect(autocommit=True)
    rows = [(i, f"row {i}", Decimal(i) / 4) for i in range(1, 301)]
    insert = sql.SQL("INSERT INTO {} (id, name, price) VALUES (%s, %s, %s)").format(sql.Identifier(scratch_table))
    with conn.cursor() as cur:
        cur.executemany(insert, rows)
        assert cur.rowcount == 300
        update = sql.SQL("UPDATE {} SET price = price * 2 WHERE id = %s RETURNING id, price")
        cur.executemany(update.format(sql.Identifier(scratch_table)), [(5,), (6,)], returning=True)
        returned = []
        while True:
            returned += cur.fetchall()
            if not cur.nextset():
                break
    assert returned == [(5, Decimal("2.50")), (6, Decimal("3.00"))]
    stored = all_rows(
        direct, sql.SQL("SELECT id, name, price FROM {} ORDER BY id").format(sql.Identifier(scratch_table))
    )
    assert stored == [(i, name, price * 2 if i in (5, 6) else price) for i, name, price in rows]


def test_it_copies_with_psycopg(connect, direct, scratch_table) -> None:
    conn = connect(autocommit=True)
    table = sql.Identifier(scratch_table)
    text_rows = [(i, f"text\t{i}\\n", Decimal(i)) for i in range(1, 1001)]
    binary_rows = [(i, f"binary {i}", None) for i in range(1001, 1501)]
    with conn.cursor() as cur:
        with cur.copy(sql.SQL("COPY {} (id, name, price) FROM STDIN").format(table)) as copy:
            for row in text_rows:
                copy.write_row(row)
        with cur.copy(sql.SQL("COPY {} (id, name, price) FROM STDIN (FORMAT BINARY)").format(table)) as copy:
            copy.set_types(["int4", "text", "numeric"])
            for row in binary_rows:
                copy.write_row(row)
    select = sql.SQL("SELECT id, name, price FROM {} ORDER BY id").format(table)
    assert all_rows(direct, select) == text_rows + binary_rows
    for statement in (f"COPY ({ITEMS_QUERY}) TO STDOUT", f"COPY ({ITEMS_QUERY}) TO STDOUT (FORMAT BINARY)"):
        assert copy_out(conn, statement) == copy_out(direct, statement)
    with (
        conn.cursor() as cur,
        cur.copy("COPY (SELECT id, name FROM items WHERE id <= 3 ORDER BY id) TO STDOUT") as copy,
    ):
        assert list(copy.rows()) == [("1", "item 1"), ("2", "item 2"), ("3", "item 3")]


def test_it_fetches_a_named_cursor_in_batches(connect, direct) -> None:
    conn = connect()
    query = "SELECT i, md5(i::text) FROM generate_series(1, 2500) AS i"
    batches = []
    with conn.transaction(), conn.cursor(name="gatehouse_batches") as cur:
        cur.execute(query)
        while batch := cur.fetchmany(400):
            batches.append(batch)
    assert [len(batch) for batch in batches] == [400] * 6 + [100]
    assert [row for batch in batches for row in batch] == all_rows(direct, query)


def test_it_suspends_a_portal_like_direct(raw_gateway, raw_direct) -> None:
    """Execute with a row limit: PortalSuspended after each batch, as libpq-based cursors never ask for."""
    messages = (
        parse("SELECT id, name FROM items WHERE id <= $1 ORDER BY id"),
        bind([b"100"]),
        describe_portal(),
        *(execute(max_rows=40) for _ in range(3)),
        SYNC,
    )
    through, straight = (client.exchange(*messages) for client in (raw_gateway(), raw_direct()))
    assert through == straight
    assert kinds_of(through) == b"12T" + b"D" * 40 + b"s" + b"D" * 40 + b"s" + b"D" * 20 + b"CZ"
    assert [row[0] for row in rows_of(through)] == [str(i).encode() for i in range(1, 101)]


def test_it_streams_a_large_result_like_direct(connect, direct) -> None:
    conn = connect()
    query = "SELECT i, md5(i::text), i * 0.5, repeat('x', i % 50) FROM generate_series(1, 50000) AS i"
    through = all_rows(conn, query)
    assert len(through) == 50000
    assert through == all_rows(direct, query)
    assert all_rows(conn, query, binary=True) == through


# --- psycopg, async and pipeline ---------------------------------------------------------


def pipeline_outcome(conn: psycopg.Connection) -> list:
    """Pipelined batches, one of them failing mid-way, as plain values to compare."""
    outcome: list = []
    with conn.pipeline() as pipeline:
        cursors = [
            conn.execute("SELECT id, name FROM items WHERE id < %s ORDER BY id", (5,)),
            conn.execute("SELECT count(*), sum(price) FROM items"),
            conn.execute("SELECT %s::text || %s::text", ("pipe", "lined")),
        ]
        pipeline.sync()
        outcome += [cur.fetchall() for cur in cursors]
    # psycopg raises as soon as it reads the error, which may be before it sends the last query.
    sent: list[psycopg.Cursor] = []
    try:
        with conn.pipeline():
            for query in ("SELECT 'before the error'", "SELECT 1/0", "SELECT 'skipped'"):
                sent.append(conn.execute(query))
    except errors.DivisionByZero as exc:
        outcome.append(("raised", exc.sqlstate))
    outcome.append(sent[0].fetchall())
    outcome.append(conn.execute("SELECT 'usable after the error'").fetchall())
    return outcome


def test_it_pipelines_like_direct(connect, direct) -> None:
    through = pipeline_outcome(connect(autocommit=True))
    assert through == pipeline_outcome(direct)
    assert ("raised", "22012") in through
    assert through[-2:] == [[("before the error",)], [("usable after the error",)]]


async def async_outcome(dsn: str, **options: object) -> list:
    """A little of everything over AsyncConnection: params, a named cursor, COPY out and a pipeline."""
    outcome: list = []
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True, **options) as conn:
        cur = await conn.execute("SELECT id, email FROM items WHERE price > %s ORDER BY id", (Decimal("110"),))
        outcome.append(await cur.fetchall())
        async with conn.transaction(), conn.cursor(name="async_batches") as named:
            await named.execute("SELECT i FROM generate_series(1, 250) AS i")
            outcome.append([len(await named.fetchmany(100)) for _ in range(3)])
        async with conn.cursor() as cur, cur.copy("COPY (SELECT id, price FROM items ORDER BY id) TO STDOUT") as copy:
            outcome.append([row async for row in copy.rows()])
        async with conn.pipeline() as pipeline:
            first = await conn.execute("SELECT max(id) FROM items")
            second = await conn.execute("SELECT %s::int * 2", (21,))
            await pipeline.sync()
            outcome.append([await first.fetchall(), await second.fetchall()])
        try:
            async with conn.pipeline():
                await conn.execute("SELECT 1/0")
        except errors.DivisionByZero as exc:
            outcome.append(("raised", exc.sqlstate))
        outcome.append(await (await conn.execute("SELECT current_user")).fetchall())
    return outcome


def test_it_serves_async_clients_like_direct(gateway, pg_cluster, app_name) -> None:
    async def both() -> tuple[list, list]:
        return await asyncio.gather(
            async_outcome(gateway.dsn(), application_name=app_name), async_outcome(pg_cluster.dsn())
        )

    through, straight = asyncio.run(both())
    assert through == straight
    assert through[1] == [100, 100, 50]
    assert ("raised", "22012") in through


def test_it_serves_concurrent_async_sessions(gateway, app_name) -> None:
    async def one(n: int) -> list[tuple]:
        async with await psycopg.AsyncConnection.connect(gateway.dsn(), application_name=app_name) as conn:
            cur = await conn.execute("SELECT %s::int, pg_backend_pid() <> 0, count(*) FROM items", (n,))
            return await cur.fetchall()

    async def many() -> list[list[tuple]]:
        return await asyncio.gather(*(one(n) for n in range(8)))

    assert asyncio.run(many()) == [[(n, True, 100)] for n in range(8)]


# --- pgbench -------------------------------------------------------------------------------


def pgbench(gateway: GatewayProcess, app_name: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = clean_env(
        PGHOST="127.0.0.1",
        PGPORT=str(gateway.pg_port),
        PGUSER=gateway.agent_name or "",
        PGPASSWORD=gateway.token or "",
        PGDATABASE=gateway.connection_name or "",
        PGSSLMODE="require",
        PGAPPNAME=app_name,
        PGCONNECT_TIMEOUT="15",
    )
    result = subprocess.run(["pgbench", *args], capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode == 0, f"pgbench {' '.join(args)} exited {result.returncode}:\n{result.stderr[-2000:]}"
    return result


@pytest.fixture(scope="module")
def pgbench_tables(gateway, pg_cluster) -> Iterator[None]:
    """pgbench -i -s 1 through the gateway, once for the module; the tables are dropped afterwards."""
    pgbench(gateway, "pgbench-init", "-i", "-s", "1")
    yield
    with psycopg.connect(pg_cluster.dsn(), autocommit=True) as conn:
        conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(sql.SQL(", ").join(map(sql.Identifier, PGBENCH_TABLES))))


def test_it_initialises_pgbench_through_the_gateway(pgbench_tables, direct) -> None:
    counts = [
        direct.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(t))).fetchone()[0]
        for t in PGBENCH_TABLES
    ]
    assert counts == [100_000, 1, 10, 0]
    keys = direct.execute(
        "SELECT count(*) FROM pg_constraint WHERE contype = 'p' AND conrelid::regclass::text LIKE 'pgbench_%'"
    )
    assert keys.fetchone()[0] == 3


@pytest.mark.parametrize("mode", ["simple", "extended", "prepared"])
def test_it_runs_pgbench_through_the_gateway(pgbench_tables, gateway, direct, app_name, mode, sealed_recording) -> None:
    output = pgbench(gateway, app_name, "-n", "-T", "3", "-c", "2", "-M", mode).stdout
    processed = int(re.search(r"number of transactions actually processed: (\d+)", output).group(1))
    assert processed > 0
    assert re.search(r"number of failed transactions: 0 ", output)
    assert f"query mode: {mode}" in output
    # Every pgbench transaction moves the same delta in all four tables.
    balances = direct.execute(
        "SELECT (SELECT sum(abalance) FROM pgbench_accounts), (SELECT sum(bbalance) FROM pgbench_branches),"
        " (SELECT sum(tbalance) FROM pgbench_tellers), (SELECT coalesce(sum(delta), 0) FROM pgbench_history)"
    ).fetchone()
    assert len(set(balances)) == 1
    # The recording of a pgbench session follows every statement, whatever the query mode.
    recording = sealed_recording(app_name)
    statements = {sql["n"]: sql["text"] for sql in recording.data("sql")}
    results = recording.data("result")
    assert len(results) == len(statements) > 0
    selects = [r for r in results if statements[r["n"]].startswith("SELECT abalance FROM pgbench_accounts")]
    assert selects and all(r["columns"] == [["abalance", 23]] and len(r["rows"]) == 1 for r in selects)
    updates = [r for r in results if statements[r["n"]].startswith("UPDATE pgbench_accounts")]
    assert updates and all(r["tag"] == "UPDATE 1" for r in updates)


# --- FunctionCall -------------------------------------------------------------------------


def test_it_relays_function_calls_like_direct(raw_gateway, raw_direct) -> None:
    answers = []
    for client in (raw_gateway(), raw_direct()):
        (oid,) = client.query("SELECT 'int4pl'::regproc::oid")[0]
        oid = int(oid)
        replies = []
        for args, fmt in (([struct.pack("!i", 2), struct.pack("!i", 40)], 1), ([b"2", b"40"], 0)):
            replies.append(client.exchange(function_call(oid, args, fmt, fmt)))
        replies.append(client.exchange(function_call(oid, [b"2147483647", b"1"], 0, 0)))
        replies.append(client.exchange(query_message("SELECT 'after the failed call'")))
        answers.append(replies)
    through, straight = answers
    assert through == straight
    binary, text, overflow, after = through
    assert kinds_of(binary) == b"VZ" and binary[0].payload == struct.pack("!ii", 4, 42)
    assert kinds_of(text) == b"VZ" and text[0].payload == struct.pack("!i", 2) + b"42"
    assert kinds_of(overflow) == b"EZ"
    assert error_fields(overflow[0].payload)["C"] == "22003"
    assert rows_of(after) == [[b"after the failed call"]]


# --- cancel ---------------------------------------------------------------------------------


def run_beside(action: Callable[[], None]) -> threading.Thread:
    thread = threading.Thread(target=action, daemon=True)
    thread.start()
    return thread


@pytest.mark.parametrize("method", ["cancel", "cancel_safe"])
def test_it_cancels_a_running_query(connect, pg_cluster, app_name, method) -> None:
    conn = connect(autocommit=True)
    sleeper = "SELECT pg_sleep(30)"

    def cancel_when_running() -> None:
        with psycopg.connect(pg_cluster.dsn(), autocommit=True) as watcher:
            if wait_for_upstream_query(watcher, app_name, sleeper, timeout=15, interval=0.02):
                getattr(conn, method)()

    thread = run_beside(cancel_when_running)
    with pytest.raises(errors.QueryCanceled) as raised:
        conn.execute(sleeper)
    thread.join(15)
    assert raised.value.sqlstate == "57014"
    assert conn.execute("SELECT 'still usable'").fetchone() == ("still usable",)


def test_it_ignores_a_cancel_with_the_wrong_key(connect, gateway, direct, app_name) -> None:
    conn = connect(autocommit=True)
    pid = conn.info.backend_pid
    sleeper = "SELECT 'finished' FROM pg_sleep(1.5)"

    def cancel_with_a_wrong_secret() -> None:
        if wait_for_upstream_query(direct, app_name, sleeper, timeout=15, interval=0.02):
            with WireClient(gateway.pg_port) as client:
                # Our real secret is 32 random bits nobody outside the gateway knows; this guess is wrong.
                client.send(cancel_request(pid, 12345))
                client.messages_until_close()  # the gateway closes the connection once it has read the request

    thread = run_beside(cancel_with_a_wrong_secret)
    assert conn.execute(sleeper).fetchone() == ("finished",)
    thread.join(15)


def test_it_gives_the_client_its_own_backend_key(connect, direct, app_name) -> None:
    conn = connect(autocommit=True)
    upstream_pid = conn.execute("SELECT pg_backend_pid()").fetchone()[0]
    assert conn.info.backend_pid != upstream_pid
    seen = direct.execute("SELECT application_name FROM pg_stat_activity WHERE pid = %s", (upstream_pid,)).fetchone()
    assert seen == (app_name,)
