"""The policy file parser: the issue's example, every key, every kind of mistake (with its line), and round trips.

Django-free: plain functions, no database.
"""

import textwrap
import time
import tracemalloc

import pytest
import yaml

from connections.policy.policy_file import (
    MAX_FILE_BYTES,
    MAX_REPORTED,
    STATEMENT_VERBS,
    PolicyEntry,
    PolicyFileError,
    PolicyProblem,
    parse_policy_body,
    parse_policy_file,
    policy_body_yaml,
    policy_file_yaml,
    spec_from_dict,
    spec_to_dict,
)
from connections.policy.rules import GuardrailMatch, GuardrailRule, MaskingRule, PolicySpec

ISSUE_EXAMPLE = """\
policies:
  - name: prod-guard
    connections: [pg-main]
    default: allow              # allow | deny | review
    unparseable: deny
    guardrails:
      - name: no-drop
        match: {kind: [DROP, TRUNCATE]}
        action: deny
      - name: no-unbounded-write
        match: {kind: [DELETE, UPDATE], without_where: true}
        action: deny
      - name: no-file-access
        match: {functions: [pg_read_file, lo_import], copy_program: true}
        action: deny
      - name: schema-changes
        match: {kind: [ALTER, CREATE]}
        action: review
    masking:
      - name: secrets
        columns: ["*password*", "api_key", "*.token"]
        style: full
      - name: pii
        detectors: [email, credit_card, ssn, jwt, aws_key, private_key]
        style: partial
"""

EVERY_KEY = """\
policies:
  - name: billing
    description: Billing database, read mostly
    connections: [billing-main, billing-replica]
    default: review
    unparseable: deny
    opaque: deny
    guardrails:
      - name: reads
        match: {kind: select, schemas: [billing, "public"], tables: ["billing.*", users]}
        action: allow
      - name: danger
        match: {dangerous_functions: true, copy_file: true, copy_program: true}
        action: deny
        message: ask the DBA team
      - name: last-resort
        match: {regex: "(?i)\\\\bpg_sleep\\\\s*\\\\("}
        action: deny
      - name: two-eyes-more
        match: {kind: [ALTER, CREATE]}
        action: review
        approvals: 2
        timeout: 1h30m
      - name: quick-look
        match: {kind: GRANT}
        action: review
        timeout: 2.5
      - name: everything-else
        match: {}
        action: review
    masking:
      - name: cards
        columns: card_number
        style: partial
        keep: 2
      - name: joinable
        columns: ["users.email"]
        detectors: email
        style: hash
      - name: gone
        detectors: [iban, phone, api_token]
        style: "null"
  - name: staging
"""


def problems_of(text: str | bytes, **kwargs) -> list[str]:
    with pytest.raises(PolicyFileError) as caught:
        parse_policy_file(text, **kwargs)
    return [str(problem) for problem in caught.value.problems]


def one_policy(body: str) -> str:
    """A file with one policy `p` whose keys are `body` (indented for you)."""
    return "policies:\n  - name: p\n" + textwrap.indent(textwrap.dedent(body), "    ")


# --- what a good file gives ---------------------------------------------------


def test_it_reads_the_example_from_the_issue():
    (entry,) = parse_policy_file(ISSUE_EXAMPLE).policies
    spec = entry.spec
    assert (spec.name, spec.default, spec.unparseable, spec.opaque) == ("prod-guard", "allow", "deny", "review")
    assert entry.connections == ("pg-main",)
    assert [rule.name for rule in spec.guardrails] == [
        "no-drop",
        "no-unbounded-write",
        "no-file-access",
        "schema-changes",
    ]
    assert spec.guardrails[0] == GuardrailRule("no-drop", "deny", GuardrailMatch(kind=("DROP", "TRUNCATE")))
    assert spec.guardrails[1].match == GuardrailMatch(kind=("DELETE", "UPDATE"), without_where=True)
    assert spec.guardrails[2].match == GuardrailMatch(functions=("pg_read_file", "lo_import"), copy_program=True)
    assert spec.guardrails[3].action == "review"
    assert spec.masking == (
        MaskingRule("secrets", style="full", columns=("*password*", "api_key", "*.token")),
        MaskingRule("pii", style="partial", detectors=("email", "credit_card", "ssn", "jwt", "aws_key", "private_key")),
    )


