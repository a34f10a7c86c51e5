"""One session's policy as the PostgreSQL engine uses it: guardrails with session memory, and a masker.

A `CompiledPolicy` is built once per policy revision and shared by every
session under it (its parse and verdict caches are what make a hot
statement cheap). Each session wraps it in a `SessionPolicy`, which adds
what belongs to one session: PREPARE/EXECUTE memory and a masker whose
table and column names come from that session's database catalog.
"""

import logging

from .guardrails import SessionGuardrails, SqlGuardrails, Verdict
from .masking import Masker
from .rules import PolicySpec

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


def _engine_failed(sql: str) -> Verdict:
    message = 'Gatehouse denied this statement: rule "engine-error": the policy engine could not judge it'
    return Verdict("deny", "engine-error", message, sql)


class CompiledPolicy:
    """A PolicySpec made ready to judge and mask; `key` tells revisions apart."""

    def __init__(self, spec: PolicySpec, key: object, hash_key: bytes) -> None:
        self.spec = spec
        self.key = key
        self.hash_key = hash_key
        self.guardrails = SqlGuardrails(spec)
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
    """What one session's StatementTracker calls; see connections.protocols.pgwire.tracker."""

    def __init__(self, compiled: CompiledPolicy, guardrails: SessionGuardrails | None = None) -> None:
        self.compiled = compiled
        self.guardrails = guardrails or SessionGuardrails(compiled.guardrails)
        self.catalog_rows: list | None = None
        self.masker: Masker | None = Masker(compiled.spec.masking, compiled.hash_key) if compiled.spec.masking else None

    @property
    def needs_catalog(self) -> bool:
        """Whether the masker's column rules need the database's table and column names."""
        return self.masker is not None and bool(self.masker.column_rules)

    def use_catalog(self, rows: list) -> None:
        """Give the masker the rows of CATALOG_QUERY (oid, schema, table, attnum, column)."""
        self.catalog_rows = rows
        tables, attributes = {}, {}
        for oid, schema, table, attnum, column in rows:
            tables[int(oid)] = (schema, table)
            attributes[(int(oid), int(attnum))] = column
        self.masker = Masker(self.compiled.spec.masking, self.compiled.hash_key, tables, attributes)

    def check(self, sql: str) -> Verdict:
        try:
            return self.guardrails.check(sql)
        except Exception:  # a bug in the engine must deny the statement, not end the session
            logger.exception("the guardrails failed on a statement; denying it")
            return _engine_failed(sql)

    def check_parse(self, name: str, sql: str) -> Verdict:
        try:
            return self.guardrails.check_parse(name, sql)
        except Exception:
            logger.exception("the guardrails failed on a Parse; denying it")
            return _engine_failed(sql)

    def check_function_call(self, function_oid: int) -> Verdict:
        return self.compiled.function_call

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
