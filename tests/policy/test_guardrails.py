"""Guardrails: the evasion corpus, rule matching, fallbacks, verdict caching and prepared statements."""

import dataclasses
import re

import pytest

from connections.policy import sql_facts
from connections.policy.guardrails import SessionGuardrails, SqlGuardrails, Verdict
from connections.policy.rules import GuardrailMatch, GuardrailRule, PolicySpec
from tests.policy.evasion_corpus import (
    HARDENED_CASES,
    HARMLESS,
    KNOWN_LIMITS,
    PROD_GUARD_CASES,
    hardened_spec,
    prod_guard_spec,
)

PROD_GUARD = SqlGuardrails(prod_guard_spec())
HARDENED = SqlGuardrails(hardened_spec())


def guard(*rules: GuardrailRule, **fallbacks: str) -> SqlGuardrails:
    return SqlGuardrails(PolicySpec(name="test", guardrails=rules, **fallbacks))


def rule(name: str, action: str, **match: object) -> GuardrailRule:
    return GuardrailRule(name, action, GuardrailMatch(**match))  # type: ignore[arg-type]


# --- the corpus -------------------------------------------------------------------------------------


def test_the_corpus_is_as_large_as_promised() -> None:
    assert len(PROD_GUARD_CASES) + len(HARDENED_CASES) >= 40
    assert len(HARMLESS) >= 20
    for sql, action, reason in PROD_GUARD_CASES + HARDENED_CASES + HARMLESS + KNOWN_LIMITS:
        assert action in ("allow", "deny", "review") and reason, sql


@pytest.mark.parametrize(("sql", "action", "reason"), PROD_GUARD_CASES)
def test_prod_guard_catches_the_evasion(sql: str, action: str, reason: str) -> None:
    verdict = PROD_GUARD.check(sql)
    assert verdict.action == action, reason
    assert f'rule "{verdict.rule}"' in verdict.message
    assert verdict.rule not in ("default", "unparseable")


@pytest.mark.parametrize(("sql", "action", "reason"), HARDENED_CASES)
def test_the_hardened_policy_catches_the_evasion(sql: str, action: str, reason: str) -> None:
    verdict = HARDENED.check(sql)
    assert verdict.action == action, reason
    assert verdict.rule not in ("default", "unparseable")


@pytest.mark.parametrize(("sql", "action", "reason"), HARMLESS)
def test_harmless_statements_pass_both_policies(sql: str, action: str, reason: str) -> None:
    for guardrails in (PROD_GUARD, HARDENED):
        verdict = guardrails.check(sql)
        assert verdict.action == "allow", (reason, verdict)
        assert verdict.rule in ("default", "empty")


@pytest.mark.parametrize(("sql", "action", "reason"), KNOWN_LIMITS)
def test_known_limits_behave_as_documented(sql: str, action: str, reason: str) -> None:
    assert PROD_GUARD.check(sql).action == action, reason


# --- verdicts -----------------------------------------------------------------------------------------


def test_the_message_names_the_rule_and_adds_its_message() -> None:
    verdict = HARDENED.check("SELECT pg_ls_dir('/')")
    assert verdict == Verdict(
        action="deny",
        rule="no-file-access",
        message='Gatehouse denied this statement: rule "no-file-access": '
        "server files, programs and other connections are off limits",
        statement="SELECT pg_ls_dir('/')",
    )
    assert PROD_GUARD.check("DROP TABLE t").message == 'Gatehouse denied this statement: rule "no-drop"'
    assert "review" in PROD_GUARD.check("CREATE TABLE t (a int)").message


def test_it_returns_the_strictest_verdict_with_the_first_statement_that_earned_it() -> None:
    verdict = PROD_GUARD.check("SELECT 1; CREATE TABLE a (b int); DROP TABLE c; TRUNCATE d")
    assert (verdict.action, verdict.rule, verdict.statement) == ("deny", "no-drop", "DROP TABLE c")
    verdict = PROD_GUARD.check("SELECT 1; ALTER TABLE a ADD b int; CREATE TABLE c (d int)")
    assert (verdict.action, verdict.statement) == ("review", "ALTER TABLE a ADD b int")
    verdict = PROD_GUARD.check("SELECT 1; SELECT 2")
    assert (verdict.action, verdict.rule, verdict.statement) == ("allow", "default", "SELECT 1")