def test_it_reads_every_key():
    billing, staging = parse_policy_file(EVERY_KEY).policies
    assert billing.description == "Billing database, read mostly"
    assert billing.connections == ("billing-main", "billing-replica")
    spec = billing.spec
    assert (spec.default, spec.unparseable, spec.opaque) == ("review", "deny", "deny")
    reads, danger, last_resort, two_eyes_more, quick_look, everything = spec.guardrails
    # A single word or lower case is accepted; kinds are stored upper case.
    assert reads.match == GuardrailMatch(kind=("SELECT",), schemas=("billing", "public"), tables=("billing.*", "users"))
    assert danger.match == GuardrailMatch(dangerous_functions=True, copy_file=True, copy_program=True)
    assert danger.message == "ask the DBA team"
    assert last_resort.match.regex == r"(?i)\bpg_sleep\s*\("
    assert (two_eyes_more.approvals, two_eyes_more.timeout) == (2, 5400.0)
    assert (quick_look.approvals, quick_look.timeout) == (1, 2.5)
    assert (everything.approvals, everything.timeout) == (1, None)
    assert everything.match == GuardrailMatch()
    cards, joinable, gone = spec.masking
    assert (cards.columns, cards.style, cards.keep) == (("card_number",), "partial", 2)
    assert (joinable.columns, joinable.detectors, joinable.style) == (("users.email",), ("email",), "hash")
    assert (gone.detectors, gone.style) == (("iban", "phone", "api_token"), "null")
    # A policy with only a name takes the defaults and leaves its attachments alone.
    assert staging.spec == PolicySpec(name="staging")
    assert staging.connections is None


def test_it_keeps_the_order_of_rules_and_policies():
    names = [f"rule-{i:03}" for i in range(50)]
    rules = "".join(f"  - {{name: {name}, match: {{kind: SELECT}}, action: allow}}\n" for name in reversed(names))
    (entry,) = parse_policy_file(one_policy("guardrails:\n" + rules)).policies
    assert [rule.name for rule in entry.spec.guardrails] == list(reversed(names))
    text = "policies:\n" + "".join(f"  - name: p{i}\n" for i in (3, 1, 2))
    assert [entry.spec.name for entry in parse_policy_file(text).policies] == ["p3", "p1", "p2"]


@pytest.mark.parametrize(
    ("written", "stored"),
    [
        ("drop", "DROP"),
        ("drop   table", "DROP TABLE"),
        ("Create Function", "CREATE FUNCTION"),
        ("SECURITY LABEL", "SECURITY LABEL"),
        ("CREATE MATERIALIZED VIEW", "CREATE MATERIALIZED VIEW"),
        ("CREATE FOREIGN DATA WRAPPER", "CREATE FOREIGN DATA WRAPPER"),
    ],
)
def test_it_normalises_statement_kinds(written, stored):
    (entry,) = parse_policy_file(
        one_policy(f"guardrails:\n  - {{name: g, action: deny, match: {{kind: '{written}'}}}}")
    ).policies
    assert entry.spec.guardrails[0].match.kind == (stored,)


def test_it_accepts_every_kind_the_sql_engine_reports():
    from connections.policy.sql_facts import KINDS

    qualified = ["DROP TABLE", "ALTER TEXT SEARCH CONFIGURATION", "ROLLBACK TO SAVEPOINT", "COPY FROM"]
    listed = ", ".join(f"'{kind}'" for kind in (*KINDS, *qualified))
    (entry,) = parse_policy_file(
        one_policy(f"guardrails:\n  - {{name: g, action: deny, match: {{kind: [{listed}]}}}}")
    ).policies
    assert entry.spec.guardrails[0].match.kind == (*KINDS, *qualified)
    # And nothing else: a first word the engine never reports would make a rule that never matches.
    assert {kind.split()[0] for kind in KINDS} == STATEMENT_VERBS


