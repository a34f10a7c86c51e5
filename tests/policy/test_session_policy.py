"""A session's policy: COPY shapes from the statement and the catalog, and failing closed."""

from connections.policy.rules import GuardrailMatch, GuardrailRule, MaskingRule, PolicySpec
from connections.policy.session_policy import CompiledPolicy

SPEC = PolicySpec(
    name="p",
    guardrails=(GuardrailRule("no-drop", "deny", GuardrailMatch(kind=("DROP",))),),
    masking=(MaskingRule("secrets", "full", columns=("users.password",)),),
)
CATALOG = [
    (16500, "public", "users", 1, "id"),
    (16500, "public", "users", 3, "password"),
    (16500, "public", "users", 2, "name"),
    (16600, "billing", "orders", 1, "id"),
    (16700, "archive", "orders", 1, "id"),
]


def session():
    policy = CompiledPolicy(SPEC, ("p", 1), b"k" * 32).for_session()
    policy.use_catalog(CATALOG)
    return policy


def test_it_names_copy_columns_from_the_statement_or_the_catalog() -> None:
    policy = session()
    assert policy.copy_shape("COPY users (id, name) TO STDOUT", 0).columns == ("id", "name")
    by_catalog = policy.copy_shape("COPY users TO STDOUT WITH (FORMAT csv, HEADER)", 0)
    assert by_catalog.columns == tuple(("public", "users", name) for name in ("id", "name", "password"))
    assert by_catalog.csv and by_catalog.header


def test_it_gives_no_columns_where_it_cannot_be_sure() -> None:
    policy = session()
    assert policy.copy_shape("COPY orders TO STDOUT", 0).columns is None  # two schemas have an orders table
    assert policy.copy_shape("COPY users TO STDOUT WITH (FORMAT csv, QUOTE '|')", 0).columns is None
    assert policy.copy_shape("COPY (SELECT * FROM users) TO STDOUT", 0).columns is None


def test_it_finds_the_copy_among_several_statements() -> None:
    policy = session()
    query = "SELECT 1; COPY users (name) TO STDOUT; COPY users FROM STDIN"
    assert policy.copy_shape(query, 0) is None
    assert policy.copy_shape(query, 1).columns == ("name",)
    assert policy.copy_shape(query, 2) is None
    assert policy.copy_shape("not sql at all", 0) is None


def test_it_denies_rather_than_fails_when_the_engine_breaks() -> None:
    policy = session()
    policy.guardrails.guardrails = None  # any call into it now raises
    verdict = policy.check("SELECT 1")
    assert verdict.action == "deny" and verdict.rule == "engine-error"
    assert policy.check_parse("s1", "SELECT 1").action == "deny"
    assert policy.objection("SELECT 1") == verdict
