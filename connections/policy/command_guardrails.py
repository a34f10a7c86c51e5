"""Command guardrails: a policy's ordered rules judged against what an SSH command line runs.

`CommandGuardrails(spec).check(command)` reads the command as shell
(connections.policy.shell_facts) and judges every program it runs, each one
an *invocation* (an argv), wherever it appears: pipelines, lists, subshells,
`$( )`, `sh -c` strings, behind `sudo`, `env`, `xargs`, `find -exec`...

- The first rule that matches an invocation decides it; the strictest
  decision over the whole command wins (deny > review > allow; of two
  reviews, the one that needs more approvals). With no matching rule, an
  invocation gets the policy's `default`.
- A rule matches an invocation when its program matches `programs` (if
  set; basename globs, or path globs for patterns with a "/") and, if the
  rule sets `args_regex` or `regex`, one of them is found: `args_regex` in
  that invocation's arguments joined by single spaces, `regex` in the whole
  command line.
- An allow rule must *cover* the command: it decides only if it matches
  every invocation. So "allow programs: [ls]" does not allow `ls; rm -rf /`
  (that falls to the other rules and the default), and an allow rule can
  never be the reason something it does not name runs.
- An opaque command (what runs is known only when it runs: `eval`, `$X`,
  `python -c`, a shell reading its input) also gets the policy's `opaque`
  action, and the strictest wins: a deny rule still denies `eval "rm x"`,
  and no allow rule can allow code nobody could read.
- A command the shell parser cannot read gets the `unparseable` action.
- A blank command runs nothing and is allowed as rule "empty"; a shell
  session (no command at all) is the SSH engine's to judge, not this.

SQL rules (those that set `kind`, `tables`, `functions`, ...) are not about
commands and are skipped. Verdicts are cached by exact text (bounded).
Nothing here imports Django.
"""

import fnmatch
import re

from connections.policy.guardrails import Decision, Verdict
from connections.policy.rules import GuardrailRule, PolicySpec
from connections.policy.shell_facts import CommandFacts, UnparseableCommand, command_facts, program_name

SUBJECT = "command"  # what the messages say Gatehouse allowed, denied or is holding
_VERDICT_CACHE_MAX_CHARS = 4096
_CACHE_MAX_ENTRIES = 8192
_EMPTY = Decision.of("allow", "empty", "there is no command to run", subject=SUBJECT)


def _globs(patterns: list[str]) -> re.Pattern | None:
    """One compiled regex for a list of case-sensitive globs (program names are), None for an empty list."""
    if not patterns:
        return None
    return re.compile("|".join(fnmatch.translate(pattern) for pattern in patterns))


class _CommandRule:
    """A GuardrailRule with its patterns compiled; answers whether it matches one invocation."""

    def __init__(self, rule: GuardrailRule) -> None:
        match = rule.match
        self.name = rule.name
        self.covers = rule.action == "allow"
        self.has_programs = bool(match.programs)
        self.names = _globs([pattern for pattern in match.programs if "/" not in pattern])
        self.paths = _globs([pattern for pattern in match.programs if "/" in pattern])
        self.args_regex = re.compile(match.args_regex) if match.args_regex else None
        self.regex = re.compile(match.regex) if match.regex else None
        self.decision = Decision.of(rule.action, rule.name, rule.message, rule.approvals, rule.timeout, subject=SUBJECT)

    def runs_program(self, program: str) -> bool:
        """Whether argv[0] is one of the rule's programs (any program, if it names none)."""
        if not self.has_programs:
            return True
        if self.names is not None and self.names.match(program_name(program)):
            return True
        return self.paths is not None and self.paths.match(program) is not None

    def matches(self, argv: tuple[str, ...], command: str) -> bool:
        """Whether the rule matches one invocation of `command`."""
        if not self.runs_program(argv[0]):
            return False
        if self.args_regex is None and self.regex is None:
            return True
        if self.args_regex is not None and self.args_regex.search(" ".join(argv[1:])):
            return True
        return self.regex is not None and self.regex.search(command) is not None


class CommandGuardrails:
    """A policy's command guardrails, compiled: `check(command)` judges an SSH exec command or shell line."""

    def __init__(self, spec: PolicySpec) -> None:
        self.spec = spec
        self._rules = tuple(_CommandRule(rule) for rule in spec.guardrails if rule.match.for_commands)
        self._default = Decision.of(spec.default, "default", subject=SUBJECT)
        self._verdicts: dict[str, Verdict] = {}

    @property
    def has_rules(self) -> bool:
        """Whether any guardrail applies to commands (without one, every command gets the default)."""
        return bool(self._rules)

    def check(self, command: str) -> Verdict:
        """The verdict on a command line; its `statement` is the command as given."""
        verdict = self._verdicts.get(command)
        if verdict is not None:
            return verdict
        verdict = self._judge(command)
        if len(command) <= _VERDICT_CACHE_MAX_CHARS:
            if len(self._verdicts) >= _CACHE_MAX_ENTRIES:
                self._verdicts.clear()
            self._verdicts[command] = verdict
        return verdict

    def clear_caches(self) -> None:
        """Forget cached verdicts (benchmarks measure the cold path with it)."""
        self._verdicts.clear()

    def decide(self, facts: CommandFacts, command: str) -> Decision:
        """The strictest decision over every invocation of `command` (whose facts are given), opaque included."""
        worst: Decision | None = None
        covering: dict[_CommandRule, bool] = {}
        for argv in facts.invocations:
            decision = self._first_match(argv, facts, command, covering)
            if worst is None or decision.rank > worst.rank:
                worst = decision
                if worst.action == "deny":
                    break
        worst = worst or self._default  # runs no program: an assignment, a redirection
        if facts.opaque:
            detail = f"what it runs is only known when it runs ({facts.reasons[0]})"
            opaque = Decision.of(self.spec.opaque, "opaque", detail, subject=SUBJECT)
            if opaque.rank > worst.rank:
                worst = opaque
        return worst

    def _judge(self, command: str) -> Verdict:
        if not command.strip():
            return _EMPTY.verdict(command)
        try:
            facts = command_facts(command)
        except UnparseableCommand as exc:
            return Decision.of(self.spec.unparseable, "unparseable", str(exc), subject=SUBJECT).verdict(command)
        return self.decide(facts, command).verdict(command)

    def _first_match(
        self, argv: tuple[str, ...], facts: CommandFacts, command: str, covering: dict[_CommandRule, bool]
    ) -> Decision:
        for rule in self._rules:
            if not rule.matches(argv, command):
                continue
            if rule.covers and not self._covers(rule, facts, command, covering):
                continue  # an allow rule decides nothing unless it allows everything the command runs
            return rule.decision
        return self._default

    @staticmethod
    def _covers(rule: _CommandRule, facts: CommandFacts, command: str, covering: dict[_CommandRule, bool]) -> bool:
        if rule not in covering:
            covering[rule] = all(rule.matches(argv, command) for argv in facts.invocations)
        return covering[rule]