def test_the_first_matching_rule_decides() -> None:
    guardrails = guard(
        rule("allow-temp", "allow", kind=("DROP TABLE",), tables=("tmp_*",)),
        rule("no-drop", "deny", kind=("DROP",)),
    )
    assert guardrails.check("DROP TABLE tmp_1").rule == "allow-temp"
    assert guardrails.check("DROP TABLE accounts").rule == "no-drop"
    assert guardrails.check("DROP TABLE tmp_1, accounts").rule == "no-drop"  # allow must cover every table


def test_a_bare_kind_matches_every_object_type_and_a_qualified_one_only_its_own() -> None:
    guardrails = guard(rule("no-drop-table", "deny", kind=("drop  table",)), rule("drops", "review", kind=("DROP",)))
    assert guardrails.check("DROP TABLE t").rule == "no-drop-table"
    assert guardrails.check("DROP VIEW v").rule == "drops"
    assert guardrails.check("DROP INDEX i").rule == "drops"


def test_table_patterns_match_bare_or_qualified_names_case_insensitively() -> None:
    guardrails = guard(
        rule("billing", "deny", tables=("Billing.*",)),
        rule("users", "review", tables=("users",)),
    )
    assert guardrails.check("SELECT * FROM billing.invoices").rule == "billing"
    assert guardrails.check('SELECT * FROM "BILLING".x').rule == "billing"
    assert guardrails.check("SELECT * FROM invoices").rule == "default"  # the schema is not written
    assert guardrails.check("SELECT * FROM public.users").rule == "users"
    assert guardrails.check("SELECT * FROM USERS").rule == "users"
    assert guardrails.check("SELECT * FROM users_archive").rule == "default"


def test_schema_filters_and_function_patterns() -> None:
    guardrails = guard(
        rule("billing-writes", "review", kind=("INSERT", "UPDATE", "DELETE"), schemas=("billing",)),
        rule("catalog-calls", "deny", functions=("pg_catalog.pg_*",)),
        rule("my-functions", "deny", functions=("audit_*",)),
    )
    assert guardrails.check("DELETE FROM billing.invoices WHERE id = 1").rule == "billing-writes"
    assert guardrails.check("SELECT * FROM billing.invoices").rule == "default"
    assert guardrails.check("SELECT pg_catalog.pg_sleep(0)").rule == "catalog-calls"
    assert guardrails.check("SELECT pg_sleep(0)").rule == "default"  # a dotted pattern needs the schema written
    assert guardrails.check("SELECT app.audit_trail()").rule == "my-functions"


def test_conditions_are_alternatives_and_filters_all_apply() -> None:
    guardrails = guard(rule("files", "deny", kind=("COPY",), copy_program=True, copy_file=True))
    assert guardrails.check("COPY t TO PROGRAM 'id'").action == "deny"
    assert guardrails.check("COPY t TO '/tmp/x'").action == "deny"
    assert guardrails.check("COPY t TO STDOUT").action == "allow"
    assert guard(rule("any", "deny")).check("SELECT 1").rule == "any"  # no filter, no condition: every statement


def test_an_allow_rule_must_cover_every_kind_table_and_schema() -> None:
    guardrails = guard(
        rule("reads", "allow", kind=("SELECT",)),
        rule("reports", "allow", kind=("SELECT", "INSERT"), schemas=("reports",)),
        default="deny",
    )
    assert guardrails.check("SELECT * FROM t").rule == "reads"
    assert guardrails.check("WITH d AS (DELETE FROM t RETURNING *) SELECT * FROM d").action == "deny"
    assert guardrails.check("SELECT * INTO t2 FROM t").action == "deny"
    assert guardrails.check("INSERT INTO reports.daily SELECT * FROM reports.raw").rule == "reports"
    assert guardrails.check("INSERT INTO reports.daily SELECT * FROM billing.raw").action == "deny"
    assert guardrails.check("INSERT INTO reports.daily SELECT * FROM raw").action == "deny"  # schema unknown
    assert (
        guard(rule("ddl", "allow", kind=("CREATE TABLE",)), default="deny")
        .check("CREATE SCHEMA s CREATE TABLE t (a int)")
        .action
        == "deny"
    )


