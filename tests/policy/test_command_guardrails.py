"""Command guardrails: the SSH evasion corpus, rule matching, covering allow rules, fallbacks and caching."""

import dataclasses

import pytest

from connections.policy.command_guardrails import CommandGuardrails
from connections.policy.guardrails import SqlGuardrails, Verdict
from connections.policy.rules import GuardrailMatch, GuardrailRule, PolicySpec
from connections.policy.session_policy import CompiledPolicy
from tests.policy.command_corpus import EVASIONS, HARMLESS, KNOWN_LIMITS, OPAQUE, UNPARSEABLE, no_rm_spec

NO_RM = CommandGuardrails(no_rm_spec())


def guard(*rules: GuardrailRule, **fallbacks: str) -> CommandGuardrails:
    return CommandGuardrails(PolicySpec(name="test", guardrails=rules, **fallbacks))


def rule(name: str, action: str, message: str = "", approvals: int = 1, **match: object) -> GuardrailRule:
    return GuardrailRule(name, action, GuardrailMatch(**match), message, approvals)  # type: ignore[arg-type]


# --- the corpus -------------------------------------------------------------------------------------------------


def test_the_corpus_is_as_large_as_promised():
    assert len(EVASIONS) >= 30
    assert len(HARMLESS) >= 20
    assert len(OPAQUE) >= 15 and len(UNPARSEABLE) >= 8
    for command, reason in EVASIONS + HARMLESS + OPAQUE + UNPARSEABLE + KNOWN_LIMITS:
        assert isinstance(command, str) and reason, command
    everything = [command for command, _ in EVASIONS + HARMLESS + OPAQUE + UNPARSEABLE + KNOWN_LIMITS]
    assert len(set(everything)) == len(everything)


@pytest.mark.parametrize(("command", "reason"), EVASIONS)
def test_the_deny_rule_catches_the_evasion(command, reason):
    verdict = NO_RM.check(command)
    assert (verdict.action, verdict.rule) == ("deny", "no-rm"), reason
    assert verdict.message == 'Gatehouse denied this command: rule "no-rm"'
    assert verdict.statement == command


@pytest.mark.parametrize(("command", "reason"), HARMLESS)
def test_harmless_commands_pass(command, reason):
    verdict = NO_RM.check(command)
    assert verdict.action == "allow", (reason, verdict)
    assert verdict.rule in ("default", "empty")


@pytest.mark.parametrize(("command", "reason"), OPAQUE)
def test_opaque_commands_get_the_opaque_action(command, reason):
    verdict = NO_RM.check(command)
    assert (verdict.action, verdict.rule) == ("review", "opaque"), reason
    assert verdict.message.startswith('Gatehouse is holding this command for review: rule "opaque": ')
    assert "what it runs is only known when it runs" in verdict.message


@pytest.mark.parametrize(("command", "reason"), UNPARSEABLE)
def test_unreadable_commands_get_the_unparseable_action(command, reason):
    verdict = NO_RM.check(command)
    assert (verdict.action, verdict.rule) == ("deny", "unparseable"), reason
    assert verdict.message.startswith('Gatehouse denied this command: rule "unparseable": ')
    lenient = guard(rule("no-rm", "deny", programs=("rm",)), unparseable="review")
    assert lenient.check(command).action == "review"


@pytest.mark.parametrize(("command", "reason"), KNOWN_LIMITS)
def test_known_limits_are_allowed_as_documented(command, reason):
    assert NO_RM.check(command).action == "allow", reason


# --- matching ---------------------------------------------------------------------------------------------------


def test_the_first_matching_rule_decides_each_invocation():
    guardrails = guard(
        rule("interactive-rm", "allow", programs=("rm",), args_regex=r"^-i\b"),
        rule("no-rm", "deny", programs=("rm",)),
    )
    assert guardrails.check("rm -i x").rule == "interactive-rm"
    assert guardrails.check("rm -f x").rule == "no-rm"
    assert guardrails.check("ls").rule == "default"


def test_the_strictest_decision_over_the_command_wins():
    guardrails = guard(
        rule("restarts", "review", programs=("systemctl",)),
        rule("two-eyes", "review", approvals=2, programs=("reboot",)),
        rule("no-rm", "deny", programs=("rm",)),
    )
    verdict = guardrails.check("systemctl restart x; reboot")
    assert (verdict.action, verdict.rule, verdict.approvals) == ("review", "two-eyes", 2)
    assert guardrails.check("systemctl restart x && rm y; reboot").rule == "no-rm"
    assert guardrails.check("reboot; systemctl restart x").rule == "two-eyes"


def test_program_patterns_are_basename_globs_or_path_globs():
    guardrails = guard(
        rule("interpreters", "deny", programs=("python*", "perl")),
        rule("local-tools", "review", programs=("/usr/local/bin/*",)),
    )
    for command in ("python3 x.py", "/usr/bin/python3.12 x.py", "perl x.pl"):
        assert guardrails.check(command).rule == "interpreters", command
    assert guardrails.check("/usr/local/bin/deploy --now").rule == "local-tools"
    assert guardrails.check("deploy --now").rule == "default"  # a path pattern matches the path as written
    assert guardrails.check("PYTHON3 x.py").rule == "default"  # program names are case-sensitive


