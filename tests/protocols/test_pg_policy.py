"""Policies through real clients: every statement judged, denials both sides agree on, masking on every path.

Two connections to one throwaway database carry the issue's `prod-guard`
policy and a hardened one, each with the same masking rules. The evasion
corpus (tests/policy/evasion_corpus.py) runs through the simple and the
extended protocol; canaries of every detector type (tests/policy/canaries.py)
sit in a table that psql, psycopg (text and binary) and COPY read.
"""

import base64
import csv
import io
import json
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace

import psycopg
import pytest
from psycopg import errors, sql

from connections.policy.policy_file import PolicyEntry, policy_file_yaml
from connections.policy.rules import DETECTORS, GuardrailMatch, GuardrailRule, MaskingRule, PolicySpec
from connections.policy.sql_facts import UnparseableSQL, classify
from tests.policy.canaries import CANARIES, CANARY_VARIANTS
from tests.policy.evasion_corpus import (
    HARDENED_CASES,
    HARMLESS,
    PROD_GUARD_CASES,
    SETUP_SQL,
    hardened_spec,
    prod_guard_spec,
)
from tests.protocols.nodes import (
    bot_client,
    gateway_psql_env,
    poll,
    psql_command,
    read_recording,
    unique_name,
    wait_for_session,
)
from tests.protocols.wire import SYNC, WireClient, bind, error_fields, execute, parse, query_message
from tests.support.gateway_process import UPSTREAM_PASSWORD_VAR, GatewayProcess
from tests.support.pg_cluster import SUPERUSER, PgCluster

DENIED = "42501"
MASKING = (
    MaskingRule("secrets", "full", columns=("*password*", "api_key", "*.token")),
    MaskingRule("pii", "partial", detectors=DETECTORS),
)
CUSTOMER_COLUMNS = "id, name, email, password, api_key, token, note, profile, balance"
CUSTOMERS_QUERY = f"SELECT {CUSTOMER_COLUMNS} FROM customers ORDER BY id"  # noqa: S608 (constants only)


@dataclass(frozen=True)
class Guarded:
    """The policy database and the two guarded connections to it."""

    database: str
    prod: str  # connection under prod-guard
    hardened: str  # connection under the hardened policy


def _seed_customers(conn: psycopg.Connection) -> None:
    conn.execute(
        "CREATE TABLE customers (id int PRIMARY KEY, name text, email text UNIQUE, password text, api_key text,"
        " token text, note text, profile jsonb, balance numeric)"
    )
    notes = [value for values in CANARY_VARIANTS.values() for value in values]
    for i, note in enumerate(notes, start=1):
        profile = json.dumps({"contact": f"person{i}@example.org", "tier": "gold"})
        conn.execute(
            "INSERT INTO customers VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)",
            (i, f"customer {i}", f"user{i}@example.net", f"pw-secret-{i}", f"key-{i}", f"tok-{i}", note, profile, i),
        )


def _without_reviews(spec: PolicySpec, masking: tuple[MaskingRule, ...]) -> PolicySpec:
    """`spec` with review turned into deny: a held statement would wait for a reviewer (see test_pg_review)."""
    rules = tuple(replace(rule, action="deny") if rule.action == "review" else rule for rule in spec.guardrails)
    opaque = "deny" if spec.opaque == "review" else spec.opaque
    return replace(spec, name=unique_name(spec.name), guardrails=rules, opaque=opaque, masking=masking)


