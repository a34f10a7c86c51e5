"""The checks of single policy-file values, each mistake recorded with its line.

`Checker` turns line-numbered nodes (connections.policy.policy_yaml) into
plain values: text, names, choices, flags, lists, statement kinds, program
patterns, regexes, approvals, timeouts. It collects every problem instead
of stopping at the first. Nothing here imports Django.
"""

import re

from connections.durations import DurationError, parse_duration
from connections.policy.policy_yaml import Node, PolicyProblem, describe
from connections.policy.rules import MAX_APPROVALS, MAX_REVIEW_TIMEOUT_SECONDS, MIN_APPROVALS

NAME_MAX_LENGTH = 63
TEXT_MAX_LENGTH = 500

# The first word of every statement kind the SQL engine reports
# (connections.policy.sql_facts.KINDS; UNKNOWN is a statement type it does not
# know). A kind in a rule must start with one, so that a typo such as "DORP"
# is an error instead of a deny rule that silently never matches.
# fmt: off
STATEMENT_VERBS = frozenset({
    "ALTER", "ANALYZE", "BEGIN", "CALL", "CHECKPOINT", "CLOSE", "CLUSTER", "COMMENT", "COMMIT", "COPY",
    "CREATE", "DEALLOCATE", "DECLARE", "DELETE", "DISCARD", "DO", "DROP", "EXECUTE", "EXPLAIN", "FETCH",
    "GRANT", "IMPORT", "INSERT", "LISTEN", "LOAD", "LOCK", "MERGE", "MOVE", "NOTIFY", "PREPARE", "REASSIGN",
    "REFRESH", "REINDEX", "RELEASE", "RESET", "REVOKE", "ROLLBACK", "SAVEPOINT", "SECURITY", "SELECT", "SET",
    "SHOW", "TRUNCATE", "UNLISTEN", "UPDATE", "VACUUM", "UNKNOWN",
})
# fmt: on
# SQL commands the engine reports under another kind: a rule naming them would never match.
KIND_SYNONYMS = {"ABORT": "ROLLBACK", "END": "COMMIT", "START": "BEGIN", "TABLE": "SELECT", "VALUES": "SELECT"}
_KIND = re.compile(r"[A-Z]+(?: [A-Z][A-Z_]*){0,3}")
_NAME = re.compile(r"[-a-zA-Z0-9_]+")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