def test_opaque_code_gets_the_opaque_action_unless_a_rule_names_it() -> None:
    assert guard().check("DO $$ BEGIN END $$").rule == "opaque"
    assert guard(opaque="deny").check("DO $$ BEGIN END $$").action == "deny"
    assert guard(rule("everything", "allow")).check("DO $$ BEGIN END $$").action == "review"
    allow_do = guard(rule("migrations", "allow", kind=("DO", "CREATE FUNCTION")))
    assert allow_do.check("DO $$ BEGIN END $$").rule == "migrations"
    assert allow_do.check("CREATE FUNCTION f() RETURNS int LANGUAGE sql AS 'select 1'").rule == "migrations"
    assert guard(rule("stop", "deny", kind=("DO",))).check("DO 'BEGIN END'").rule == "stop"


@pytest.mark.parametrize(
    "sql",
    ["SELEC 1", "SELECT 1\x00; DROP TABLE t", "SELECT 'caf\udce9'", "SELECT (((1", "x" * 1_100_000],
)
def test_unparseable_input_gets_the_unparseable_action(sql: str) -> None:
    verdict = PROD_GUARD.check(sql)
    assert (verdict.action, verdict.rule) == ("deny", "unparseable")
    assert verdict.message.startswith('Gatehouse denied this statement: rule "unparseable": ')
    assert guard(unparseable="review").check(sql).action == "review"


def test_empty_query_strings_are_allowed_whatever_the_default() -> None:
    for sql in ("", " ; ", "-- nothing"):
        verdict = guard(default="deny").check(sql)
        assert (verdict.action, verdict.rule, verdict.statement) == ("allow", "empty", "")


def test_a_huge_statement_is_judged() -> None:
    insert = "INSERT INTO t VALUES " + ", ".join(f"({n})" for n in range(150_000))  # noqa: S608 (test data)
    assert len(insert) > 1_000_000
    assert PROD_GUARD.check(insert).action == "allow"
    assert PROD_GUARD.check(insert + "; DROP TABLE t").action == "deny"


def test_regex_rules_read_each_statement_s_own_text_even_when_its_shape_is_cached() -> None:
    guardrails = guard(rule("no-sleep", "deny", kind=("SELECT",), regex=r"sleep\(\s*[1-9]"))
    assert guardrails.check("SELECT pg_sleep(0)").action == "allow"
    assert guardrails.check("SELECT pg_sleep(5)").action == "deny"
    assert guardrails.check("SELECT pg_sleep(0)").action == "allow"
    assert guardrails.check("SELECT pg_sleep(12)").statement == "SELECT pg_sleep(12)"
    with_condition = guard(rule("mixed", "deny", functions=("lo_*",), regex="(?i)secret"))
    assert with_condition.check("SELECT lo_get(1)").action == "deny"
    assert with_condition.check("SELECT 'top secret'").action == "deny"
    assert with_condition.check("SELECT 'public'").action == "allow"


def test_a_bad_regex_or_action_is_refused_when_the_policy_is_compiled() -> None:
    with pytest.raises(re.error):
        guard(rule("broken", "deny", regex="(unclosed"))
    with pytest.raises(ValueError, match="unknown action 'block'"):
        guard(rule("typo", "block"))
    with pytest.raises(ValueError, match="'default'"):
        guard(default="permit")


def test_cached_verdicts_carry_their_own_statement_text() -> None:
    guardrails = guard(rule("no-drop", "deny", kind=("DROP",)))
    first = guardrails.check("SELECT * FROM t WHERE id = 1")
    second = guardrails.check("SELECT * FROM t WHERE id = 2")
    assert (first.statement, second.statement) == ("SELECT * FROM t WHERE id = 1", "SELECT * FROM t WHERE id = 2")
    assert guardrails.check("SELECT * FROM t WHERE id = 1") is first


def test_a_statement_back_with_new_numbers_gets_the_verdict_a_cold_check_gives() -> None:
    # Such texts skip the verdict cache and are judged from their cached shape (the known-shape path).
    cases = [(sql, action) for sql, action, _ in PROD_GUARD_CASES + HARMLESS if re.search("[0-9]", sql)]
    assert len(cases) > 10
    warm = SqlGuardrails(prod_guard_spec())
    for sql, action in cases:
        warm.check(sql)
        variant = re.sub("[0-9]+", lambda number: str(int(number.group()) + 7), sql)
        cold = SqlGuardrails(prod_guard_spec())
        sql_facts.clear_caches()
        expected = cold.check(variant)
        assert warm.check(variant) == expected, variant
        assert warm.check(sql).action == action, sql


