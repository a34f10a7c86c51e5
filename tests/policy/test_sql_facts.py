"""sql_facts: what each statement does, read by the real parser, and caches that never mix statements up."""

import contextlib
import random
import re

import pytest
from pglast import ast

from connections.policy import sql_facts, sql_tree
from connections.policy.sql_facts import (
    DANGEROUS_FUNCTIONS,
    KINDS,
    StatementFacts,
    UnparseableSQL,
    classify,
    classify_known_shape,
    classify_shared,
)
from tests.policy.evasion_corpus import HARDENED_CASES, HARMLESS, KNOWN_LIMITS, PROD_GUARD_CASES


def only(sql: str) -> StatementFacts:
    (facts,) = classify(sql)
    return facts


def cold(sql: str) -> tuple[StatementFacts, ...]:
    sql_facts.clear_caches()
    return classify(sql)


def without_text(facts: StatementFacts) -> tuple:
    prepared = facts.prepared and without_text(facts.prepared)
    return (facts.kind, facts.kinds, facts.schemas, facts.tables, facts.relations, facts.functions,
            facts.copy_program, facts.copy_file, facts.without_where, facts.opaque, facts.prepare_name,
            prepared, facts.execute_name, facts.deallocate_name, facts.copy_to_stdout, facts.copy_relation,
            facts.copy_columns, facts.copy_format, facts.copy_header, facts.copy_delimiter)  # fmt: skip


@pytest.mark.parametrize(
    ("sql", "kinds"),
    [
        ("SELECT 1", {"SELECT"}),
        ("DROP TABLE t", {"DROP", "DROP TABLE"}),
        ("DROP MATERIALIZED VIEW m", {"DROP", "DROP MATERIALIZED VIEW"}),
        ("CREATE FUNCTION f() RETURNS int LANGUAGE sql AS 'select 1'", {"CREATE", "CREATE FUNCTION"}),
        ("CREATE PROCEDURE p() LANGUAGE sql AS 'select 1'", {"CREATE", "CREATE PROCEDURE"}),
        ("ALTER TABLE t ADD COLUMN c int", {"ALTER", "ALTER TABLE"}),
        ("ALTER TABLE t RENAME COLUMN a TO b", {"ALTER", "ALTER TABLE"}),
        ("ALTER FUNCTION f() OWNER TO r", {"ALTER", "ALTER FUNCTION"}),
        ("WITH d AS (DELETE FROM t RETURNING *) SELECT * FROM d", {"SELECT", "DELETE"}),
        ("EXPLAIN ANALYZE DELETE FROM t", {"EXPLAIN", "EXPLAIN ANALYZE", "DELETE"}),
        ("EXPLAIN DELETE FROM t", {"EXPLAIN"}),
        ("EXPLAIN (ANALYZE off) DELETE FROM t", {"EXPLAIN"}),
        ("EXPLAIN (ANALYZE 'on') DELETE FROM t", {"EXPLAIN", "EXPLAIN ANALYZE", "DELETE"}),
        ("CREATE TABLE x AS SELECT * FROM y", {"CREATE", "CREATE TABLE", "SELECT"}),
        ("SELECT * INTO x FROM y", {"SELECT", "CREATE", "CREATE TABLE"}),
        ("CREATE MATERIALIZED VIEW m AS SELECT 1", {"CREATE", "CREATE MATERIALIZED VIEW", "SELECT"}),
        ("CREATE VIEW v AS WITH d AS (SELECT 1) SELECT * FROM d", {"CREATE", "CREATE VIEW"}),
        ("COPY t FROM STDIN", {"COPY", "COPY FROM"}),
        ("COPY (DELETE FROM t RETURNING *) TO STDOUT", {"COPY", "COPY TO", "DELETE"}),
        ("INSERT INTO t VALUES (1) ON CONFLICT (a) DO UPDATE SET b = 2", {"INSERT", "SELECT", "UPDATE"}),
        ("MERGE INTO t USING s ON t.a = s.a WHEN MATCHED THEN DELETE", {"MERGE", "DELETE"}),
        ("TRUNCATE ONLY t", {"TRUNCATE"}),
        ("GRANT SELECT ON t TO r", {"GRANT"}),
        ("REVOKE r FROM u", {"REVOKE", "REVOKE ROLE"}),
        ("SET ROLE r", {"SET", "SET ROLE"}),
        ("SET SESSION AUTHORIZATION r", {"SET", "SET SESSION AUTHORIZATION"}),
        ("set search_path = a", {"SET", "SET SEARCH_PATH"}),
        ("RESET ALL", {"RESET", "RESET ALL"}),
        ("ALTER SYSTEM SET work_mem = '1MB'", {"ALTER", "ALTER SYSTEM"}),
        ("SHOW ALL", {"SHOW"}),
        ("PREPARE p AS SELECT 1", {"PREPARE"}),
        ("EXECUTE p", {"EXECUTE"}),
        ("EXPLAIN ANALYZE EXECUTE p", {"EXPLAIN", "EXPLAIN ANALYZE", "EXECUTE"}),
        ("DEALLOCATE ALL", {"DEALLOCATE"}),
        ("START TRANSACTION", {"BEGIN"}),
        ("ROLLBACK TO SAVEPOINT s", {"ROLLBACK", "ROLLBACK TO SAVEPOINT"}),
        ("PREPARE TRANSACTION 'x'", {"PREPARE TRANSACTION"}),
        ("DO $$ BEGIN END $$", {"DO"}),
        ("CALL p()", {"CALL"}),
        ("VACUUM FULL t", {"VACUUM"}),
        ("ANALYZE t", {"ANALYZE"}),
        ("LOCK TABLE t", {"LOCK"}),
        ("COMMENT ON TABLE t IS 'x'", {"COMMENT"}),
        ("SECURITY LABEL ON TABLE t IS 'x'", {"SECURITY LABEL"}),
        ("REINDEX TABLE t", {"REINDEX", "REINDEX TABLE"}),
        ("REFRESH MATERIALIZED VIEW m", {"REFRESH", "REFRESH MATERIALIZED VIEW"}),
        ("DISCARD ALL", {"DISCARD", "DISCARD ALL"}),
        ("DECLARE c CURSOR FOR SELECT 1", {"DECLARE", "SELECT"}),
        ("FETCH 5 c", {"FETCH"}),
        ("MOVE c", {"MOVE"}),
        ("CLOSE c", {"CLOSE"}),
        ("CHECKPOINT", {"CHECKPOINT"}),
        ("LOAD 'x'", {"LOAD"}),
        ("CREATE USER u", {"CREATE", "CREATE ROLE"}),
        ("DROP OWNED BY u", {"DROP", "DROP OWNED"}),
        ("CREATE SCHEMA s CREATE TABLE t (a int)", {"CREATE", "CREATE SCHEMA", "CREATE TABLE"}),
        ("CREATE RULE r AS ON INSERT TO t DO INSTEAD DELETE FROM x", {"CREATE", "CREATE RULE"}),
        ('DROP TABLE U&"\\0064rop"', {"DROP", "DROP TABLE"}),
    ],
)
def test_it_names_the_kinds_of_everything_that_runs(sql: str, kinds: set[str]) -> None:
    assert only(sql).kinds == kinds


