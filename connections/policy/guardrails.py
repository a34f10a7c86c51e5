"""Guardrails: a policy's ordered rules judged against each statement's facts.

`SqlGuardrails(spec).check(sql)` classifies every statement of a query
string (connections.policy.sql_facts), lets the first matching rule decide
each one, and returns the strictest verdict (deny > review > allow; of two
reviews, the one that needs more approvals). A review verdict carries its
rule's `approvals` and `timeout`.
A PREPARE is judged as its body too. `SessionGuardrails` adds what one
connection remembers: the bodies of its prepared statements, so that
`EXECUTE name` is judged by what it runs (without a session, EXECUTE is
judged as a bare EXECUTE).

How a rule's filters read a statement. For a deny or review rule a filter
matches when the statement has any of the named kinds, tables or schemas.
For an allow rule it must *cover* the statement: every kind it runs, every
relation and every schema it touches must be named. Otherwise "allow
SELECT" would also allow `WITH d AS (DELETE ...) SELECT`, and "allow
tables: [reports.*]" a join with another schema. Either way the direction
is the one that fails closed. Reading subqueries inside another statement
(INSERT ... SELECT) count as part of it, not as a separate SELECT to cover.

Command rules (those that set `programs` or `args_regex`) are not about SQL:
they are skipped here and judged by connections.policy.command_guardrails.

Opaque statements (DO, CREATE FUNCTION, unknown statement types) fall to
the policy's `opaque` action unless a rule decides them first; an allow
rule decides them only if it names their kind explicitly.

Speed: a rule's patterns and regex are compiled once; for each distinct
statement shape the rules that can match are worked out once and cached
(`_Plan`), so a hot statement costs a dict look-up plus any regex rules;
verdicts of whole query strings are cached by exact text.
"""

import fnmatch
import math
import re
from dataclasses import dataclass, field

from connections.policy.rules import GuardrailRule, PolicySpec
from connections.policy.sql_facts import (
    DANGEROUS_FUNCTIONS,
    StatementFacts,
    UnparseableSQL,
    bare_kind,
    classify_known_shape,
    classify_shared,
    with_text,
)

_STRICTNESS = {"allow": 0, "review": 1, "deny": 2}
_new_object = object.__new__
_ACTION_WORDS = {  # completed with what is judged: "statement" or "command"
    "allow": "Gatehouse allowed this {}",
    "review": "Gatehouse is holding this {} for review",
    "deny": "Gatehouse denied this {}",
}
_VERDICT_CACHE_MAX_CHARS = 4096
_CACHE_MAX_ENTRIES = 8192
_MAX_PREPARED_BODIES = 256  # distinct bodies remembered under one prepared-statement name


@dataclass(frozen=True)
class Verdict:
    """What to do with a query string, which rule said so, and what the client is told.

    For a review, `approvals` is how many reviewers must approve and
    `timeout` how many seconds to wait for them (None: the deployment's
    default); both come from the rule and keep their defaults otherwise.
    """

    action: str  # "allow" | "review" | "deny"
    rule: str  # the rule's name, or "default", "opaque", "unparseable", "empty"
    message: str  # names the rule
    statement: str  # the statement the verdict is about
    approvals: int = 1
    timeout: float | None = None


@dataclass(frozen=True)
class Decision:
    """A verdict without its statement text, shared by every statement of one shape (or every command)."""

    action: str
    rule: str
    message: str
    approvals: int = 1
    timeout: float | None = None
    # How strict it is, for picking the strictest decision: the action first, then the approvals a review needs
    # (compare with >, so that of two equally strict decisions the first one found stays).
    rank: tuple[int, int] = field(init=False, repr=False, compare=False)
    # The fields of its verdicts, the statement left blank (filled in by `verdict`).
    verdict_fields: dict = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "rank", (_STRICTNESS[self.action], self.approvals))
        fields = {"action": self.action, "rule": self.rule, "message": self.message, "statement": ""}
        fields.update(approvals=self.approvals, timeout=self.timeout)
        object.__setattr__(self, "verdict_fields", fields)

    @classmethod
    def of(
        cls,
        action: str,
        rule: str,
        detail: str = "",
        approvals: int = 1,
        timeout: float | None = None,
        subject: str = "statement",
    ) -> "Decision":
        """A rule's decision; `approvals` and `timeout` are kept for a review and dropped for other actions.

        Its message reads `Gatehouse denied this {subject}: rule "{rule}": {detail}`.
        """
        if action not in _ACTION_WORDS:
            raise ValueError(f"rule {rule!r}: unknown action {action!r} (expected allow, review or deny)")
        if action != "review":
            approvals, timeout = 1, None
        elif approvals < 1:
            raise ValueError(f"rule {rule!r}: a review needs at least 1 approval, not {approvals!r}")
        elif timeout is not None and not (math.isfinite(timeout) and timeout > 0):
            raise ValueError(f"rule {rule!r}: a review timeout must be a positive number of seconds, not {timeout!r}")
        message = f'{_ACTION_WORDS[action].format(subject)}: rule "{rule}"' + (f": {detail}" if detail else "")
        return cls(action, rule, message, approvals, timeout)

    def verdict(self, statement: str) -> Verdict:
        """This decision about `statement`: Verdict(action, rule, message, statement, approvals, timeout)."""
        # Filled in directly: a frozen dataclass's __init__ pays an object.__setattr__ per field, which made
        # this a quarter of the cost of judging a new statement text; this way costs a third of that.
        verdict = _new_object(Verdict)
        verdict.__dict__.update(self.verdict_fields)
        verdict.__dict__["statement"] = statement
        return verdict