@pytest.fixture(scope="module")
def guarded(gateway: GatewayProcess, pg_cluster: PgCluster, tmp_path_factory: pytest.TempPathFactory) -> Guarded:
    database = unique_name("policy").replace("-", "_")
    with psycopg.connect(pg_cluster.dsn(dbname="postgres"), autocommit=True) as admin:
        create = sql.SQL("CREATE DATABASE {} OWNER {}")
        admin.execute(create.format(sql.Identifier(database), sql.Identifier(SUPERUSER)))
    with psycopg.connect(pg_cluster.dsn(dbname=database), autocommit=True) as conn:
        for statement in SETUP_SQL:
            conn.execute(statement)
        _seed_customers(conn)
    names = Guarded(database, unique_name("prod"), unique_name("hardened"))
    for name in (names.prod, names.hardened):
        gateway.manage(
            *("connections", "add", name, "--kind", "postgres", "--host", pg_cluster.host),
            *("--port", str(pg_cluster.port), "--database", database, "--user", SUPERUSER),
            *("--password-env", UPSTREAM_PASSWORD_VAR, "--tls", "disable"),
            env={UPSTREAM_PASSWORD_VAR: pg_cluster.superuser_password},
            check=True,
        )
        gateway.manage("agents", "grant", gateway.agent_name, name, check=True)
    entries = [
        PolicyEntry(_without_reviews(prod_guard_spec(), MASKING), "", (names.prod,)),
        PolicyEntry(_without_reviews(hardened_spec(), MASKING), "", (names.hardened,)),
    ]
    policy_file = tmp_path_factory.mktemp("policy") / "policies.yaml"
    policy_file.write_text(policy_file_yaml(entries))
    gateway.manage("policies", "apply", str(policy_file), check=True)
    return names


@pytest.fixture
def client(gateway: GatewayProcess, guarded: Guarded, app_name: str) -> Iterator[Callable[[str], WireClient]]:
    opened: list[WireClient] = []

    def open_client(connection: str) -> WireClient:
        opened.append(bot_client(gateway, connection, application_name=app_name))
        return opened[-1]

    yield open_client
    for each in opened:
        each.close()


def _errors(replies) -> list[dict[str, str]]:
    return [error_fields(msg.payload) for msg in replies if msg.kind == b"E"]


def _assert_refused(replies, sql_text: str, reason: str) -> None:
    found = _errors(replies)
    assert found, f"not refused: {sql_text!r} ({reason})"
    assert found[0]["C"] == DENIED, f"{sql_text!r} ({reason}): {found[0]}"
    assert 'rule "' in found[0]["M"], found[0]
    assert replies[-1].kind == b"Z"


def _statement_count(sql_text: str) -> int:
    try:
        return len(classify(sql_text))
    except UnparseableSQL:
        return 1


CORPUS = [("prod", *case) for case in PROD_GUARD_CASES] + [("hardened", *case) for case in HARDENED_CASES]


# --- guardrails ----------------------------------------------------------------------


def test_it_refuses_every_corpus_attempt_through_the_simple_protocol(client, guarded) -> None:
    sessions = {"prod": client(guarded.prod), "hardened": client(guarded.hardened)}
    for policy, sql_text, _action, reason in CORPUS:
        _assert_refused(sessions[policy].exchange(query_message(sql_text)), sql_text, reason)
    for session in sessions.values():  # still usable, and nothing above ran
        assert session.query("SELECT count(*) FROM accounts") == [["3"]]
        assert session.query("SELECT to_regclass('audit_log') IS NOT NULL") == [["t"]]


def test_it_refuses_every_corpus_attempt_through_the_extended_protocol(client, guarded) -> None:
    sessions = {"prod": client(guarded.prod), "hardened": client(guarded.hardened)}
    for policy, sql_text, _action, reason in CORPUS:
        replies = sessions[policy].exchange(parse(sql_text), bind([]), execute(), SYNC)
        _assert_refused(replies, sql_text, reason)
    for session in sessions.values():
        replies = session.exchange(parse("SELECT count(*) FROM accounts"), bind([]), execute(), SYNC)
        assert _errors(replies) == []


def _run_rolled_back(session: WireClient, statements: list[str]) -> list[list[tuple[bytes, bytes]]]:
    """Each statement's replies, inside one transaction that is rolled back."""
    session.exchange(query_message("BEGIN"))
    replies = [[(m.kind, m.payload) for m in session.exchange(query_message(text))] for text in statements]
    session.exchange(query_message("ROLLBACK"))
    return replies