@pytest.mark.parametrize(
    ("written", "reported"), [("START TRANSACTION", "BEGIN"), ("end", "COMMIT"), ("TABLE", "SELECT")]
)
def test_it_points_synonyms_to_the_kind_the_engine_reports(written, reported):
    (problem,) = problems_of(one_policy(f"guardrails:\n  - {{name: g, action: deny, match: {{kind: '{written}'}}}}"))
    assert problem.endswith(f"statements are classified as {reported}; write {reported}")


def test_it_accepts_an_empty_connections_list_as_detach_everything():
    (entry,) = parse_policy_file(one_policy("connections: []")).policies
    assert entry.connections == ()


def test_it_accepts_a_byte_order_mark_and_windows_line_ends():
    data = ("\ufeff" + ISSUE_EXAMPLE.replace("\n", "\r\n")).encode("utf-8")
    assert parse_policy_file(data) == parse_policy_file(ISSUE_EXAMPLE)


# --- mistakes, each with its line ---------------------------------------------


def test_it_rejects_unknown_keys_at_every_level_with_the_allowed_ones():
    text = """\
policies:
  - name: p
    colour: red
    guardrails:
      - name: g
        action: deny
        match: {kind: DROP, table: users}
        severity: high
    masking:
      - name: m
        columns: [a]
        mode: full
version: 2
"""
    assert problems_of(text) == [
        "line 3: unknown key 'colour' in a policy; allowed keys: name, description, connections, default, "
        "unparseable, opaque, guardrails, masking",
        "line 7: unknown key 'table' in match; allowed keys: kind, schemas, tables, functions, "
        "dangerous_functions, copy_program, copy_file, without_where, regex, programs, args_regex",
        "line 8: unknown key 'severity' in a guardrail; allowed keys: name, action, match, message, approvals, timeout",
        "line 12: unknown key 'mode' in a masking rule; allowed keys: name, columns, detectors, style, keep",
        "line 13: unknown key 'version' in the top level; allowed keys: policies",
    ]