def test_a_prepare_back_with_new_numbers_is_still_remembered() -> None:
    guardrails = review_deletes()
    SessionGuardrails(guardrails).check("PREPARE q AS DELETE FROM t WHERE id = 3")  # caches the shape
    session = SessionGuardrails(guardrails)
    assert session.check("PREPARE q AS DELETE FROM t WHERE id = 4").action == "review"
    assert session.check("EXECUTE q").action == "review"  # not a bare EXECUTE: the session remembers q


def test_an_objection_is_the_check_verdict_unless_it_allows() -> None:
    # The proxy asks `objection`: None for what `check` allows, the same verdict otherwise, on every
    # path (exact-text cache, known shape, full judge), warm and cold.
    corpus = [sql for sql, _, _ in PROD_GUARD_CASES + HARMLESS + KNOWN_LIMITS]
    variants = [re.sub("[0-9]+", lambda number: str(int(number.group()) + 7), sql) for sql in corpus]
    guardrails = SqlGuardrails(prod_guard_spec())
    for rounds in range(2):
        for sql in corpus + variants:
            verdict = SqlGuardrails(prod_guard_spec()).check(sql)
            expected = None if verdict.action == "allow" else verdict
            assert guardrails.objection(sql) == expected, (rounds, sql)
    assert {guardrails.objection(sql) is None for sql in corpus} == {True, False}


def test_an_objection_resolves_execute_in_its_session() -> None:
    session = SessionGuardrails(review_deletes())
    assert session.objection("PREPARE q AS DELETE FROM t WHERE id = 1").action == "review"
    assert session.objection("EXECUTE q").action == "review"
    assert session.objection("EXECUTE other") is None


# --- prepared statements --------------------------------------------------------------------------------


def review_deletes() -> SqlGuardrails:
    return guard(
        rule("no-unbounded-write", "deny", kind=("DELETE", "UPDATE"), without_where=True),
        rule("deletes-by-review", "review", kind=("DELETE",)),
        rule("no-secrets", "deny", tables=("secrets",)),
    )


def test_a_prepare_is_judged_as_its_body_too() -> None:
    guardrails = review_deletes()
    assert guardrails.check("PREPARE p AS DELETE FROM t").action == "deny"
    assert guardrails.check("PREPARE p AS SELECT * FROM secrets").rule == "no-secrets"
    assert guardrails.check("PREPARE p(int) AS DELETE FROM t WHERE id = $1").action == "review"
    assert guardrails.check("PREPARE p AS SELECT 1").action == "allow"
    # so PREPARE and EXECUTE in one query string cannot skip the review
    assert guardrails.check("PREPARE q AS DELETE FROM t WHERE id = 1; EXECUTE q").action == "review"


def test_execute_is_judged_by_what_it_runs() -> None:
    session = SessionGuardrails(review_deletes())
    assert session.check("EXECUTE p(1)").action == "allow"  # unknown: a bare EXECUTE
    assert session.check("PREPARE p(int) AS DELETE FROM t WHERE id = $1").action == "review"
    verdict = session.check("EXECUTE p(1)")
    assert (verdict.action, verdict.rule, verdict.statement) == ("review", "deletes-by-review", "EXECUTE p(1)")
    assert session.check("EXPLAIN ANALYZE EXECUTE p(1)").action == "review"
    assert session.check("EXPLAIN EXECUTE p(1)").action == "allow"
    assert session.check("CREATE TABLE x AS EXECUTE p(1)").action == "review"
    assert review_deletes().check("EXECUTE p(1)").action == "allow"  # no session, no memory


def test_sessions_share_the_verdicts_of_plain_strings_but_never_of_execute() -> None:
    guardrails = review_deletes()
    first, second = SessionGuardrails(guardrails), SessionGuardrails(guardrails)
    verdict = first.check("DELETE FROM t WHERE id = 7")
    assert second.check("DELETE FROM t WHERE id = 7") is verdict  # judged once, in either session
    assert second.check_parse("s1", "DELETE FROM t WHERE id = 7") is verdict
    assert first.check("EXECUTE p(1)").action == "allow"  # a bare EXECUTE in this session...
    second.check("PREPARE p(int) AS DELETE FROM t WHERE id = $1")
    assert second.check("EXECUTE p(1)").action == "review"  # ...is not what this one's EXECUTE runs
    assert second.check("EXECUTE s1").action == "review"  # and a cached Parse is still remembered