def test_it_names_the_statement_s_own_kind() -> None:
    assert only("DROP TABLE t").kind == "DROP TABLE"
    assert only("WITH d AS (DELETE FROM t RETURNING 1) SELECT * FROM d").kind == "SELECT"
    assert only("EXPLAIN ANALYZE DELETE FROM t").kind == "EXPLAIN ANALYZE"


def test_it_finds_every_relation_with_and_without_its_schema() -> None:
    facts = only(
        "WITH c AS (SELECT * FROM billing.invoices) "
        "INSERT INTO audit.log SELECT * FROM c JOIN Users u USING (id) "
        'WHERE EXISTS (SELECT 1 FROM "Orders" o, LATERAL (SELECT * FROM db.sales.items) i)'
    )
    assert facts.tables == {
        "c", "invoices", "billing.invoices", "log", "audit.log", "users", "orders", "items", "sales.items",
    }  # fmt: skip
    assert facts.relations >= {("billing", "invoices"), ("", "users"), ("sales", "items")}
    assert facts.schemas == {"billing", "audit", "sales"}


def test_it_finds_relations_and_schemas_named_by_ddl() -> None:
    assert only("DROP TABLE a.b, c").tables == {"b", "a.b", "c"}
    assert only("DROP SCHEMA s CASCADE").schemas == {"s"}
    assert only("TRUNCATE x.y").tables == {"y", "x.y"}
    assert only("ALTER TABLE s.a RENAME TO b").tables == {"a", "s.a", "b"}
    assert only("GRANT SELECT ON ALL TABLES IN SCHEMA s TO r").schemas == {"s"}
    assert only("COMMENT ON TABLE s.t IS 'x'").tables == {"t", "s.t"}
    assert only("ALTER TABLE t SET SCHEMA archive").schemas == {"archive"}
    assert only("CREATE SCHEMA reports").schemas == {"reports"}