def test_it_reports_every_bad_value_not_just_the_first():
    text = """\
policies:
  - name: p
    default: allowed
    unparseable: true
    opaque: [review]
    guardrails:
      - name: g1
        action: block
        match: {kind: [DORP, "DROP;"], without_where: "yes please", functions: {a: 1}}
      - name: g2
        action: deny
        match: {regex: "(unclosed"}
    masking:
      - name: m1
        columns: [a]
        style: blur
      - name: m2
        detectors: [email, pigeon]
      - name: m3
"""
    assert problems_of(text) == [
        "line 3: default 'allowed' is unknown; use one of: allow, deny, review",
        "line 4: unparseable must be text, not the boolean true",
        "line 5: opaque must be text, not a list",
        "line 8: action 'block' is unknown; use one of: allow, deny, review",
        "line 9: kind 'DORP' is not a statement kind: use a SQL command such as SELECT, UPDATE, DROP, "
        "or a command and an object type such as DROP TABLE or CREATE FUNCTION",
        "line 9: kind 'DROP;' is not a statement kind: use a SQL command such as SELECT, UPDATE, DROP, "
        "or a command and an object type such as DROP TABLE or CREATE FUNCTION",
        "line 9: without_where must be true or false, not the text 'yes please'",
        "line 9: functions must be a list, not a mapping",
        "line 12: regex '(unclosed' does not compile: missing ), unterminated subpattern at position 0",
        "line 16: style 'blur' is unknown; use one of: full, partial, hash, null",
        "line 18: detector 'pigeon' is unknown; use one of: email, credit_card, iban, ssn, phone, jwt, aws_key, "
        "private_key, api_token",
        "line 19: masking rule 'm3' needs columns, detectors or both",
    ]


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("guardrails:\n  - {action: deny, match: {}}", "line 4: a guardrail needs a name"),
        ("guardrails:\n  - {name: '', action: deny, match: {}}", "line 4: a guardrail name '' must be letters"),
        ("guardrails:\n  - {name: 'no drop', action: deny, match: {}}", "line 4: a guardrail name 'no drop' must be"),
        ("guardrails:\n  - {name: g, match: {}}", "line 4: guardrail 'g' needs an action: allow, deny, review"),
        ("guardrails:\n  - {name: g, action: deny}", "line 4: guardrail 'g' needs a match; write match: {}"),
        ("guardrails:\n  - {name: g, action: deny, match: []}", "line 4: match must be a mapping of keys to values"),
        ("guardrails:\n  - {name: g, action: deny, match: {kind: []}}", "line 4: kind is an empty list"),
        ("guardrails:\n  - {name: g, action: deny, match: {kind: 12}}", "line 4: kind must be text, not the number 12"),
        ("guardrails:\n  - {name: g, action: deny, match: {kind: A B C D E}}", "line 4: kind 'A B C D E' is not"),
        ("guardrails:\n  - {name: g, action: deny, match: {kind: 'DROP 2'}}", "line 4: kind 'DROP 2' is not"),
        ("guardrails:\n  - {name: g, action: deny, match: {regex: ''}}", "line 4: regex is empty"),
        ("guardrails:\n  - {name: g, action: deny, match: {}, message: [a]}", "line 4: message must be text"),
        ('guardrails:\n  - {name: g, action: deny, match: {}, message: "a\\nb"}', "line 4: message must not contain"),
        ("guardrails: {name: g}", "line 3: guardrails must be a list of rules, not a mapping"),
        (
            "masking:\n  - {name: m, columns: [a], keep: 2}",
            "line 4: keep applies only to style: partial, not style: full",
        ),
        ("masking:\n  - {name: m, columns: [a], style: partial, keep: -1}", "line 4: keep must be a whole number"),
        ("masking:\n  - {name: m, columns: [a], style: partial, keep: true}", "line 4: keep must be a whole number"),
        ("masking:\n  - {name: m, columns: [a], style: partial, keep: 1.5}", "line 4: keep must be a whole number"),
        ("masking:\n  - {name: m, columns: []}", "line 4: columns is an empty list"),
        (
            "masking:\n  - {name: m, columns: [a], style: null}",
            'line 4: YAML reads a bare null as nothing; write style: "null"',
        ),
        ("masking:\n  - {name: m, columns: [a, null]}", "line 4: each of columns must be text, not nothing (null)"),
        ("description: [a]", "line 3: description must be text, not a list"),
        ("description: " + "x" * 201, "line 3: description is longer than 200 characters"),
        ("connections: pg main", "line 3: connection name 'pg main' must be letters"),
        ("connections: {a: 1}", "line 3: connections must be a list, not a mapping"),
    ],
)
def test_it_rejects_a_bad_value_with_its_line(body, expected):
    (problem,) = problems_of(one_policy(body))
    assert problem.startswith(expected)


def test_it_rejects_duplicate_names_and_double_attachments():
    text = """\
policies:
  - name: a
    connections: [pg-main, pg-main]
    guardrails:
      - {name: same, action: deny, match: {}}
    masking:
      - {name: same, columns: [x]}
  - name: b
    connections: [pg-main]
  - name: a
"""
    assert problems_of(text) == [
        "line 3: connection 'pg-main' is listed twice (first at line 3)",
        "line 7: rule name 'same' is already used at line 5",
        "line 9: connection 'pg-main' is already given policy 'a' at line 3; a connection has one policy",
        "line 10: policy 'a' is already defined at line 2",
    ]


def test_it_rejects_missing_and_badly_shaped_policies():
    text = """\
policies:
  - description: no name
  - just-a-name
  - name: 7
  - name: bad/name
  - name: this-name-is-much-too-long-for-a-policy-because-it-goes-on-and-on-and-on
"""
    problems = problems_of(text)
    assert problems[:4] == [
        "line 2: a policy needs a name",
        "line 3: a policy must be a mapping of keys to values, not the text 'just-a-name'",
        "line 4: policy name must be text, not the number 7",
        "line 5: policy name 'bad/name' must be letters, digits, hyphens and underscores",
    ]
    assert problems[4] == "line 6: policy name is longer than 63 characters"