def _pattern(patterns: list[str]) -> re.Pattern | None:
    """One compiled regex for a list of case-insensitive globs (None for an empty list)."""
    if not patterns:
        return None
    return re.compile("|".join(fnmatch.translate(pattern.lower()) for pattern in patterns))


class _CompiledRule:
    """A GuardrailRule with its patterns compiled; answers whether it matches a statement."""

    def __init__(self, rule: GuardrailRule) -> None:
        match = rule.match
        self.name = rule.name
        self.covers = rule.action == "allow"
        self.kinds = frozenset(" ".join(kind.upper().split()) for kind in match.kind)
        self.bare_tables = _pattern([p for p in match.tables if "." not in p])
        self.dotted_tables = _pattern([p for p in match.tables if "." in p])
        self.has_tables = bool(match.tables)
        self.schemas = _pattern(list(match.schemas))
        functions = list(match.functions) + (list(DANGEROUS_FUNCTIONS) if match.dangerous_functions else [])
        self.bare_functions = _pattern([p for p in functions if "." not in p])
        self.dotted_functions = _pattern([p for p in functions if "." in p])
        self.flags = (match.copy_program, match.copy_file, match.without_where)
        self.has_conditions = bool(functions) or any(self.flags)
        self.regex = re.compile(match.regex) if match.regex else None
        self.decision = Decision.of(rule.action, rule.name, rule.message, rule.approvals, rule.timeout)

    def filters_match(self, facts: StatementFacts) -> bool:
        """Whether the kind, table and schema filters match (any of them, or cover them for allow)."""
        if self.kinds and not self._kinds_match(facts):
            return False
        if self.has_tables and not self._relations_match(facts):
            return False
        return self.schemas is None or self._schemas_match(facts)

    def conditions_hold(self, facts: StatementFacts) -> bool:
        """Whether a condition other than the regex holds."""
        copy_program, copy_file, without_where = self.flags
        if (copy_program and facts.copy_program) or (copy_file and facts.copy_file):
            return True
        if without_where and facts.without_where:
            return True
        for function in facts.functions:
            pattern = self.dotted_functions if "." in function else self.bare_functions
            if pattern is not None and pattern.match(function):
                return True
        return False

    def _kinds_match(self, facts: StatementFacts) -> bool:
        if not self.covers:
            return not self.kinds.isdisjoint(facts.kinds)
        named_bares = {bare_kind(kind) for kind in facts.kinds if kind in self.kinds}
        for kind in facts.kinds:
            if kind == "SELECT" and facts.kind != "SELECT":
                continue  # a subquery reading for another statement
            bare = bare_kind(kind)
            if kind not in self.kinds and bare not in self.kinds and not (kind == bare and bare in named_bares):
                return False
        return bool(facts.kinds)

    def _relation_matches(self, schema: str, name: str) -> bool:
        if self.bare_tables is not None and self.bare_tables.match(name):
            return True
        return bool(schema) and self.dotted_tables is not None and bool(self.dotted_tables.match(f"{schema}.{name}"))

    def _relations_match(self, facts: StatementFacts) -> bool:
        matches = (self._relation_matches(schema, name) for schema, name in facts.relations)
        return bool(facts.relations) and all(matches) if self.covers else any(matches)

    def _schemas_match(self, facts: StatementFacts) -> bool:
        matches = (self.schemas.match(schema) for schema in facts.schemas)
        if not self.covers:
            return any(matches)
        unqualified = any(not schema for schema, _ in facts.relations)  # its schema is search_path's choice
        return bool(facts.schemas) and not unqualified and all(matches)


@dataclass(frozen=True)
class _Plan:
    """For one statement shape: the rules that may decide it, in order, and the fallback."""

    facts: StatementFacts  # kept so its id() is not reused while the plan is cached
    candidates: tuple[tuple[_CompiledRule, bool], ...]  # (rule, decides only if its regex matches)
    fallback: Decision