def test_it_finds_functions_called_anywhere_bare_and_qualified() -> None:
    facts = only(
        "SELECT lower(a), PG_CATALOG.Upper(b) FROM t, ROWS FROM (generate_series(1, 2)) g "
        "WHERE EXISTS (SELECT pg_read_file('x')) ORDER BY coalesce(abs(a), 0)"
    )
    assert facts.functions == {"lower", "upper", "pg_catalog.upper", "generate_series", "pg_read_file", "abs"}
    assert only("CREATE TABLE t (a text DEFAULT pg_read_file('x'))").functions == {"pg_read_file"}
    assert only("CALL s.p(now())").functions == {"p", "s.p", "now"}
    assert only("SELECT U&\"\\0070g_read_file\"('x')").functions == {"pg_read_file"}
    assert only("CREATE TRIGGER t AFTER INSERT ON a FOR EACH ROW EXECUTE FUNCTION audit()").functions == {"audit"}
    assert only("SELECT 'pg_read_file(1)'").functions == set()


def test_it_tells_copy_program_from_copy_file_from_stdin() -> None:
    assert only("COPY t TO PROGRAM 'id'").copy_program
    assert not only("COPY t TO PROGRAM 'id'").copy_file
    assert only("copy t from '/etc/passwd'").copy_file
    assert not only("COPY t FROM STDIN").copy_file
    assert not only("COPY t TO STDOUT").copy_program


def copy_output(sql: str) -> tuple:
    facts = only(sql)
    return (facts.copy_to_stdout, facts.copy_relation, facts.copy_columns, facts.copy_format, facts.copy_header,
            facts.copy_delimiter)  # fmt: skip


@pytest.mark.parametrize(
    ("sql", "columns"),
    [
        ("COPY (SELECT email, name FROM users) TO STDOUT", ("email", "name")),
        ("COPY (SELECT u.email, public.users.name FROM users u) TO STDOUT", ("email", "name")),
        ('COPY (SELECT lower(x) AS y, id AS "Key", id AS Plain FROM t) TO STDOUT', ("y", "Key", "plain")),
        ('COPY (SELECT "Email", EMAIL FROM t) TO STDOUT', ("Email", "email")),
        # An unaliased function call is named after the function; a cast after its operand, or
        # after its type when the operand has no name: what the server's FigureColname does.
        ("COPY (SELECT lower(email), pg_catalog.upper(x), count(*) FROM t) TO STDOUT", ("lower", "upper", "count")),
        (
            "COPY (SELECT id::text, 1::int, '{}'::text[], lower(x)::text FROM t) TO STDOUT",
            ("id", "int4", "text", "lower"),
        ),
        ('COPY (SELECT (u.r).email, arr[1], x COLLATE "C" FROM t u) TO STDOUT', ("email", "arr", "x")),
        ("COPY (SELECT a FROM t UNION SELECT b FROM u) TO STDOUT", ("a",)),
        ("COPY ((SELECT a AS z FROM t) INTERSECT (SELECT b FROM u) ORDER BY 1) TO STDOUT", ("z",)),
        ("COPY (WITH w AS (SELECT 1 AS n) SELECT n FROM w) TO STDOUT", ("n",)),
        ("COPY (DELETE FROM t WHERE id = 1 RETURNING id, email AS e) TO STDOUT", ("id", "e")),
        ("COPY (SELECT * FROM users) TO STDOUT", None),
        ("COPY (SELECT id, u.* FROM users u) TO STDOUT", None),
        ("COPY (TABLE users) TO STDOUT", None),
        ("COPY (SELECT id, email || '' FROM users) TO STDOUT", None),  # "?column?"
        ("COPY (SELECT id, 1 FROM users) TO STDOUT", None),
        ("COPY (SELECT trim(email) FROM users) TO STDOUT", None),  # SQL syntax: the name varies by version
        ("COPY (SELECT coalesce(email, '') FROM users) TO STDOUT", None),  # not modelled: unknown
        ("COPY (VALUES (1, 2)) TO STDOUT", None),
        ("COPY (DELETE FROM t WHERE id = 1 RETURNING *) TO STDOUT", None),
    ],
)
def test_it_names_the_columns_a_copy_query_streams_when_the_text_decides_them(sql: str, columns: tuple | None) -> None:
    facts = only(sql)
    assert facts.copy_to_stdout
    assert facts.copy_relation is None
    assert facts.copy_columns == columns