def test_it_reports_unknown_connections_with_their_lines_among_other_problems():
    text = one_policy("connections: [pg-main, ghost]\ndefault: sometimes\n") + "  - name: q\n    connections: phantom\n"
    assert problems_of(text, known_connections={"pg-main"}) == [
        "line 3: no connection named 'ghost'; see: manage.py connections list",
        "line 4: default 'sometimes' is unknown; use one of: allow, deny, review",
        "line 6: no connection named 'phantom'; see: manage.py connections list",
    ]


# --- files that are not policy files at all ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", "line 1: the file is empty; it needs a policies: key with a list"),
        ("# only a comment\n\n", "line 1: the file is empty; it needs a policies: key with a list"),
        ("- name: p\n", "line 1: the top level must be a mapping with a policies: key, not a list"),
        ("just text\n", "line 1: the top level must be a mapping of keys to values, not the text 'just text'"),
        ("policy: []\n", "line 1: unknown key 'policy' in the top level; allowed keys: policies"),
        ("policies: {name: p}\n", "line 1: policies must be a list of policies, not a mapping"),
        ("policies:\n", "line 1: policies must be a list of policies, not nothing (null)"),
        ("policies:\n\t- name: p\n", "line 2: a tab character here; YAML indents with spaces only"),
        ("policies:\n  - name: p\n   default: deny\n", "line 3: YAML syntax error: expected <block end>"),
        ("policies: []\n---\npolicies: []\n", "line 2: YAML syntax error: but found another document"),
        ("policies:\n  - name: p\x07\n", "line 2: the control character U+0007 is not allowed in YAML"),
        ("policies:\n  - name: p\n    default: deny\n    default: allow\n", "line 4: duplicate key 'default' (first"),
        ("policies:\n  - name: p\n    1: deny\n", "line 3: keys must be words, not the number 1"),
        ("policies: !!set {a, b}\n", "line 1: the tag tag:yaml.org,2002:set is not allowed here"),
        ("policies:\n  - name: !!python/name:os.system\n", "line 2: cannot read this value: could not determine"),
        ("policies: !!python/object/apply:os.system [echo]\n", "line 1: the tag tag:yaml.org,2002:python/object"),
    ],
)
def test_it_explains_files_that_are_not_policy_files(text, expected):
    assert problems_of(text)[0].startswith(expected)


def test_it_says_which_line_is_not_utf8():
    (problem,) = problems_of(b"policies:\n  - name: p\n    description: caf\xe9\n")
    assert problem == "line 3: the file is not UTF-8 text (byte 0xe9)"


def test_it_refuses_aliases_so_a_billion_laughs_cannot_blow_up():
    laughs = "a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n" + "".join(
        f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join(['*' + chr(97 + i)] * 9)}]\n" for i in range(9)
    )
    tracemalloc.start()
    started = time.perf_counter()
    try:
        problems = problems_of(laughs + "policies: *j\n")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert problems == ["line 2: aliases (*a) are not allowed in policy files; repeat the value"]
    assert peak < 5_000_000
    assert time.perf_counter() - started < 1


def test_it_refuses_oversized_files_before_parsing_them():
    huge = "policies: []\n" + "#" * MAX_FILE_BYTES
    for data in (huge, huge.encode()):
        (problem,) = problems_of(data)
        assert problem.startswith(f"line 1: the file is {MAX_FILE_BYTES + 13} bytes; policy files are limited")


def test_it_caps_the_number_and_depth_of_values():
    (many,) = problems_of("policies: [" + ", ".join(["1"] * 60_000) + "]\n")
    assert many == "line 1: the file has more than 50000 values; split it"
    (deep,) = problems_of("policies: " + "[" * 500 + "]" * 500 + "\n")
    assert deep.startswith("line 1: values are nested more than")