class SqlGuardrails:
    """A policy's guardrails, compiled: `check(sql)` judges a query string without session state."""

    def __init__(self, spec: PolicySpec) -> None:
        self.spec = spec
        self._rules = tuple(_CompiledRule(rule) for rule in spec.guardrails if rule.match.for_sql)
        self._default = Decision.of(spec.default, "default")
        self._opaque = Decision.of(spec.opaque, "opaque", "DO blocks and function bodies cannot be inspected")
        self._plans: dict[int, _Plan] = {}
        self._verdicts: dict[str, Verdict] = {}

    def check(self, sql: str, session: "SessionGuardrails | None" = None) -> Verdict:
        """The strictest verdict over every statement of `sql`, with the first statement that earned it.

        EXECUTE is judged as a bare EXECUTE without a `session`, which resolves it otherwise. Only
        verdicts that no session could change are cached: those of strings without PREPARE or EXECUTE.
        """
        verdict = self._verdicts.get(sql)
        if verdict is not None:
            return verdict
        known = self._known_shape_decision(sql)
        if known is not None:
            return known[0].verdict(known[1])
        return self._judge_and_cache(sql, session)

    def objection(self, sql: str, session: "SessionGuardrails | None" = None) -> Verdict | None:
        """`check`'s verdict, or None if it allows `sql`.

        What a proxy asks of every statement: a hot statement that is allowed is answered without
        building a verdict nobody reads.
        """
        verdict = self._verdicts.get(sql)
        if verdict is None:
            known = self._known_shape_decision(sql)
            if known is not None:
                decision, text = known
                return None if decision.action == "allow" else decision.verdict(text)
            verdict = self._judge_and_cache(sql, session)
        return None if verdict.action == "allow" else verdict

    def _known_shape_decision(self, sql: str) -> tuple[Decision, str] | None:
        """(decision, statement text) for a one-statement `sql` of a cached shape; None for others, PREPARE and EXECUTE.

        A statement that comes back with new numbers: judging it anew costs less than caching
        every text of it, whose churn through the verdict cache cost more than the judging.
        """
        known = classify_known_shape(sql)
        if known is None or known[0].prepare_name is not None or known[0].execute_name is not None:
            return None
        facts, text = known
        return self.decide(facts, text), text

    def _judge_and_cache(self, sql: str, session: "SessionGuardrails | None") -> Verdict:
        verdict, stateful = self.judge(sql, session)
        if not stateful and len(sql) <= _VERDICT_CACHE_MAX_CHARS:
            if len(self._verdicts) >= _CACHE_MAX_ENTRIES:
                self._verdicts.clear()
            self._verdicts[sql] = verdict
        return verdict

    def clear_caches(self) -> None:
        """Forget cached plans and verdicts (benchmarks measure the cold path with it)."""
        self._plans.clear()
        self._verdicts.clear()

    def judge(self, sql: str, session: "SessionGuardrails | None") -> tuple[Verdict, bool]:
        """(verdict, whether a statement prepares or executes a prepared statement)."""
        try:
            statements, texts = classify_shared(sql)
        except UnparseableSQL as exc:
            return Decision.of(self.spec.unparseable, "unparseable", str(exc)).verdict(sql), False
        if len(statements) == 1 and statements[0].prepare_name is None and statements[0].execute_name is None:
            return self.decide(statements[0], texts[0]).verdict(texts[0]), False  # the common case, without the loop
        worst, worst_text, stateful = _EMPTY, "", False
        prepared: list[tuple[str, StatementFacts]] = []
        for facts, text in zip(statements, texts, strict=True):
            decision = self.decide(facts, text)
            if facts.prepare_name is not None or facts.execute_name is not None:
                stateful = True
                decision = self._prepared_decision(facts, text, decision, session)
                if facts.prepared is not None:
                    prepared.append((facts.prepare_name or "", with_text(facts.prepared, text)))
            if worst is _EMPTY or decision.rank > worst.rank:
                worst, worst_text = decision, text
                if decision.action == "deny":
                    break
        if session is not None and worst.action != "deny":  # a denied query string never reaches the server
            for name, body in prepared:
                session.remember(name, body)
        return worst.verdict(worst_text), stateful

    def decide(self, facts: StatementFacts, text: str) -> Decision:
        """The first matching rule's decision for one statement, or the fallback."""
        plan = self._plans.get(id(facts))
        if plan is None or plan.facts is not facts:
            plan = self._plan(facts)
        for rule, needs_regex in plan.candidates:
            if not needs_regex or rule.regex.search(text) is not None:
                return rule.decision
        return plan.fallback

    def _plan(self, facts: StatementFacts) -> _Plan:
        candidates = []
        for rule in self._rules:
            if facts.opaque and rule.covers and not rule.kinds:
                continue  # allowing code nobody can read takes a rule that names its kind
            if not rule.filters_match(facts):
                continue
            if rule.conditions_hold(facts) or (not rule.has_conditions and rule.regex is None):
                candidates.append((rule, False))
                break
            if rule.regex is not None:
                candidates.append((rule, True))
        plan = _Plan(facts, tuple(candidates), self._opaque if facts.opaque else self._default)
        if len(self._plans) >= _CACHE_MAX_ENTRIES:
            self._plans.clear()
        self._plans[id(facts)] = plan
        return plan

    def _prepared_decision(
        self, facts: StatementFacts, text: str, decision: Decision, session: "SessionGuardrails | None"
    ) -> Decision:
        """PREPARE: also judged as its body, so PREPARE + EXECUTE in one string cannot skip a rule.

        EXECUTE: also judged as every body its name may hold in the session.
        """
        others: list[Decision] = []
        if facts.prepared is not None:
            others.append(self.decide(facts.prepared, text))
        if facts.execute_name is not None and session is not None:
            others.extend(session.bodies_decisions(facts.execute_name, set()))
        for other in others:
            if other.rank > decision.rank:
                decision = other
        return decision