@pytest.mark.parametrize(
    ("sql", "output"),
    [
        ("COPY u TO STDOUT", (True, ("", "u"), None, "text", False, None)),
        ("copy U (ID, Email) to stdout", (True, ("", "u"), ("id", "email"), "text", False, None)),
        ("COPY app.users (email) TO STDOUT", (True, ("app", "users"), ("email",), "text", False, None)),
        (
            'COPY "App"."User Data" ("E-mail", x) TO STDOUT',
            (True, ("App", "User Data"), ("E-mail", "x"), "text", False, None),
        ),
        ("COPY u TO STDOUT CSV", (True, ("", "u"), None, "csv", False, None)),
        ("COPY u TO STDOUT WITH CSV HEADER DELIMITER AS ';'", (True, ("", "u"), None, "csv", True, ";")),
        ("COPY u TO STDOUT BINARY", (True, ("", "u"), None, "binary", False, None)),
        ("COPY BINARY u TO STDOUT", (True, ("", "u"), None, "binary", False, None)),
        ("COPY u TO STDOUT USING DELIMITERS '|'", (True, ("", "u"), None, "text", False, "|")),
        ("COPY u TO STDOUT WITH (FORMAT csv)", (True, ("", "u"), None, "csv", False, None)),
        ("COPY u TO STDOUT (FORMAT 'csv', HEADER)", (True, ("", "u"), None, "csv", True, None)),
        ('COPY u TO STDOUT (FORMAT "binary")', (True, ("", "u"), None, "binary", False, None)),
        ("COPY u TO STDOUT (FORMAT text, HEADER true)", (True, ("", "u"), None, "text", True, None)),
        (
            "COPY u TO STDOUT (FORMAT csv, HEADER on, DELIMITER E'\\t')",
            (True, ("", "u"), None, "csv", True, "\t"),
        ),
        ("COPY u TO STDOUT (FORMAT csv, HEADER 1, DELIMITER 1)", (True, ("", "u"), None, "csv", True, "1")),
        ("COPY u TO STDOUT (FORMAT csv, HEADER false)", (True, ("", "u"), None, "csv", False, None)),
        ("COPY u TO STDOUT (FORMAT csv, HEADER 0)", (True, ("", "u"), None, "csv", False, None)),
        ("COPY u TO STDOUT (FORMAT csv, HEADER OFF)", (True, ("", "u"), None, "csv", False, None)),
        ("COPY u TO STDOUT (FORMAT csv, HEADER match)", (True, ("", "u"), None, "csv", False, None)),
        ("COPY u FROM STDIN", (False, ("", "u"), None, "text", False, None)),
        ("COPY u FROM STDIN (FORMAT csv)", (False, ("", "u"), None, "csv", False, None)),
        ("COPY u TO '/tmp/u.csv' CSV", (False, ("", "u"), None, "csv", False, None)),
        ("COPY u TO PROGRAM 'cat'", (False, ("", "u"), None, "text", False, None)),
        ("COPY (SELECT email FROM u) TO '/tmp/x'", (False, None, ("email",), "text", False, None)),
        ("SELECT email FROM users", (False, None, None, "", False, None)),
    ],
)
def test_it_reads_what_a_copy_streams_and_in_which_format(sql: str, output: tuple) -> None:
    assert copy_output(sql) == output


@pytest.mark.parametrize(
    ("sql", "without_where"),
    [
        ("DELETE FROM t", True),
        ("UPDATE t SET a = 1", True),
        ("DELETE FROM t WHERE id = 1", False),
        ("DELETE FROM t WHERE CURRENT OF c", False),
        ("DELETE FROM t WHERE true", False),
        ("WITH d AS (DELETE FROM t RETURNING 1) SELECT * FROM d", True),
        ("UPDATE t SET a = 1 WHERE id IN (WITH x AS (SELECT 1) SELECT * FROM x)", False),
        ("EXPLAIN DELETE FROM t", False),
        ("EXPLAIN ANALYZE DELETE FROM t", True),
        ("CREATE RULE r AS ON INSERT TO t DO ALSO DELETE FROM x", False),
        ("SELECT 1", False),
    ],
)
def test_it_spots_updates_and_deletes_without_where(sql: str, without_where: bool) -> None:
    assert only(sql).without_where is without_where