def test_it_formats_problems_as_file_colon_line_and_caps_the_list():
    error = PolicyFileError([PolicyProblem(line, f"problem {line}") for line in range(MAX_REPORTED + 5, 0, -1)])
    lines = error.lines("prod.yaml")
    assert lines[0] == "prod.yaml:1: problem 1"
    assert lines[MAX_REPORTED - 1] == f"prod.yaml:{MAX_REPORTED}: problem {MAX_REPORTED}"
    assert lines[-1] == "prod.yaml: and 5 more problems"
    assert len(lines) == MAX_REPORTED + 1


# --- the way back: dicts for the database, YAML for `show` --------------------------------------------------------


def test_it_round_trips_a_file_through_yaml():
    for text in (ISSUE_EXAMPLE, EVERY_KEY):
        parsed = parse_policy_file(text)
        written = policy_file_yaml(parsed.policies, header="Effective policy\nof something")
        assert written.startswith("# Effective policy\n# of something\npolicies:\n")
        assert parse_policy_file(written) == parsed
        assert policy_file_yaml(parse_policy_file(written).policies) == policy_file_yaml(parsed.policies)


def test_it_writes_yaml_a_person_would_write():
    written = policy_file_yaml(parse_policy_file(ISSUE_EXAMPLE).policies)
    assert "  - name: prod-guard\n    connections: [pg-main]\n    default: allow\n" in written
    assert "      - name: no-drop\n        match:\n          kind: [DROP, TRUNCATE]\n        action: deny\n" in written
    assert "columns: ['*password*', api_key, '*.token']" in written
    # The defaults are spelled out, so `show` says what the policy really does.
    assert "    unparseable: deny\n    opaque: review\n" in written
    assert "keep: 4" in written


def test_it_round_trips_specs_through_plain_dicts_and_json_types():
    for entry in parse_policy_file(EVERY_KEY).policies + parse_policy_file(ISSUE_EXAMPLE).policies:
        stored = spec_to_dict(entry.spec)
        assert yaml.safe_load(yaml.safe_dump(stored)) == stored  # plain values only
        assert spec_from_dict(entry.spec.name, stored) == entry.spec
        assert parse_policy_body(policy_body_yaml(entry.spec), entry.spec.name) == entry.spec


def test_it_checks_stored_dicts_as_strictly_as_files():
    with pytest.raises(PolicyFileError) as caught:
        spec_from_dict("p", {"default": "maybe", "guardrails": [{"name": "g", "action": "deny"}], "extra": 1})
    assert [str(problem) for problem in caught.value.problems] == [
        "unknown key 'extra' in a stored policy; allowed keys: default, unparseable, opaque, guardrails, masking",
        "default 'maybe' is unknown; use one of: allow, deny, review",
        "guardrail 'g' needs a match; write match: {} to match every statement",
    ]
    with pytest.raises(PolicyFileError):
        spec_from_dict("p", ["not", "a", "mapping"])


def test_it_reads_one_policys_rules_as_the_admin_edits_them():
    spec = parse_policy_body(
        "default: deny\nguardrails:\n  - {name: reads, match: {kind: SELECT}, action: allow}\n", "p"
    )
    assert spec == PolicySpec(
        "p", default="deny", guardrails=(GuardrailRule("reads", "allow", GuardrailMatch(("SELECT",))),)
    )
    with pytest.raises(PolicyFileError) as caught:
        parse_policy_body("name: p\nconnections: [a]\ndefault: deny\n", "p")
    assert [str(problem) for problem in caught.value.problems] == [
        "line 1: unknown key 'name' in the rules; allowed keys: default, unparseable, opaque, guardrails, masking",
        "line 2: unknown key 'connections' in the rules; allowed keys: default, unparseable, opaque, guardrails, "
        "masking",
    ]
    with pytest.raises(PolicyFileError, match="the rules are empty"):
        parse_policy_body("  \n", "p")