def test_args_regex_is_searched_in_the_arguments_of_the_named_programs():
    guardrails = guard(rule("recursive-rm", "deny", programs=("rm",), args_regex=r"(^| )(-[a-zA-Z]*[rR]|--recursive)"))
    for command in ("rm -rf /srv", "rm -fr /srv", "rm -R x", "rm --recursive x", "sudo rm -r x", "sh -c 'rm -rf x'"):
        assert guardrails.check(command).rule == "recursive-rm", command
    for command in ("rm -f x", "rm x", "echo -rf; rm x", "grep -r rm ."):
        assert guardrails.check(command).rule == "default", command


def test_args_regex_without_programs_applies_to_every_program():
    guardrails = guard(rule("shadow", "deny", args_regex=r"(^| )/etc/shadow( |$)"))
    for command in ("cat /etc/shadow", "less -N /etc/shadow", "sh -c 'cp /etc/shadow /tmp'"):
        assert guardrails.check(command).rule == "shadow", command
    assert guardrails.check("cat /etc/shadow.bak").rule == "default"
    assert guardrails.check("cp /etc/shadowy /tmp").rule == "default"
    assert guardrails.check("echo 'see /etc/shadow'").rule == "shadow"  # arguments are joined by spaces


def test_args_regex_looks_only_at_the_matching_programs_own_arguments():
    guardrails = guard(rule("world-writable", "deny", programs=("chmod",), args_regex=r"\b777\b"))
    assert guardrails.check("chmod 777 /srv").rule == "world-writable"
    assert guardrails.check("echo 777; chmod 644 /srv").rule == "default"


def test_a_regex_is_searched_in_the_whole_command_line():
    guardrails = guard(rule("prod-paths", "review", regex=r"/srv/prod\b"))
    assert guardrails.check("ls /srv/prod").rule == "prod-paths"
    assert guardrails.check("cd /tmp && tar xf x -C /srv/prod").rule == "prod-paths"
    assert guardrails.check("ls /srv/staging").rule == "default"


def test_a_rule_without_keys_matches_every_command():
    guardrails = guard(rule("reads", "allow", programs=("ls", "cat")), rule("everything-else", "review"))
    assert guardrails.check("ls; cat x").rule == "reads"
    assert guardrails.check("ls; vi x").rule == "everything-else"


# --- allow rules cover the whole command -----------------------------------------------------------------------


def test_an_allow_rule_must_cover_every_program_of_the_command():
    guardrails = guard(rule("read-only", "allow", programs=("ls", "cat", "grep", "wc")), default="deny")
    for command in ("ls -la", "cat /etc/hostname | grep x | wc -l", "ls && cat x"):
        assert guardrails.check(command).rule == "read-only", command
    for command in ("ls; rm -rf /", "ls $(rm x)", "sudo ls", "sh -c 'ls'", "xargs ls", "cat x | tee y"):
        verdict = guardrails.check(command)
        assert (verdict.action, verdict.rule) == ("deny", "default"), command


def test_an_allow_rule_with_args_regex_covers_only_matching_invocations():
    guardrails = guard(
        rule("git-reads", "allow", programs=("git",), args_regex=r"^(status|log|diff)\b"), default="review"
    )
    assert guardrails.check("git status && git log -3").rule == "git-reads"
    assert guardrails.check("git status; git push --force").rule == "default"


def test_an_allow_rule_cannot_allow_what_nobody_can_read():
    guardrails = guard(rule("python", "allow", programs=("python3",)), default="deny", opaque="review")
    assert guardrails.check("python3 manage.py check").rule == "python"
    verdict = guardrails.check("python3 -c 'import os'")
    assert (verdict.action, verdict.rule) == ("review", "opaque")
    everything = guard(rule("anything", "allow"), opaque="deny")
    assert everything.check("eval x").action == "deny"


def test_a_deny_rule_decides_an_opaque_command_when_it_is_the_stricter():
    guardrails = guard(rule("no-rm", "deny", programs=("rm",)), opaque="review")
    assert guardrails.check('eval "rm x"').rule == "no-rm"
    assert guardrails.check('eval "ls"').rule == "opaque"
    reviewing = guard(rule("rm-review", "review", approvals=3, programs=("rm",)), opaque="deny")
    assert reviewing.check('eval "rm x"').rule == "opaque"  # deny is stricter than any review


def test_opaque_allow_leaves_the_rules_to_decide():
    guardrails = guard(rule("no-rm", "deny", programs=("rm",)), opaque="allow")
    assert guardrails.check("$CMD x").action == "allow"
    assert guardrails.check('sh -c "rm $X"').rule == "no-rm"


# --- fallbacks and verdicts -------------------------------------------------------------------------------------