def test_it_marks_code_it_cannot_look_into_as_opaque() -> None:
    assert only("DO $$ BEGIN DELETE FROM t; END $$").opaque
    assert only("CREATE FUNCTION f() RETURNS int LANGUAGE plpgsql AS $$ BEGIN RETURN 1; END $$").opaque
    assert only("CREATE FUNCTION f() RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT 1; END").opaque
    assert not only("ALTER FUNCTION f() OWNER TO r").opaque
    assert not only("SELECT 1").opaque


def test_it_reads_prepare_execute_and_deallocate() -> None:
    prepare = only("PREPARE Wipe(int) AS DELETE FROM t")
    assert prepare.prepare_name == "wipe"
    assert prepare.prepared is not None
    assert prepare.prepared.kinds == {"DELETE"}
    assert prepare.prepared.without_where
    assert prepare.prepared.text == "PREPARE Wipe(int) AS DELETE FROM t"
    assert only('EXECUTE "Wipe"(1)').execute_name == "Wipe"  # quoted names keep their case, as on the server
    assert only("CREATE TABLE x AS EXECUTE p").execute_name == "p"
    assert only("EXPLAIN EXECUTE p").execute_name is None  # plain EXPLAIN does not run it
    assert only("DEALLOCATE p").deallocate_name == "p"
    assert only("DEALLOCATE ALL").deallocate_name == ""
    assert only("SELECT 1").deallocate_name is None


def test_it_cuts_each_statement_s_text_at_the_parser_s_boundaries() -> None:
    sql = "SELECT 'a;b';  /* c */ DROP TABLE \"x;y\" ;\nSELECT $$;$$ -- end"
    assert [facts.text for facts in classify(sql)] == ["SELECT 'a;b'", 'DROP TABLE "x;y"', "SELECT $$;$$ -- end"]
    unicode = "SELECT 'é€😀'; DELETE FROM t"
    assert [facts.text for facts in classify(unicode)] == ["SELECT 'é€😀'", "DELETE FROM t"]


@pytest.mark.parametrize("sql", ["", "   ", ";", "-- only a comment", "/* a */ ; /* b */"])
def test_it_gives_nothing_for_empty_query_strings(sql: str) -> None:
    assert classify(sql) == ()


@pytest.mark.parametrize(
    "sql",
    [
        "SELEC 1",
        "SELECT 'unterminated",
        "SELECT 1; DROP TABLE",
        "SELECT 1\x00; DROP TABLE t",
        "SELECT '\udcff'",
        "SELECT $$ never closed",
        "DROP TABLE x /* open comment",
    ],
)
def test_it_refuses_what_the_parser_refuses(sql: str) -> None:
    with pytest.raises(UnparseableSQL) as caught:
        classify(sql)
    assert str(caught.value)


def test_it_reads_a_one_megabyte_statement() -> None:
    sql = "INSERT INTO t VALUES " + ", ".join(f"({n}, 'row {n}')" for n in range(60_000))  # noqa: S608 (test data)
    assert len(sql) > 1_000_000
    facts = only(sql)
    assert facts.kinds == {"INSERT", "SELECT"}
    assert facts.text == sql
    with pytest.raises(UnparseableSQL):
        classify(sql + " garbage(")


def test_it_reads_deeply_nested_expressions_or_refuses_them_cleanly() -> None:
    deep = "SELECT " + " + ".join(["pg_read_file('x')"] * 3000)
    assert only(deep).functions == {"pg_read_file"}
    with pytest.raises(UnparseableSQL):
        classify("SELECT " + "+".join(["1"] * 30_000))


def test_it_has_a_visitor_for_every_statement_type_of_the_grammar() -> None:
    statement_types = {name for name in dir(ast) if name.endswith("Stmt")}
    known = set(sql_tree._VISITORS) | sql_tree._PLAIN_STATEMENT_PARTS
    assert statement_types - known == set()


