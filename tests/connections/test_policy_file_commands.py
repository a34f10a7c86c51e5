"""SSH command rules in policy files: `programs` and `args_regex`, their mistakes (with lines), round trips, `show`.

Django-free except the last test, which runs `manage.py policies show` on a real database.
"""

import io
import json

import pytest
from django.core.management import call_command

from connections.policy.command_guardrails import CommandGuardrails
from connections.policy.guardrails import SqlGuardrails
from connections.policy.policy_file import (
    PolicyEntry,
    PolicyFileError,
    parse_policy_body,
    parse_policy_file,
    policy_body_yaml,
    policy_file_yaml,
    spec_from_dict,
    spec_to_dict,
)
from connections.policy.rules import GuardrailMatch, GuardrailRule

from .test_policy_file import one_policy, problems_of

SQL_AND_SSH = """\
policies:
  - name: prod-guard
    connections: [pg-main, ssh-web]
    default: allow
    guardrails:
      - name: no-drop
        match: {kind: [DROP, TRUNCATE]}
        action: deny
      - name: no-rm
        match: {programs: [rm, shred]}
        action: deny
        message: use trash-put
      - name: recursive-chmod
        match:
          programs: [chmod, chown]
          args_regex: "(^| )-[a-zA-Z]*R"
        action: review
        approvals: 2
      - name: local-tools
        match: {programs: ["/usr/local/bin/*", "python*"]}
        action: review
      - name: shadow
        match: {args_regex: /etc/shadow}
        action: deny
      - name: secrets
        match: {regex: "(?i)password"}
        action: review
"""


# --- what a good file gives ---------------------------------------------------------------------------------------


def test_it_reads_command_rules_next_to_sql_rules():
    (entry,) = parse_policy_file(SQL_AND_SSH).policies
    no_drop, no_rm, recursive_chmod, local_tools, shadow, secrets = entry.spec.guardrails
    assert no_drop.match == GuardrailMatch(kind=("DROP", "TRUNCATE"))
    assert no_rm == GuardrailRule("no-rm", "deny", GuardrailMatch(programs=("rm", "shred")), "use trash-put")
    assert recursive_chmod.match == GuardrailMatch(programs=("chmod", "chown"), args_regex="(^| )-[a-zA-Z]*R")
    assert recursive_chmod.approvals == 2
    assert local_tools.match.programs == ("/usr/local/bin/*", "python*")
    assert shadow.match == GuardrailMatch(args_regex="/etc/shadow")
    assert secrets.match.for_sql and secrets.match.for_commands


def test_each_engine_takes_the_rules_that_are_about_it():
    spec = parse_policy_file(SQL_AND_SSH).policies[0].spec
    commands, sql = CommandGuardrails(spec), SqlGuardrails(spec)
    assert commands.check("sudo rm -rf /srv").message == 'Gatehouse denied this command: rule "no-rm": use trash-put'
    assert commands.check("chmod -R 777 /srv").approvals == 2
    assert commands.check("python3 x.py").rule == "local-tools"
    assert commands.check("cat /etc/shadow").rule == "shadow"
    assert commands.check("DROP TABLE users").rule == "default"
    assert sql.check("DROP TABLE users").rule == "no-drop"
    assert sql.check("SELECT '/etc/shadow', 'rm -rf /'").rule == "default"
    assert sql.check("SELECT password FROM users").rule == commands.check("cat password.txt").rule == "secrets"


def test_a_single_program_may_be_written_without_a_list():
    spec = parse_policy_body("guardrails:\n  - {name: g, action: deny, match: {programs: rm}}\n", "p")
    assert spec.guardrails[0].match.programs == ("rm",)