class Checker:
    """Turns nodes into specs, collecting every problem instead of stopping at the first."""

    def __init__(self) -> None:
        self.problems: list[PolicyProblem] = []

    def error(self, line: int, message: str) -> None:
        self.problems.append(PolicyProblem(line, message))

    def mapping(self, node: Node, allowed: tuple[str, ...], what: str) -> dict[str, Node] | None:
        if not isinstance(node.value, dict):
            self.error(node.line, f"{what} must be a mapping of keys to values, not {describe(node.value)}")
            return None
        fields = {}
        for key, (key_line, value) in node.value.items():
            if key in allowed:
                fields[key] = value
            else:
                self.error(key_line or node.line, f"unknown key {key!r} in {what}; allowed keys: {', '.join(allowed)}")
        return fields

    def text(self, node: Node, what: str, max_length: int = TEXT_MAX_LENGTH) -> str | None:
        value = node.value
        if not isinstance(value, str):
            self.error(node.line, f"{what} must be text, not {describe(value)}")
            return None
        if _CONTROL.search(value):
            self.error(node.line, f"{what} must not contain control characters such as newlines or tabs")
            return None
        if len(value) > max_length:
            self.error(node.line, f"{what} is longer than {max_length} characters")
            return None
        return value

    def name(self, node: Node, what: str) -> str | None:
        value = self.text(node, what, NAME_MAX_LENGTH)
        if value is not None and not _NAME.fullmatch(value):
            self.error(node.line, f"{what} {value!r} must be letters, digits, hyphens and underscores")
            return None
        return value

    def choice(self, node: Node, choices: tuple[str, ...], what: str) -> str | None:
        value = self.text(node, what)
        if value is not None and value not in choices:
            self.error(node.line, f"{what} {value!r} is unknown; use one of: {', '.join(choices)}")
            return None
        return value

    def flag(self, node: Node, what: str) -> bool | None:
        if not isinstance(node.value, bool):
            self.error(node.line, f"{what} must be true or false, not {describe(node.value)}")
            return None
        return node.value

    def items(self, node: Node, what: str, *, allow_empty: bool = False) -> list[Node] | None:
        """A list's items; a single scalar counts as a list of one."""
        if isinstance(node.value, dict) or node.value is None:
            self.error(node.line, f"{what} must be a list, not {describe(node.value)}")
            return None
        items = node.value if isinstance(node.value, list) else [node]
        if not items and not allow_empty:
            self.error(node.line, f"{what} is an empty list; list something or remove the key")
            return None
        return items

    def texts(self, node: Node, what: str) -> tuple[str, ...] | None:
        items = self.items(node, what)
        if items is None:
            return None
        values = [self.text(item, f"each of {what}") for item in items]
        return None if None in values else tuple(values)  # type: ignore[arg-type]

    def kinds(self, node: Node) -> tuple[str, ...] | None:
        items = self.items(node, "kind")
        if items is None:
            return None
        kinds = [self.kind(item) for item in items]
        return None if None in kinds else tuple(kinds)  # type: ignore[arg-type]

    def kind(self, node: Node) -> str | None:
        """A statement kind: one to four words, the first a SQL command; lower case is upper-cased."""
        value = self.text(node, "kind")
        if value is None:
            return None
        kind = " ".join(value.split()).upper()
        first = kind.split(" ", 1)[0]
        if first in KIND_SYNONYMS:
            synonym = KIND_SYNONYMS[first]
            self.error(node.line, f"kind {value!r}: {first} statements are classified as {synonym}; write {synonym}")
            return None
        if not _KIND.fullmatch(kind) or first not in STATEMENT_VERBS:
            self.error(
                node.line,
                f"kind {value!r} is not a statement kind: use a SQL command such as SELECT, UPDATE, DROP, "
                "or a command and an object type such as DROP TABLE or CREATE FUNCTION",
            )
            return None
        return kind

    def regex(self, node: Node, what: str = "regex", subject: str = "statement") -> str | None:
        """A Python regex that compiles and is not empty (it would match every `subject`)."""
        pattern = self.text(node, what, 2000)
        if pattern is None:
            return None
        if not pattern:
            self.error(node.line, f"{what} is empty; it would match every {subject}")
            return None
        try:
            re.compile(pattern)
        except re.error as exc:
            self.error(node.line, f"{what} {pattern!r} does not compile: {exc}")
            return None
        return pattern

    def programs(self, node: Node) -> tuple[str, ...] | None:
        """Program patterns: a name ("rm"), a glob ("python*") or a path glob ("/usr/local/bin/*")."""
        items = self.items(node, "programs")
        if items is None:
            return None
        patterns = [self.program(item) for item in items]
        return None if None in patterns else tuple(patterns)  # type: ignore[arg-type]

    def program(self, node: Node) -> str | None:
        value = self.text(node, "each of programs")
        if value is None:
            return None
        if not value.strip():
            self.error(node.line, "each of programs must name a program such as rm, python* or /usr/bin/*, not ''")
            return None
        if value.split()[0] != value:  # a typo that would make a deny rule silently never match
            self.error(
                node.line,
                f"program {value!r} holds a space: name the program only ({value.split()[0]}) "
                "and match its arguments with args_regex",
            )
            return None
        return value

    def approvals(self, node: Node) -> int | None:
        value = node.value
        if isinstance(value, bool) or not isinstance(value, int) or not MIN_APPROVALS <= value <= MAX_APPROVALS:
            self.error(
                node.line,
                f"approvals must be a whole number from {MIN_APPROVALS} to {MAX_APPROVALS}, not {describe(value)}",
            )
            return None
        return value

    def timeout(self, node: Node) -> float | None:
        """A duration ("90s", "5m", "1h30m") or a number of seconds; positive and at most a day."""
        value = node.value
        if isinstance(value, str):
            text = self.text(node, "timeout")
            if text is None:
                return None
            try:
                value = parse_duration(text).total_seconds()
            except DurationError:
                self.error(
                    node.line,
                    f"timeout {text!r} is not a positive duration; write a number and a unit such as 90s, 5m or 1h, "
                    "or a number of seconds",
                )
                return None
        elif isinstance(value, bool) or not isinstance(value, int | float):
            self.error(node.line, f"timeout must be a duration like 5m or a number of seconds, not {describe(value)}")
            return None
        # Compared before float(): a huge int would overflow it, and NaN fails every comparison.
        if value > MAX_REVIEW_TIMEOUT_SECONDS:
            longest = duration_text(MAX_REVIEW_TIMEOUT_SECONDS)
            self.error(node.line, f"timeout {node.value!r} is longer than the maximum, {longest}")
            return None
        if not value > 0:
            self.error(node.line, f"timeout must be positive, not {describe(node.value)}")
            return None
        return float(value)

    def keep(self, node: Node) -> int | None:
        value = node.value
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 1000:
            self.error(node.line, f"keep must be a whole number from 0 to 1000, not {describe(value)}")
            return None
        return value


def duration_text(seconds: float) -> str | float:
    """Whole seconds as the policy file writes them ("5m", "1h30m", "90s" as "1m30s"); other numbers unchanged."""
    if not float(seconds).is_integer() or seconds <= 0:
        return seconds
    hours, rest = divmod(int(seconds), 3600)
    minutes, secs = divmod(rest, 60)
    return "".join(f"{number}{unit}" for number, unit in ((hours, "h"), (minutes, "m"), (secs, "s")) if number)