def test_it_passes_harmless_statements_unchanged(client, guarded, pg_cluster) -> None:
    through = client(guarded.hardened)
    statements = [sql_text for sql_text, _action, _reason in HARMLESS]
    mine = _run_rolled_back(through, statements)
    with WireClient(pg_cluster.port, host=pg_cluster.host) as straight:
        straight.login(SUPERUSER, guarded.database, pg_cluster.superuser_password)
        theirs = _run_rolled_back(straight, statements)
    for (sql_text, _action, reason), got, expected in zip(HARMLESS, mine, theirs, strict=True):
        assert [kind for kind, _ in got if kind == b"E"] == [], f"{sql_text!r} ({reason})"
        assert got == expected, sql_text
    through.exchange(query_message("BEGIN"))
    for sql_text, _action, reason in HARMLESS:
        if _statement_count(sql_text) == 1:
            replies = through.exchange(parse(sql_text), bind([]), execute(), SYNC)
            assert _errors(replies) == [], f"extended: {sql_text!r} ({reason})"
    through.exchange(query_message("ROLLBACK"))


def test_it_names_the_rule_and_keeps_the_session_usable(client, guarded) -> None:
    session = client(guarded.prod)
    replies = session.exchange(query_message("DROP TABLE accounts"))
    (error,) = _errors(replies)
    assert error["C"] == DENIED and error["S"] == "ERROR"
    assert 'rule "no-drop"' in error["M"]
    assert session.query("SELECT count(*) FROM accounts") == [["3"]]


def test_it_leaves_both_sides_in_a_failed_transaction_with_psql(gateway, guarded, app_name) -> None:
    script = (
        "BEGIN;\n"
        "INSERT INTO audit_log (note) VALUES ('before');\n"
        "DROP TABLE accounts;\n"
        "SELECT 1;\n"
        "ROLLBACK;\n"
        "SELECT count(*) FROM audit_log WHERE note = 'before';\n"
        "SELECT count(*) FROM accounts;\n"
    )
    result = subprocess.run(
        psql_command(gateway.dsn(dbname=guarded.prod, password=""), "-A", "-t"),
        input=script,
        capture_output=True,
        text=True,
        env=gateway_psql_env(gateway, app_name),
        timeout=60,
    )
    assert 'ERROR:  Gatehouse denied this statement: rule "no-drop"' in result.stderr
    # The server itself says so: it aborted the transaction, as the client believes.
    assert "ERROR:  current transaction is aborted, commands ignored until end of transaction block" in result.stderr
    assert result.stdout.splitlines() == ["BEGIN", "INSERT 0 1", "ROLLBACK", "0", "3"]


def test_it_leaves_both_sides_in_a_failed_transaction_with_psycopg(gateway, guarded, app_name) -> None:
    with psycopg.connect(gateway.dsn(dbname=guarded.prod), application_name=app_name) as conn:
        conn.execute("INSERT INTO audit_log (note) VALUES ('psycopg')")
        with pytest.raises(errors.InsufficientPrivilege, match='rule "no-unbounded-write"'):
            conn.execute("DELETE FROM accounts")
        assert conn.info.transaction_status == psycopg.pq.TransactionStatus.INERROR
        with pytest.raises(errors.InFailedSqlTransaction):
            conn.execute("SELECT 1")
        conn.rollback()
        assert conn.execute("SELECT count(*) FROM audit_log WHERE note = 'psycopg'").fetchone() == (0,)
        conn.execute("INSERT INTO audit_log (note) VALUES (%s)", ("extended",))
        with pytest.raises(errors.InsufficientPrivilege, match='rule "no-file-access"'):  # a parameter: a Parse
            conn.execute("SELECT pg_read_file(%s)", ("/etc/passwd",))
        assert conn.info.transaction_status == psycopg.pq.TransactionStatus.INERROR
        conn.rollback()
        assert conn.execute("SELECT count(*) FROM audit_log WHERE note = %s", ("extended",)).fetchone() == (0,)
        assert conn.execute("SELECT count(*) FROM accounts WHERE id > %s", (0,)).fetchone() == (3,)