def test_an_entry_without_connections_writes_no_connections_key():
    written = policy_file_yaml([PolicyEntry(PolicySpec("p"))])
    assert "connections" not in written
    assert parse_policy_file(written).policies[0].connections is None


# --- review rules: how many approvals, how long to wait --------------------------------------------------------


def review_policy(keys: str) -> str:
    """A file whose one guardrail, on line 4, is a review rule with `keys` added."""
    return one_policy(f"guardrails:\n  - {{name: r, action: review, match: {{}}, {keys}}}")


def review_rule(keys: str) -> GuardrailRule:
    (entry,) = parse_policy_file(review_policy(keys)).policies
    return entry.spec.guardrails[0]


@pytest.mark.parametrize(
    ("keys", "approvals", "timeout"),
    [
        ("approvals: 1", 1, None),
        ("approvals: 32", 32, None),
        ("approvals: 3, timeout: 90s", 3, 90.0),
        ("timeout: 5m", 1, 300.0),
        ("timeout: 1H", 1, 3600.0),
        ("timeout: 1h30m", 1, 5400.0),
        ("timeout: 1d", 1, 86400.0),
        ("timeout: 24h", 1, 86400.0),
        ("timeout: 45", 1, 45.0),
        ("timeout: 0.5", 1, 0.5),
        ("timeout: 86400", 1, 86400.0),
    ],
)
def test_it_reads_the_approvals_and_timeout_of_a_review_rule(keys, approvals, timeout):
    rule = review_rule(keys)
    assert (rule.approvals, rule.timeout) == (approvals, timeout)
    assert rule.timeout is None or isinstance(rule.timeout, float)


def test_a_review_rule_without_them_gets_the_defaults():
    rule = review_rule("message: look closely")
    assert (rule.approvals, rule.timeout) == (1, None)
    assert rule == GuardrailRule("r", "review", GuardrailMatch(), "look closely")


@pytest.mark.parametrize(
    ("keys", "expected"),
    [
        ("approvals: 0", "line 4: approvals must be a whole number from 1 to 32, not the number 0"),
        ("approvals: 33", "line 4: approvals must be a whole number from 1 to 32, not the number 33"),
        ("approvals: -1", "line 4: approvals must be a whole number from 1 to 32, not the number -1"),
        ("approvals: 2.0", "line 4: approvals must be a whole number from 1 to 32, not the number 2.0"),
        ("approvals: true", "line 4: approvals must be a whole number from 1 to 32, not the boolean true"),
        ("approvals: '2'", "line 4: approvals must be a whole number from 1 to 32, not the text '2'"),
        ("approvals: null", "line 4: approvals must be a whole number from 1 to 32, not nothing (null)"),
        ("timeout: 0", "line 4: timeout must be positive, not the number 0"),
        ("timeout: -5", "line 4: timeout must be positive, not the number -5"),
        ("timeout: .nan", "line 4: timeout must be positive, not the number nan"),
        ("timeout: .inf", "line 4: timeout inf is longer than the maximum, 24h"),
        ("timeout: 86401", "line 4: timeout 86401 is longer than the maximum, 24h"),
        ("timeout: 2d", "line 4: timeout '2d' is longer than the maximum, 24h"),
        ("timeout: 24h1s", "line 4: timeout '24h1s' is longer than the maximum, 24h"),
        ("timeout: 1" + "0" * 400, "line 4: timeout 1000"),
        ("timeout: 0s", "line 4: timeout '0s' is not a positive duration; write a number and a unit such as 90s"),
        ("timeout: 5 minutes", "line 4: timeout '5 minutes' is not a positive duration"),
        ("timeout: 1.5m", "line 4: timeout '1.5m' is not a positive duration"),
        ("timeout: ''", "line 4: timeout '' is not a positive duration"),
        ("timeout: " + "9" * 600 + "s", "line 4: timeout is longer than 500 characters"),
        ('timeout: "5m\\t"', "line 4: timeout must not contain control characters"),
        ("timeout: true", "line 4: timeout must be a duration like 5m or a number of seconds, not the boolean true"),
        ("timeout: null", "line 4: timeout must be a duration like 5m or a number of seconds, not nothing (null)"),
        ("timeout: [5m]", "line 4: timeout must be a duration like 5m or a number of seconds, not a list"),
    ],
)
def test_it_rejects_bad_approvals_and_timeouts_with_their_line(keys, expected):
    (problem,) = problems_of(review_policy(keys))
    assert problem.startswith(expected)