def test_a_name_that_may_hold_several_bodies_is_judged_by_the_strictest() -> None:
    session = SessionGuardrails(review_deletes())
    session.check("PREPARE p AS SELECT 1")
    session.check("DEALLOCATE p")  # may not run on the server: nothing is forgotten yet
    session.check("PREPARE p(int) AS DELETE FROM t WHERE id = $1")
    assert session.check("EXECUTE p(1)").action == "review"
    session.forget("p")  # the server confirmed DEALLOCATE p
    assert session.check("EXECUTE p(1)").action == "allow"


def test_protocol_parse_names_share_the_prepared_statement_namespace() -> None:
    session = SessionGuardrails(review_deletes())
    assert session.check_parse("s1", "DELETE FROM t WHERE id = $1").action == "review"
    assert session.check("EXECUTE s1(1)").action == "review"
    assert session.check_parse("s2", "EXECUTE s1(1)").action == "review"
    assert session.check("EXECUTE s2").action == "review"  # EXECUTE of an EXECUTE is followed
    session.forget_all()
    assert session.check("EXECUTE s2").action == "allow"
    assert session.check_parse("", "SELECT 1").action == "allow"  # the unnamed statement is not EXECUTE-able


def test_a_denied_prepare_or_parse_is_not_remembered() -> None:
    session = SessionGuardrails(review_deletes())
    assert session.check("PREPARE p AS DELETE FROM t").action == "deny"
    assert session.check_parse("s1", "SELECT * FROM secrets").action == "deny"
    assert session.check("PREPARE q AS DELETE FROM t WHERE id = 1; DELETE FROM t").action == "deny"
    session.check("PREPARE p AS SELECT 1")
    session.check_parse("s1", "SELECT 1")
    assert session.check("EXECUTE p").action == "allow"
    assert session.check("EXECUTE s1").action == "allow"
    assert session.check("EXECUTE q").action == "allow"  # a bare EXECUTE: q was never prepared


def test_a_policy_change_applies_to_remembered_bodies() -> None:
    session = SessionGuardrails(guard())
    session.check("PREPARE p AS SELECT * FROM secrets")
    assert session.check("EXECUTE p").action == "allow"
    session.guardrails = review_deletes()
    assert session.check("EXECUTE p").rule == "no-secrets"


def test_a_name_re_prepared_too_often_fails_closed() -> None:
    session = SessionGuardrails(guard())
    for n in range(300):
        session.check(f"PREPARE p AS SELECT {n}")
    verdict = session.check("EXECUTE p")
    assert (verdict.action, verdict.rule) == ("deny", "prepared")
    session.forget("p")
    assert session.check("EXECUTE p").action == "allow"


# --- review rules: approvals and timeout ------------------------------------------------------------------------


def review(name: str, approvals: int = 1, timeout: float | None = None, **match: object) -> GuardrailRule:
    return GuardrailRule(name, "review", GuardrailMatch(**match), approvals=approvals, timeout=timeout)  # type: ignore[arg-type]


def four_eyes() -> SqlGuardrails:
    return guard(
        rule("no-drop", "deny", kind=("DROP",)),
        review("schema", approvals=2, timeout=90.0, kind=("ALTER", "CREATE")),
        review("grants", approvals=3, kind=("GRANT",)),
        review("deletes", timeout=30.0, kind=("DELETE",)),
        review("updates", approvals=4, timeout=600.0, kind=("UPDATE",)),
    )


def test_a_review_verdict_carries_its_rule_s_approvals_and_timeout() -> None:
    guardrails = four_eyes()
    verdict = guardrails.check("ALTER TABLE t ADD c int")
    assert verdict == Verdict(
        action="review",
        rule="schema",
        message='Gatehouse is holding this statement for review: rule "schema"',
        statement="ALTER TABLE t ADD c int",
        approvals=2,
        timeout=90.0,
    )
    assert guardrails.check("ALTER TABLE t ADD c int") is verdict  # cached with its values
    assert hash(verdict) == hash(Verdict(verdict.action, verdict.rule, verdict.message, verdict.statement, 2, 90.0))
    with pytest.raises(dataclasses.FrozenInstanceError):
        verdict.approvals = 1  # type: ignore[misc]
    grant = guardrails.check("GRANT SELECT ON t TO bob")
    assert (grant.rule, grant.approvals, grant.timeout) == ("grants", 3, None)
    delete = guardrails.check("DELETE FROM t WHERE id = 1")
    assert (delete.rule, delete.approvals, delete.timeout) == ("deletes", 1, 30.0)