def test_it_names_kinds_only_from_its_list() -> None:
    for sql, _, _ in PROD_GUARD_CASES + HARDENED_CASES + HARMLESS + KNOWN_LIMITS:
        for facts in classify(sql):
            for kind in facts.kinds:
                assert any(kind == bare or kind.startswith(bare + " ") for bare in KINDS), kind


def test_it_lists_the_dangerous_functions_it_promises() -> None:
    required = {"pg_read_file", "pg_read_binary_file", "lo_import", "lo_export", "dblink*", "pg_terminate_backend"}
    assert required <= set(DANGEROUS_FUNCTIONS)
    assert all(pattern == pattern.lower() and "." not in pattern for pattern in DANGEROUS_FUNCTIONS)


# --- caches ---------------------------------------------------------------------------------------


def test_it_serves_look_alike_statements_from_the_cache_with_their_own_text() -> None:
    sql_facts.clear_caches()
    first_facts, first_texts = classify_shared("SELECT abalance FROM pgbench_accounts WHERE aid = 1;")
    again_facts, again_texts = classify_shared("SELECT abalance FROM pgbench_accounts WHERE aid = 987654;")
    assert again_facts is first_facts  # the same cached facts: parsed once
    assert again_texts == ("SELECT abalance FROM pgbench_accounts WHERE aid = 987654",)
    assert only("SELECT abalance FROM pgbench_accounts WHERE aid = 5").text.endswith("= 5")


def test_it_serves_commented_look_alikes_from_the_normalized_cache() -> None:
    sql_facts.clear_caches()
    first_facts, _ = classify_shared("/* app */ SELECT * FROM t WHERE a = 'x' ; -- tail")
    again_facts, again_texts = classify_shared("/* app */ SELECT * FROM t WHERE a = 'longer value' ; -- tail")
    assert again_facts is first_facts
    assert again_texts == ("SELECT * FROM t WHERE a = 'longer value'",)
    multi = classify("SELECT 1; SELECT 'two'; DELETE FROM t WHERE id = 3")
    again = classify("SELECT 100; SELECT 'two hundred'; DELETE FROM t WHERE id = 300")
    assert [facts.text for facts in again] == ["SELECT 100", "SELECT 'two hundred'", "DELETE FROM t WHERE id = 300"]
    assert [without_text(facts) for facts in again] == [without_text(facts) for facts in multi]


def test_it_serves_look_alike_long_statements_by_normalized_text() -> None:
    def insert(start: int, table: str = "t") -> str:
        rows = ", ".join(f"({n}, 'row {n}')" for n in range(start, start + 2000))
        return f"INSERT INTO {table} VALUES {rows}"  # noqa: S608 (test data)

    sql_facts.clear_caches()
    first_facts, _ = classify_shared(insert(0))
    again_facts, again_texts = classify_shared(insert(10_000))
    assert again_facts is first_facts
    assert again_texts == (insert(10_000),)
    other_facts, _ = classify_shared(insert(0, table="secrets"))
    assert other_facts[0].tables == {"secrets"}


def _outcome(sql: str) -> object:
    try:
        return [(without_text(facts), facts.text) for facts in classify(sql)]
    except UnparseableSQL:
        return "unparseable"


@pytest.mark.parametrize(
    ("first", "second"),
    [
        ("SELECT 1 --'x'", "SELECT 1 --'\n, pg_read_file(x) --'"),
        ("SELECT 1 /*'x'*/", "SELECT 1 /*'*/, pg_read_file(x) /*'*/"),
        ("SELECT b'01'", "SELECT b'21'"),
        ("SELECT 'a' FROM t", "SELECT E'a\\' FROM secrets --' FROM t"),
        ('SELECT * FROM "t 1"', 'SELECT * FROM "t 2"'),
        ("SELECT * FROM t1", "SELECT * FROM t2"),
        ("SELECT * FROM t WHERE a = 1", "SELECT * FROM t WHERE a = 1.5.6"),
        ("EXPLAIN (ANALYZE 0) DELETE FROM t", "EXPLAIN (ANALYZE 1) DELETE FROM t"),
        ("EXPLAIN (ANALYZE 'off') DELETE FROM t", "EXPLAIN (ANALYZE 'on') DELETE FROM t"),
        ("PREPARE a AS SELECT 1", "PREPARE b AS SELECT 1"),
        ("EXECUTE a", "EXECUTE b"),
        ("DEALLOCATE a", "DEALLOCATE ALL"),
        ("SELECT $1 FROM t", "SELECT $2 FROM t"),
        ("SELECT 1 FROM t /* 'a' */", "SELECT 1 FROM t /* 'b' */ ; DROP TABLE t"),
        ("COPY t TO ''", "COPY t TO '/tmp/x'"),  # the JSON has no file name for ''
        ("COPY t TO STDOUT (FORMAT csv, DELIMITER ';')", "COPY t TO STDOUT (FORMAT csv, DELIMITER '|')"),
        ("COPY t TO STDOUT (FORMAT 'csv')", "COPY t TO STDOUT (FORMAT 'binary')"),
        ("COPY t TO STDOUT (FORMAT csv, HEADER 1)", "COPY t TO STDOUT (FORMAT csv, HEADER 0)"),
        ("COPY t TO STDOUT (FORMAT csv, DELIMITER 1)", "COPY t TO STDOUT (FORMAT csv, DELIMITER 2)"),
    ],
)
def test_it_never_serves_a_different_statement_from_a_cache(first: str, second: str) -> None:
    sql_facts.clear_caches()
    _outcome(first)
    served = _outcome(second)
    sql_facts.clear_caches()
    assert served == _outcome(second)