def test_a_huge_timeout_number_is_an_error_not_a_crash():
    (problem,) = problems_of(review_policy("timeout: 1" + "0" * 5000))
    assert problem.startswith("line 4: cannot read this value: Exceeds the limit (4300 digits)")


def test_approvals_and_timeout_are_only_for_review_rules():
    text = """\
policies:
  - name: p
    guardrails:
      - name: no-drop
        match: {kind: DROP}
        action: deny
        approvals: 2
      - name: reads
        match: {kind: SELECT}
        action: allow
        timeout: 5m
      - {name: bad-action, match: {}, action: block, approvals: 2}
"""
    assert problems_of(text) == [
        "line 7: approvals applies only to action: review, not action: deny",
        "line 11: timeout applies only to action: review, not action: allow",
        "line 12: action 'block' is unknown; use one of: allow, deny, review",  # no second error about approvals
    ]


def test_it_writes_approvals_and_timeouts_as_a_person_would_and_reads_them_back():
    rules = (
        GuardrailRule("a", "review", GuardrailMatch(), approvals=2, timeout=300.0),
        GuardrailRule("b", "review", GuardrailMatch(), timeout=90.0),
        GuardrailRule("c", "review", GuardrailMatch(), timeout=5400.0),
        GuardrailRule("d", "review", GuardrailMatch(), timeout=86400.0),
        GuardrailRule("e", "review", GuardrailMatch(), timeout=2.5),
        GuardrailRule("f", "review", GuardrailMatch(), approvals=32),
    )
    spec = PolicySpec("p", guardrails=rules)
    stored = spec_to_dict(spec)
    assert [(rule.get("approvals"), rule.get("timeout")) for rule in stored["guardrails"]] == [
        (2, "5m"),
        (None, "1m30s"),
        (None, "1h30m"),
        (None, "24h"),
        (None, 2.5),
        (32, None),
    ]
    assert spec_from_dict("p", stored) == spec
    written = policy_body_yaml(spec)
    assert "  - name: a\n    match: {}\n    action: review\n    approvals: 2\n    timeout: 5m\n" in written
    assert parse_policy_body(written, "p") == spec
    assert parse_policy_file(policy_file_yaml([PolicyEntry(spec)])).policies[0].spec == spec


def test_rules_with_default_approvals_and_timeout_are_stored_and_shown_as_before():
    spec = parse_policy_file(ISSUE_EXAMPLE).policies[0].spec
    for rule in spec_to_dict(spec)["guardrails"]:
        assert "approvals" not in rule and "timeout" not in rule
    assert spec_to_dict(spec)["guardrails"][3] == {
        "name": "schema-changes",
        "match": {"kind": ["ALTER", "CREATE"]},
        "action": "review",
    }
    written = policy_file_yaml(parse_policy_file(ISSUE_EXAMPLE).policies)
    assert "approvals" not in written and "timeout" not in written


def test_stored_dicts_are_checked_for_approvals_and_timeout_too():
    with pytest.raises(PolicyFileError) as caught:
        spec_from_dict(
            "p",
            {
                "guardrails": [
                    {"name": "a", "action": "review", "match": {}, "approvals": 0, "timeout": "forever"},
                    {"name": "b", "action": "deny", "match": {}, "timeout": 60},
                ]
            },
        )
    assert [str(problem) for problem in caught.value.problems] == [
        "approvals must be a whole number from 1 to 32, not the number 0",
        "timeout 'forever' is not a positive duration; write a number and a unit such as 90s, 5m or 1h, "
        "or a number of seconds",
        "timeout applies only to action: review, not action: deny",
    ]