# --- mistakes, each with its line -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("guardrails:\n  - {name: g, action: deny, match: {programs: []}}", "line 4: programs is an empty list"),
        ("guardrails:\n  - {name: g, action: deny, match: {programs: {rm: 1}}}", "line 4: programs must be a list"),
        ("guardrails:\n  - {name: g, action: deny, match: {programs: null}}", "line 4: programs must be a list"),
        (
            "guardrails:\n  - {name: g, action: deny, match: {programs: [rm, 12]}}",
            "line 4: each of programs must be text, not the number 12",
        ),
        (
            "guardrails:\n  - {name: g, action: deny, match: {programs: ['']}}",
            "line 4: each of programs must name a program such as rm, python* or /usr/bin/*, not ''",
        ),
        (
            "guardrails:\n  - {name: g, action: deny, match: {programs: ['rm -rf']}}",
            "line 4: program 'rm -rf' holds a space: name the program only (rm) and match its arguments with "
            "args_regex",
        ),
        (
            "guardrails:\n  - {name: g, action: deny, match: {programs: [rm], args_regex: '(unclosed'}}",
            "line 4: args_regex '(unclosed' does not compile: missing ), unterminated subpattern at position 0",
        ),
        (
            "guardrails:\n  - {name: g, action: deny, match: {args_regex: ''}}",
            "line 4: args_regex is empty; it would match every command",
        ),
        (
            "guardrails:\n  - {name: g, action: deny, match: {args_regex: [a]}}",
            "line 4: args_regex must be text, not a list",
        ),
        (
            "guardrails:\n  - {name: g, action: deny, match: {kind: DROP, programs: [rm]}}",
            "line 4: match sets SQL keys (kind) and command keys (programs): a guardrail is about SQL statements "
            "or about SSH commands, not both; split it into two rules",
        ),
        (
            "guardrails:\n  - {name: g, action: deny, match: {without_where: false, args_regex: x}}",
            "line 4: match sets SQL keys (without_where) and command keys (args_regex)",
        ),
    ],
)
def test_it_rejects_a_bad_command_key_with_its_line(body, expected):
    (problem,) = problems_of(one_policy(body))
    assert problem.startswith(expected)


def test_mixing_is_reported_at_the_first_command_key_among_other_problems():
    text = """\
policies:
  - name: p
    guardrails:
      - name: mixed
        action: deny
        match:
          tables: [users]
          functions: [dblink]
          args_regex: -rf
          programs: [rm]
      - name: bad-programs
        action: deny
        match:
          programs:
            - rm
            - ""
            - 7
"""
    assert problems_of(text) == [
        "line 9: match sets SQL keys (tables, functions) and command keys (args_regex, programs): a guardrail is "
        "about SQL statements or about SSH commands, not both; split it into two rules",
        "line 16: each of programs must name a program such as rm, python* or /usr/bin/*, not ''",
        "line 17: each of programs must be text, not the number 7",
    ]


def test_stored_dicts_are_checked_for_command_keys_too():
    stored = {"guardrails": [{"name": "g", "action": "deny", "match": {"kind": ["DROP"], "programs": ["rm"]}}]}
    with pytest.raises(PolicyFileError) as caught:
        spec_from_dict("p", stored)
    assert [str(problem) for problem in caught.value.problems] == [
        "match sets SQL keys (kind) and command keys (programs): a guardrail is about SQL statements or about SSH "
        "commands, not both; split it into two rules"
    ]


# --- the way back ---------------------------------------------------------------------------------------------------


def test_command_rules_round_trip_through_dicts_yaml_and_files():
    parsed = parse_policy_file(SQL_AND_SSH)
    spec = parsed.policies[0].spec
    stored = spec_to_dict(spec)
    assert json.loads(json.dumps(stored)) == stored  # plain JSON values, as the Policy model stores them
    assert stored["guardrails"][2]["match"] == {"programs": ["chmod", "chown"], "args_regex": "(^| )-[a-zA-Z]*R"}
    assert spec_from_dict(spec.name, stored) == spec
    assert parse_policy_body(policy_body_yaml(spec), spec.name) == spec
    written = policy_file_yaml(parsed.policies)
    assert parse_policy_file(written) == parsed
    assert "        match:\n          programs: [rm, shred]\n        action: deny\n" in written


@pytest.mark.django_db
def test_show_prints_command_rules_as_written(tmp_path, make_connection):
    make_connection("pg-main")
    make_connection("ssh-web")
    path = tmp_path / "policies.yaml"
    path.write_text(SQL_AND_SSH)
    call_command("policies", "apply", str(path), stdout=io.StringIO())
    shown = io.StringIO()
    call_command("policies", "show", "ssh-web", stdout=shown)
    text = shown.getvalue()
    assert "programs: [rm, shred]" in text
    assert "          args_regex: (^| )-[a-zA-Z]*R\n" in text
    (entry,) = parse_policy_file(text).policies
    assert entry == PolicyEntry(parse_policy_file(SQL_AND_SSH).policies[0].spec, "", ("pg-main", "ssh-web"))