def test_it_keeps_copy_statements_that_differ_in_a_literal_apart_with_warm_caches() -> None:
    sql_facts.clear_caches()
    for prefix in ("", "/* app */ "):  # the shape key, then the normalized text
        for _ in range(2):  # the second round runs with every cache warm
            semicolon = only(f"{prefix}COPY users TO STDOUT WITH (FORMAT csv, HEADER, DELIMITER ';')")
            pipe = only(f"{prefix}COPY users TO STDOUT WITH (FORMAT csv, HEADER, DELIMITER '|')")
            assert (semicolon.copy_delimiter, pipe.copy_delimiter) == (";", "|")
            assert semicolon.copy_format == pipe.copy_format == "csv"
            assert only(f"{prefix}COPY users TO ''").copy_to_stdout
            to_file = only(f"{prefix}COPY users TO '/tmp/users'")
            assert to_file.copy_file and not to_file.copy_to_stdout
    assert sql_facts._parse("COPY users TO STDOUT (DELIMITER ';')")[4]  # literal-bound: kept out of keyed caches


_SNIPPETS = ("--", "/*", "*/", "'", "''", "E'\\'", "e'", "b'", '"', '"a 1"', '"2"', "$$", "$1", "\n", ";", "1", "42")


def _mutations(seed: int, count: int) -> list[str]:
    """Texts made by inserting comment starts, quotes, escapes and digits into corpus statements.

    Each text is repeated with its digits and quoted strings changed, so that
    texts sharing a cache key are common and the check below has work to do.
    """
    rng = random.Random(seed)
    bases = [sql for sql, _, _ in PROD_GUARD_CASES + HARDENED_CASES + HARMLESS if sql]
    texts = []
    for _ in range(count):
        text = rng.choice(bases)
        for _ in range(rng.randint(1, 3)):
            position = rng.randrange(len(text) + 1)
            text = text[:position] + rng.choice(_SNIPPETS) + text[position:]
        texts.append(text)
        texts.append(re.sub(r"[0-9]", lambda _: str(rng.randrange(10)), text))
        texts.append(re.sub(r"'([^']*)'", lambda m: "'" + m.group(1)[::-1] + "x'", text, count=1))
    return texts


def test_it_never_shares_a_cache_key_between_statements_with_different_facts() -> None:
    # A differential check of both literal-blind keys: every group of texts
    # sharing a key must have the same facts when each is parsed cold.
    groups: dict[tuple[str, str], list[str]] = {}
    for text in _mutations(seed=20240501, count=1500):
        for tier, key in (("shape", sql_facts._shape_key(text)), ("normalized", sql_facts._normalized_key(text))):
            if key is not None:
                groups.setdefault((tier, key), []).append(text)
    shared = [texts for texts in groups.values() if len(set(texts)) > 1]
    assert shared, "the mutations should produce texts that share a key"
    for texts in shared:
        outcomes = set()
        for text in texts:
            try:
                _, _, _, _, literal_bound = sql_facts._parse(text)
                outcomes.add(None if literal_bound else tuple(without_text(f) for f in cold(text)))
            except UnparseableSQL:
                outcomes.add("unparseable")
        outcomes.discard(None)  # literal-bound facts are never stored under these keys
        parsed = outcomes - {"unparseable"}
        assert len(parsed) <= 1, texts


