"""One session's policy as the engines use it: guardrails (with session memory for SQL), and a masker.

A `CompiledPolicy` is built once per policy revision and shared by every
session under it (its parse and verdict caches are what make a hot
statement cheap): SQL guardrails for PostgreSQL, command guardrails for
SSH. Each session wraps it in a `SessionPolicy`, which adds what belongs to
one session: PREPARE/EXECUTE memory and a masker whose table and column
names come from that session's database catalog.
"""

import logging
from typing import NamedTuple

from .command_guardrails import CommandGuardrails
from .guardrails import SessionGuardrails, SqlGuardrails, Verdict
from .masking import Masker
from .rules import PolicySpec
from .sql_facts import StatementFacts, UnparseableSQL, classify

# Names of the tables and columns the masker's qualified and aliased column rules need.
CATALOG_QUERY = """\
SELECT c.oid, n.nspname, c.relname, a.attnum, a.attname
FROM pg_catalog.pg_class c
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
JOIN pg_catalog.pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
WHERE c.relkind IN ('r', 'p', 'v', 'm', 'f')
  AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\\_toast%'"""

FUNCTION_CALL_TEXT = "-- fast-path function call"

logger = logging.getLogger(__name__)


def _engine_failed(text: str, subject: str = "statement") -> Verdict:
    message = f'Gatehouse denied this {subject}: rule "engine-error": the policy engine could not judge it'
    return Verdict("deny", "engine-error", message, text)


class CopyShape(NamedTuple):
    """What masking needs to know about the rows of a COPY TO STDOUT."""

    columns: tuple[str | tuple[str, str, str], ...] | None  # names, or (schema, table, column); None: unknown
    csv: bool
    delimiter: bytes | None
    header: bool


class CompiledPolicy:
    """A PolicySpec made ready to judge and mask; `key` tells revisions apart."""

    def __init__(self, spec: PolicySpec, key: object, hash_key: bytes) -> None:
        self.spec = spec
        self.key = key
        self.hash_key = hash_key
        self.guardrails = SqlGuardrails(spec)
        self.commands = CommandGuardrails(spec)
        self.function_call = self._function_call_verdict(spec)

    @staticmethod
    def _function_call_verdict(spec: PolicySpec) -> Verdict:
        # A FunctionCall names its function by oid only: no rule can look into it, so it
        # is allowed only where no rule would care which function runs.
        cares = spec.default != "allow" or any(
            rule.match.functions or rule.match.dangerous_functions for rule in spec.guardrails
        )
        if not cares:
            return Verdict("allow", "default", "", FUNCTION_CALL_TEXT)
        message = 'Gatehouse denied this statement: rule "function-call": fast-path function calls cannot be inspected'
        return Verdict("deny", "function-call", message, FUNCTION_CALL_TEXT)

    def for_session(self) -> "SessionPolicy":
        return SessionPolicy(self)


class SessionPolicy:
    """What one session's engine asks of its policy: verdicts and masking.

    Callers: the StatementTracker for SQL (connections.protocols.pgwire.tracker), the SSH session for
    commands (connections.policy.ssh_policy).
    """

    def __init__(self, compiled: CompiledPolicy, guardrails: SessionGuardrails | None = None) -> None:
        self.compiled = compiled
        self.guardrails = guardrails or SessionGuardrails(compiled.guardrails)
        self.catalog_rows: list | None = None
        self.relation_columns: dict[tuple[str, str], list[tuple[int, str]]] = {}
        self.masker: Masker | None = Masker(compiled.spec.masking, compiled.hash_key) if compiled.spec.masking else None

    @property
    def needs_catalog(self) -> bool:
        """Whether the masker's column rules need the database's table and column names."""
        return self.masker is not None and bool(self.masker.column_rules)

    def use_catalog(self, rows: list) -> None:
        """Give the masker the rows of CATALOG_QUERY (oid, schema, table, attnum, column)."""
        self.catalog_rows = rows
        tables, attributes, self.relation_columns = {}, {}, {}
        for oid, schema, table, attnum, column in rows:
            tables[int(oid)] = (schema, table)
            attributes[(int(oid), int(attnum))] = column
            self.relation_columns.setdefault((schema, table), []).append((int(attnum), column))
        self.masker = Masker(self.compiled.spec.masking, self.compiled.hash_key, tables, attributes)

    def check(self, sql: str) -> Verdict:
        try:
            return self.guardrails.check(sql)
        except Exception:  # a bug in the engine must deny the statement, not end the session
            logger.exception("the guardrails failed on a statement; denying it")
            return _engine_failed(sql)

    def objection(self, sql: str) -> Verdict | None:
        """`check`'s verdict, or None if it allows `sql` (the proxy's per-statement question)."""
        try:
            return self.guardrails.objection(sql)
        except Exception:
            logger.exception("the guardrails failed on a statement; denying it")
            return _engine_failed(sql)

    def check_parse(self, name: str, sql: str) -> Verdict:
        try:
            return self.guardrails.check_parse(name, sql)
        except Exception:
            logger.exception("the guardrails failed on a Parse; denying it")
            return _engine_failed(sql)

    def check_command(self, command: str) -> Verdict:
        """The verdict on an SSH exec command or shell line (see connections.policy.command_guardrails)."""
        try:
            return self.compiled.commands.check(command)
        except Exception:  # a bug in the engine must deny the command, not end the session
            logger.exception("the command guardrails failed on a command; denying it")
            return _engine_failed(command, "command")

    def check_function_call(self, function_oid: int) -> Verdict:
        return self.compiled.function_call

    def copy_shape(self, sql: str, index: int) -> CopyShape | None:
        """The shape of the rows the `index`-th statement of `sql` copies out, or None if it is not such a COPY."""
        try:
            statements = classify(sql)
        except UnparseableSQL:
            return None
        if index >= len(statements) or not statements[index].copy_to_stdout:
            return None
        facts = statements[index]
        delimiter = facts.copy_delimiter.encode() if facts.copy_delimiter else None
        # The masker splits rows with the default quote, escape and NULL marker: under other
        # options it gets no column names, so it masks every field.
        columns = None if facts.copy_custom_quoting else self._copy_columns(facts)
        return CopyShape(columns, facts.copy_format == "csv", delimiter, facts.copy_header)

    def _copy_columns(self, facts: StatementFacts) -> tuple | None:
        if facts.copy_columns is not None:
            return facts.copy_columns
        if facts.copy_relation is None:
            return None
        schema, table = facts.copy_relation
        # Unqualified, the table is whichever the search path finds: only a name no other schema uses is sure.
        places = [place for place in self.relation_columns if place[1] == table and (place[0] == schema or not schema)]
        if len(places) != 1:
            return None
        (place,) = places
        return tuple((*place, column) for _attnum, column in sorted(self.relation_columns[place]))

    def forget(self, name: str) -> None:
        """The server confirmed that prepared statement `name` is gone."""
        self.guardrails.forget(name)

    def changed_to(self, compiled: CompiledPolicy) -> "SessionPolicy":
        """This session under another revision: PREPARE memory and catalog carry over."""
        guardrails = self.guardrails
        guardrails.guardrails = compiled.guardrails
        successor = SessionPolicy(compiled, guardrails)
        if self.catalog_rows is not None and successor.needs_catalog:
            successor.use_catalog(self.catalog_rows)
        return successor