def test_it_records_the_decision(gateway, guarded, app_name) -> None:
    conn = psycopg.connect(gateway.dsn(dbname=guarded.prod), application_name=app_name, autocommit=True)
    with conn, pytest.raises(errors.InsufficientPrivilege):
        conn.execute("DROP TABLE accounts")
    row = wait_for_session(gateway, app_name, sealed=True)
    recording = read_recording(gateway, row)
    (decision,) = recording.data("policy")
    assert decision["action"] == "deny" and decision["rule"] == "no-drop"
    (result,) = recording.results_for("DROP TABLE accounts")
    assert result["error"]["code"] == DENIED


# --- masking -------------------------------------------------------------------------


def _leaks(blob: str | bytes) -> list[str]:
    text = blob.decode("utf-8", "replace") if isinstance(blob, bytes) else blob
    secrets = [value for values in CANARY_VARIANTS.values() for value in values]
    secrets += ["pw-secret-", "key-1", "tok-1", "@example.net", "@example.org"]
    return [secret for secret in secrets if secret in text]


def test_it_masks_every_canary_for_psql_and_in_the_recording(gateway, guarded, app_name, pg_cluster) -> None:
    env = gateway_psql_env(gateway, app_name)
    # Unit and record separators: the canaries include multi-line PEM blocks.
    separators = ("-F", "\x1f", "-R", "\x1e")
    through = subprocess.run(
        psql_command(gateway.dsn(dbname=guarded.prod, password=""), "-A", "-t", *separators, "-c", CUSTOMERS_QUERY),
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=True,
    ).stdout
    assert _leaks(through) == []
    rows = [record.split("\x1f") for record in through.rstrip("\n").split("\x1e")]
    with psycopg.connect(pg_cluster.dsn(dbname=guarded.database)) as direct:
        query = "SELECT c.id::text, c.name, c.balance::text FROM customers c ORDER BY c.id"
        straight = direct.execute(query).fetchall()
    assert [(r[0], r[1], r[8]) for r in rows] == straight  # unmasked columns are identical
    assert {r[3] for r in rows} == {"********"}  # password: the "secrets" rule
    assert rows[0][2].endswith(".net") and rows[0][2].startswith("*")  # email: detector, partial
    recording = read_recording(gateway, wait_for_session(gateway, app_name, sealed=True))
    assert _leaks(recording.path.read_bytes()) == []


@pytest.mark.parametrize("binary", [False, True])
def test_it_masks_every_canary_for_psycopg(gateway, guarded, app_name, binary) -> None:
    with psycopg.connect(gateway.dsn(dbname=guarded.prod), application_name=app_name) as conn:
        with conn.cursor(binary=binary) as cur:
            rows = cur.execute(CUSTOMERS_QUERY + " LIMIT %s", (1000,)).fetchall()
        assert rows and all(isinstance(row[0], int) and row[8] == row[0] for row in rows)  # decoders still work
        assert all(row[3] == "********" and row[4] == "********" and row[5] == "********" for row in rows)
        assert _leaks(repr(rows)) == []
        assert all(isinstance(row[7], dict) for row in rows)  # jsonb still parses
    recording = read_recording(gateway, wait_for_session(gateway, app_name, sealed=True))
    assert _leaks(recording.path.read_bytes()) == []


@pytest.mark.parametrize("options", ["", "WITH (FORMAT csv)", "WITH (FORMAT csv, HEADER)"])
def test_it_masks_copy_out(gateway, guarded, app_name, options) -> None:
    statement = f"COPY ({CUSTOMERS_QUERY}) TO STDOUT {options}"
    conn = psycopg.connect(gateway.dsn(dbname=guarded.prod), application_name=app_name)
    with conn, conn.cursor() as cur, cur.copy(statement) as copy:
        data = b"".join(bytes(chunk) for chunk in copy)
    assert data.count(b"\n") >= len(CANARIES)
    assert _leaks(data) == []