def test_a_command_that_runs_no_program_gets_the_default():
    guardrails = guard(rule("no-rm", "deny", programs=("rm",)), default="deny")
    assert guardrails.check("> /tmp/important").rule == "default"
    assert guardrails.check("x=1").action == "deny"


def test_a_blank_command_is_allowed_as_empty():
    guardrails = guard(default="deny")
    for command in ("", "  ", "\n"):
        message = 'Gatehouse allowed this command: rule "empty": there is no command to run'
        assert guardrails.check(command) == Verdict("allow", "empty", message, command)


def test_messages_read_naturally_for_commands():
    guardrails = guard(
        rule("no-rm", "deny", message="use trash-put instead", programs=("rm",)),
        rule("restarts", "review", programs=("systemctl",)),
        default="deny",
    )
    assert guardrails.check("rm x").message == 'Gatehouse denied this command: rule "no-rm": use trash-put instead'
    assert guardrails.check("systemctl restart x").message == (
        'Gatehouse is holding this command for review: rule "restarts"'
    )
    assert guardrails.check("ls").message == 'Gatehouse denied this command: rule "default"'
    assert guardrails.check("ls )").message == (
        "Gatehouse denied this command: rule \"unparseable\": it is not valid shell: unexpected token ')'"
    )


def test_a_review_verdict_carries_the_rules_approvals_and_timeout():
    held = GuardrailRule("reboots", "review", GuardrailMatch(programs=("reboot",)), approvals=2, timeout=90.0)
    verdict = guard(held).check("sudo reboot")
    assert (verdict.action, verdict.approvals, verdict.timeout) == ("review", 2, 90.0)


def test_sql_rules_are_not_about_commands_and_command_rules_not_about_sql():
    spec = PolicySpec(
        name="both",
        guardrails=(
            rule("no-drop", "deny", kind=("DROP",)),
            rule("no-rm", "deny", programs=("rm",)),
            rule("no-everything", "deny", programs=("*",), args_regex="."),
        ),
    )
    commands, sql = CommandGuardrails(spec), SqlGuardrails(spec)
    assert commands.check("DROP TABLE x").rule == "no-everything"  # DROP is a program here, not SQL
    assert commands.check("DROP").rule == "default"
    assert sql.check("DROP TABLE x").rule == "no-drop"
    assert sql.check("SELECT 'rm -rf /'").rule == "default"
    assert commands.has_rules
    assert not CommandGuardrails(PolicySpec("sql-only", guardrails=spec.guardrails[:1])).has_rules


def test_rules_without_sql_or_command_keys_apply_to_both():
    spec = PolicySpec(name="both", guardrails=(rule("secrets", "deny", regex="(?i)password"), rule("all", "review")))
    assert CommandGuardrails(spec).check("grep PASSWORD .env").rule == "secrets"
    assert SqlGuardrails(spec).check("SELECT password FROM users").rule == "secrets"
    assert CommandGuardrails(spec).check("ls").rule == SqlGuardrails(spec).check("SELECT 1").rule == "all"


def test_a_match_cannot_mix_sql_and_command_keys():
    with pytest.raises(ValueError, match=r"SQL keys \(kind\) and command keys \(programs\)"):
        GuardrailMatch(kind=("DROP",), programs=("rm",))
    assert GuardrailMatch(programs=("rm",)).for_commands and not GuardrailMatch(programs=("rm",)).for_sql
    assert GuardrailMatch(kind=("DROP",)).for_sql and not GuardrailMatch(kind=("DROP",)).for_commands
    assert GuardrailMatch(regex="x").for_sql and GuardrailMatch(regex="x").for_commands


# --- caching and the session ------------------------------------------------------------------------------------


def test_verdicts_are_cached_by_exact_text_and_long_commands_are_judged_each_time():
    guardrails = guard(rule("no-rm", "deny", programs=("rm",)))
    first = guardrails.check("rm -rf /tmp/x")
    assert guardrails.check("rm -rf /tmp/x") is first
    assert guardrails.check("rm  -rf /tmp/x") is not first
    long_command = "rm " + "x" * 5000
    assert guardrails.check(long_command).rule == "no-rm"
    assert guardrails.check(long_command) is not guardrails.check(long_command)
    guardrails.clear_caches()
    assert guardrails.check("rm -rf /tmp/x") is not first
    assert guardrails.check("rm -rf /tmp/x") == first


def test_the_session_policy_judges_commands_and_denies_when_the_engine_breaks():
    compiled = CompiledPolicy(no_rm_spec(), ("no-rm", 1), b"k" * 32)
    session = compiled.for_session()
    assert session.check_command("sudo rm -rf /").rule == "no-rm"
    assert session.check_command("ls").action == "allow"
    compiled.commands = None  # any call into it now raises
    verdict = session.check_command("ls")
    assert dataclasses.astuple(verdict)[:2] == ("deny", "engine-error")
    assert verdict.message == 'Gatehouse denied this command: rule "engine-error": the policy engine could not judge it'
    assert verdict.statement == "ls"