_EMPTY = Decision("allow", "empty", 'Gatehouse allowed this statement: rule "empty": no statement to run')


class SessionGuardrails:
    """One connection's guardrails: resolves EXECUTE to what its prepared statements run.

    SQL PREPARE and protocol Parse messages share one namespace on the
    server, so both are remembered, unless denied (then the server never
    sees them). A name may hold several remembered bodies (a PREPARE the
    server refused, or one a reviewer rejected, a re-PREPARE after DEALLOCATE):
    EXECUTE is judged by the strictest of them, so a wrong memory can only
    make it stricter. For the same reason DEALLOCATE forgets nothing by
    itself, since it may not run (an earlier statement fails, the
    transaction is aborted); the proxy calls `forget` when the server
    confirms a DEALLOCATE or a Close of a prepared statement.
    """

    def __init__(self, guardrails: SqlGuardrails) -> None:
        self.guardrails = guardrails  # may be replaced when the policy changes; memory stays
        self._bodies: dict[str, dict[str, StatementFacts]] = {}
        self._overflowed: set[str] = set()

    def check(self, sql: str) -> Verdict:
        """Like SqlGuardrails.check, with PREPARE remembered and EXECUTE resolved."""
        return self.guardrails.check(sql, self)

    def objection(self, sql: str) -> Verdict | None:
        """Like SqlGuardrails.objection, with PREPARE remembered and EXECUTE resolved."""
        return self.guardrails.objection(sql, self)

    def check_parse(self, name: str, sql: str) -> Verdict:
        """Judge an extended-protocol Parse message and remember its statement under `name`."""
        verdict = self.check(sql)
        if name and verdict.action != "deny":  # a denied Parse never reaches the server
            try:
                statements, texts = classify_shared(sql)
            except UnparseableSQL:
                return verdict
            for facts, text in zip(statements, texts, strict=True):
                self.remember(name, with_text(facts, text))
        return verdict

    def remember(self, name: str, body: StatementFacts) -> None:
        """Record that prepared statement `name` may run `body`."""
        bodies = self._bodies.setdefault(name, {})
        if len(bodies) >= _MAX_PREPARED_BODIES and body.text not in bodies:
            self._overflowed.add(name)  # too many to judge each: EXECUTE of it fails closed
            bodies.clear()
        bodies[body.text] = body

    def bodies_decisions(self, name: str, seen: set[str]) -> list[Decision]:
        """The decisions for every body prepared statement `name` may run (following EXECUTE inside them)."""
        if name in self._overflowed:
            detail = f"prepared statement {name!r} was re-prepared too often to track"
            return [Decision.of("deny", "prepared", detail)]
        seen.add(name)
        decisions = []
        for body in self._bodies.get(name, {}).values():
            decisions.append(self.guardrails.decide(body, body.text))
            if body.execute_name is not None and body.execute_name not in seen:
                decisions.extend(self.bodies_decisions(body.execute_name, seen))
        return decisions

    def forget(self, name: str) -> None:
        """The server confirmed that prepared statement `name` is gone."""
        self._bodies.pop(name, None)
        self._overflowed.discard(name)

    def forget_all(self) -> None:
        """The server confirmed DEALLOCATE ALL or DISCARD ALL."""
        self._bodies.clear()
        self._overflowed.clear()