def test_it_gives_a_text_the_shape_key_of_its_own_even_when_a_digit_variant_was_cached() -> None:
    # The digit-folded cache (texts that differ only in digits share an entry) against _shape_key
    # itself: the mutations put each text right before a copy with other digits, so hits happen.
    sql_facts.clear_caches()
    texts = _mutations(seed=20261127, count=1500) + ["SELECT * FROM t1 WHERE a = 1", "SELECT * FROM t2 WHERE a = 1"]
    for text in texts:
        assert sql_facts._cached_shape_key(text) == sql_facts._shape_key(text), text
    assert sql_facts._FOLDED, "the mutations should fill the cache"
    assert sql_facts._shape_key("SELECT * FROM t1 WHERE a = 1") != sql_facts._shape_key("SELECT * FROM t2 WHERE a = 1")


def test_its_known_shape_path_gives_what_a_cold_parse_gives() -> None:
    # The guardrails' hot path skips classify_shared's exact-text look-up and input checks: each text it
    # serves must get the facts and statement text a cold parse gives, and only one-statement texts qualify.
    sql_facts.clear_caches()
    corpus = [sql for sql, _, _ in PROD_GUARD_CASES + HARDENED_CASES + HARMLESS if sql]
    bumped = [re.sub("[0-9]+", lambda number: str(int(number.group()) * 3 + 1), sql) for sql in corpus]
    served = 0
    for text in corpus + bumped + _mutations(seed=20261128, count=1500):
        known = classify_known_shape(text)
        if known is not None:
            served += 1
            (expected,), (expected_text,), *_ = sql_facts._parse(text)  # a full parse, no cache involved
            assert (without_text(known[0]), known[1]) == (without_text(expected), expected_text), text
            continue
        with contextlib.suppress(UnparseableSQL):
            classify_shared(text)  # warms the caches for the copies with other digits that follow
    assert served > 100, "the mutations should put texts on the known-shape path"


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT 1; SELECT 2",  # two statements: their texts need the parser's split
        "",  # no statement
        "SELECT 'é' FROM t WHERE a = 1",  # not ASCII: never a shape key
        "SELECT * FROM t WHERE a = 1 -- comment",  # a comment: the normalized tier, not a shape
        "SELECT * FROM t1 WHERE a = 1",  # a digit in a name: t1 and t2 are not one shape
    ],
)
def test_its_known_shape_path_serves_only_one_statement_shapes(sql: str) -> None:
    sql_facts.clear_caches()
    for _ in range(2):
        classify_shared(sql)
    assert classify_known_shape(sql) is None
    assert classify_known_shape(sql.replace("1", "7")) is None


def test_its_known_shape_path_refuses_nothing_the_checks_would_refuse() -> None:
    sql_facts.clear_caches()
    classify_shared("SELECT * FROM t WHERE a = 1")
    assert classify_known_shape("SELECT * FROM t WHERE a = 2") is not None
    for bad in ("SELECT * FROM t WHERE a = 2\0", "SELECT * FROM t WHERE a = \ud800", "SELECT * FROM t WHERE\0a = 2"):
        assert classify_known_shape(bad) is None
        with pytest.raises(UnparseableSQL):
            classify_shared(bad)


def test_it_keeps_its_caches_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sql_facts, "_CACHE_MAX_ENTRIES", 50)
    sql_facts.clear_caches()
    for n in range(500):
        classify(f"SELECT {n} AS c{n}")
    assert max(len(sql_facts._EXACT), len(sql_facts._SHAPES), len(sql_facts._NORMALIZED)) <= 50


@pytest.mark.parametrize(
    ("statement", "custom"),
    [
        ("COPY t TO STDOUT (FORMAT csv, QUOTE '|')", True),
        ("COPY t TO STDOUT CSV NULL AS 'x'", True),
        ("COPY t TO STDOUT (FORMAT csv, FORCE_QUOTE *)", True),
        ("COPY t TO STDOUT (FORMAT csv, HEADER, DELIMITER ';')", False),
        ("COPY (SELECT a FROM t WHERE a IS NOT NULL) TO STDOUT", False),  # NULL in the query is no option
    ],
)
def test_it_flags_copy_options_that_change_how_rows_split(statement: str, custom: bool) -> None:
    (facts,) = classify(statement)
    assert facts.copy_custom_quoting is custom