def test_other_verdicts_keep_the_defaults() -> None:
    guardrails = guard(
        review("schema", approvals=2, timeout=90.0, kind=("ALTER",)),
        GuardrailRule("stray", "deny", GuardrailMatch(kind=("DROP",)), approvals=5, timeout=10.0),  # not from a file
        default="review",
        opaque="review",
        unparseable="review",
    )
    for sql, rule_name in (
        ("SELECT 1", "default"),
        ("DO $$ BEGIN END $$", "opaque"),
        ("SELEC 1", "unparseable"),
        ("", "empty"),
        ("DROP TABLE t", "stray"),
    ):
        verdict = guardrails.check(sql)
        assert (verdict.rule, verdict.approvals, verdict.timeout) == (rule_name, 1, None), sql
    assert Verdict("allow", "default", "", "SELECT 1") == Verdict("allow", "default", "", "SELECT 1", 1, None)


def test_the_strictest_verdict_keeps_the_values_of_the_rule_that_earned_it() -> None:
    guardrails = four_eyes()
    verdict = guardrails.check("SELECT 1; ALTER TABLE a ADD b int; DELETE FROM t WHERE id = 1")
    assert (verdict.rule, verdict.statement, verdict.approvals, verdict.timeout) == (
        "schema",
        "ALTER TABLE a ADD b int",
        2,
        90.0,
    )
    # A deny wins over any review, and carries no review values.
    verdict = guardrails.check("ALTER TABLE a ADD b int; DROP TABLE c")
    assert (verdict.action, verdict.rule, verdict.approvals, verdict.timeout) == ("deny", "no-drop", 1, None)


def test_of_two_reviews_the_one_that_needs_more_approvals_wins() -> None:
    guardrails = four_eyes()
    # Otherwise a statement needing three approvals could ride along behind one needing one.
    verdict = guardrails.check("DELETE FROM t WHERE id = 1; GRANT SELECT ON t TO bob; ALTER TABLE a ADD b int")
    assert (verdict.rule, verdict.statement, verdict.approvals, verdict.timeout) == (
        "grants",
        "GRANT SELECT ON t TO bob",
        3,
        None,
    )
    # With as many approvals, the first statement's rule decides, as before.
    verdict = guardrails.check("CREATE TABLE x (a int); ALTER TABLE a ADD b int")
    assert (verdict.statement, verdict.approvals) == ("CREATE TABLE x (a int)", 2)
    verdict = guardrails.check("DELETE FROM t WHERE id = 1; DO $$ BEGIN END $$")
    assert (verdict.rule, verdict.timeout) == ("deletes", 30.0)


def test_prepared_statements_carry_the_values_of_the_rule_their_body_earned() -> None:
    session = SessionGuardrails(four_eyes())
    verdict = session.check("PREPARE p AS UPDATE t SET a = 1 WHERE id = 2")
    assert (verdict.action, verdict.rule, verdict.approvals, verdict.timeout) == ("review", "updates", 4, 600.0)
    verdict = session.check("EXECUTE p")
    assert (verdict.rule, verdict.statement, verdict.approvals, verdict.timeout) == ("updates", "EXECUTE p", 4, 600.0)
    session.check_parse("s1", "DELETE FROM t WHERE id = $1")
    verdict = session.check("EXECUTE s1(1)")
    assert (verdict.rule, verdict.approvals, verdict.timeout) == ("deletes", 1, 30.0)
    session.check_parse("s1", "ALTER TABLE a ADD b int")  # s1 may now run either body: the stricter review decides
    verdict = session.check("EXECUTE s1(1)")
    assert (verdict.rule, verdict.approvals, verdict.timeout) == ("schema", 2, 90.0)


@pytest.mark.parametrize(
    ("approvals", "timeout", "expected"),
    [
        (0, None, "a review needs at least 1 approval, not 0"),
        (1, 0.0, "a review timeout must be a positive number of seconds, not 0.0"),
        (1, -5.0, "a review timeout must be a positive number of seconds"),
        (1, float("nan"), "a review timeout must be a positive number of seconds, not nan"),
        (1, float("inf"), "a review timeout must be a positive number of seconds, not inf"),
    ],
)
def test_impossible_review_values_are_refused_when_the_policy_is_compiled(
    approvals: int, timeout: float | None, expected: str
) -> None:
    with pytest.raises(ValueError, match=re.escape(f"rule 'r': {expected}")):
        guard(review("r", approvals=approvals, timeout=timeout))