@pytest.mark.parametrize(
    "statement",
    [
        "COPY customers (id, name, password) TO STDOUT",
        "COPY (SELECT id, name, password FROM customers ORDER BY id) TO STDOUT",
        "COPY public.customers TO STDOUT WITH (FORMAT csv, HEADER)",
        "COPY customers TO STDOUT WITH (FORMAT csv, DELIMITER ';')",
    ],
)
def test_it_masks_copy_out_column_by_column(gateway, guarded, app_name, pg_cluster, statement) -> None:
    conn = psycopg.connect(gateway.dsn(dbname=guarded.prod), application_name=app_name)
    with conn, conn.cursor() as cur, cur.copy(statement) as copy:
        through = b"".join(bytes(chunk) for chunk in copy).decode()
    direct = psycopg.connect(pg_cluster.dsn(dbname=guarded.database))
    with direct, direct.cursor() as cur, cur.copy(statement) as copy:
        straight = b"".join(bytes(chunk) for chunk in copy).decode()
    assert _leaks(through) == []
    mine, theirs = _copy_rows(through, statement), _copy_rows(straight, statement)
    assert len(mine) == len(theirs)
    if "HEADER" in statement:
        assert mine[0] == theirs[0]  # the header names the columns; nothing in it is masked
        mine, theirs = mine[1:], theirs[1:]
    assert [row[:2] for row in mine] == [row[:2] for row in theirs]  # id and name: unmasked, byte for byte
    assert any("********" in field for row in mine for field in row)  # password: the "secrets" rule


def _copy_rows(data: str, statement: str) -> list[list[str]]:
    if "csv" not in statement:
        return [line.split("\t") for line in data.splitlines()]
    return list(csv.reader(io.StringIO(data), delimiter=";" if "DELIMITER" in statement else ","))


def test_it_ends_a_session_rather_than_send_binary_copy_it_cannot_mask(gateway, guarded, app_name) -> None:
    conn = psycopg.connect(gateway.dsn(dbname=guarded.prod), application_name=app_name)
    statement = "COPY customers TO STDOUT (FORMAT binary)"
    with (
        conn,
        pytest.raises(errors.InternalError_, match="could not mask"),
        conn.cursor() as cur,
        cur.copy(statement) as copy,
    ):
        b"".join(bytes(chunk) for chunk in copy)
    assert conn.closed


def test_it_masks_bind_parameters_in_the_recording(gateway, guarded, app_name) -> None:
    card, jwt = CANARIES["credit_card"], CANARIES["jwt"]
    with psycopg.connect(gateway.dsn(dbname=guarded.prod), application_name=app_name, autocommit=True) as conn:
        conn.execute("SELECT count(*) FROM customers WHERE note = %s OR note = %b", (card, jwt))  # text, binary
    recording = read_recording(gateway, wait_for_session(gateway, app_name, sealed=True))
    (statement,) = [s for s in recording.data("sql") if "count(*)" in s["text"]]
    text_param, binary_param = statement["params"]
    assert _leaks(text_param) == [] and text_param.startswith("*")
    assert _leaks(base64.b64decode(binary_param["b64"])) == []  # base64 would hide a leak from a plain search
    assert _leaks(recording.path.read_bytes()) == []


def test_it_masks_values_in_errors(gateway, guarded, app_name) -> None:
    email = CANARIES["email"]
    with psycopg.connect(gateway.dsn(dbname=guarded.prod), application_name=app_name, autocommit=True) as conn:
        conn.execute("INSERT INTO customers (id, email) VALUES (%s, %s)", (10_000, email))
        try:
            with pytest.raises(errors.UniqueViolation) as raised:
                conn.execute("INSERT INTO customers (id, email) VALUES (%s, %s)", (10_001, email))
        finally:
            conn.execute("DELETE FROM customers WHERE id = %s", (10_000,))
    assert email not in str(raised.value) and email not in (raised.value.diag.message_detail or "")
    assert "Key (email)=" in (raised.value.diag.message_detail or "")
    recording = read_recording(gateway, wait_for_session(gateway, app_name, sealed=True))
    assert _leaks(recording.path.read_bytes()) == []


def test_it_leaves_unguarded_connections_alone(connect) -> None:
    conn = connect()
    assert conn.execute("SELECT 'canary.alice@example.com'").fetchone() == ("canary.alice@example.com",)


def _unguarded_connection(gateway: GatewayProcess, guarded: Guarded, pg_cluster: PgCluster) -> str:
    """A new connection to the guarded database, with no policy yet, that the bot may use."""
    name = unique_name("live")
    gateway.manage(
        *("connections", "add", name, "--kind", "postgres", "--host", pg_cluster.host),
        *("--port", str(pg_cluster.port), "--database", guarded.database, "--user", SUPERUSER),
        *("--password-env", UPSTREAM_PASSWORD_VAR, "--tls", "disable"),
        env={UPSTREAM_PASSWORD_VAR: pg_cluster.superuser_password},
        check=True,
    )
    gateway.manage("agents", "grant", gateway.agent_name, name, check=True)
    return name


def test_it_applies_a_changed_policy_to_live_sessions(gateway, guarded, pg_cluster, app_name, tmp_path) -> None:
    name = _unguarded_connection(gateway, guarded, pg_cluster)
    email = CANARIES["email"]
    policy = PolicySpec(
        name=unique_name("live-policy"),
        guardrails=(GuardrailRule("no-listen", "deny", GuardrailMatch(kind=("LISTEN",))),),
        masking=(MaskingRule("pii", "full", detectors=("email",)),),
    )
    policy_file = tmp_path / "live.yaml"
    with psycopg.connect(gateway.dsn(dbname=name), application_name=app_name, autocommit=True) as conn:
        assert conn.execute("SELECT %s::text", (email,)).fetchone() == (email,)
        policy_file.write_text(policy_file_yaml([PolicyEntry(policy, "", (name,))]))
        gateway.manage("policies", "apply", str(policy_file), check=True)
        masked = poll(lambda: conn.execute("SELECT %s::text", (email,)).fetchone() == ("********",), timeout=15)
        assert masked, "the live session did not take up the new policy"
        with pytest.raises(errors.InsufficientPrivilege, match='rule "no-listen"'):
            conn.execute("LISTEN anything")
        policy_file.write_text(policy_file_yaml([PolicyEntry(policy, "", ())]))  # detach: no policy
        gateway.manage("policies", "apply", str(policy_file), check=True)
        assert poll(lambda: conn.execute("SELECT %s::text", (email,)).fetchone() == (email,), timeout=15)


def test_it_judges_each_execution_of_a_prepared_statement_by_the_current_policy(
    gateway, guarded, pg_cluster, app_name, tmp_path
) -> None:
    name = _unguarded_connection(gateway, guarded, pg_cluster)
    statement = "SELECT 'gatehouse_marker', %s::int"
    policy = PolicySpec(
        name=unique_name("prepared-policy"),
        guardrails=(GuardrailRule("no-marker", "deny", GuardrailMatch(regex="gatehouse_marker")),),
    )
    policy_file = tmp_path / "prepared.yaml"
    with psycopg.connect(gateway.dsn(dbname=name), application_name=app_name, autocommit=True) as conn:
        assert conn.execute(statement, (1,), prepare=True).fetchone() == ("gatehouse_marker", 1)
        policy_file.write_text(policy_file_yaml([PolicyEntry(policy, "", (name,))]))
        gateway.manage("policies", "apply", str(policy_file), check=True)

        def denied() -> bool:
            try:
                conn.execute(statement, (2,), prepare=True)  # a Bind of the statement prepared before
            except errors.InsufficientPrivilege as exc:
                assert 'rule "no-marker"' in str(exc)
                return True
            return False

        assert poll(denied, timeout=15), "the prepared statement still ran under the new policy"
        assert conn.execute("SELECT 1").fetchone() == (1,)
        with conn.transaction():
            conn.execute("SELECT 2")
