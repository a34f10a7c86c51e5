"""Policy files: YAML in, `PolicySpec` out, every mistake reported with its line; and the way back.

    parse_policy_file(text)    the declarative file `policies apply` reads (a `policies:` list)
    parse_policy_body(text)    one policy's rules, as the admin's textarea holds them
    spec_to_dict / spec_from_dict    a spec as plain JSON values, for the `Policy` model
    policy_file_yaml / policy_body_yaml    YAML that the parsers accept again (round trip)

All checks run before anything is returned, and all problems are collected
(not just the first) into one `PolicyFileError`. YAML is composed with
PyYAML's SafeLoader into nodes (so every value keeps its line); aliases are
refused (no billion laughs), and the size, node count and nesting depth are
capped. Nothing here imports Django.
"""

import re
from collections.abc import Collection, Iterable
from dataclasses import dataclass, field
from typing import Any

import yaml

from connections.durations import DurationError, parse_duration
from connections.policy.rules import (
    ACTIONS,
    DEFAULT_PARTIAL_KEEP,
    DETECTORS,
    MASK_STYLES,
    MAX_APPROVALS,
    MAX_REVIEW_TIMEOUT_SECONDS,
    MIN_APPROVALS,
    GuardrailMatch,
    GuardrailRule,
    MaskingRule,
    PolicySpec,
)

MAX_FILE_BYTES = 1 << 20
MAX_NODES = 50_000
MAX_DEPTH = 24
MAX_REPORTED = 100
NAME_MAX_LENGTH = 63
TEXT_MAX_LENGTH = 500
DESCRIPTION_MAX_LENGTH = 200

FILE_KEYS = ("policies",)
POLICY_KEYS = ("name", "description", "connections", "default", "unparseable", "opaque", "guardrails", "masking")
BODY_KEYS = ("default", "unparseable", "opaque", "guardrails", "masking")
GUARDRAIL_KEYS = ("name", "action", "match", "message", "approvals", "timeout")
REVIEW_KEYS = ("approvals", "timeout")  # guardrail keys that only a review rule may set
MATCH_KEYS = tuple(GuardrailMatch.__dataclass_fields__)
MATCH_LIST_KEYS = ("kind", "schemas", "tables", "functions")
MATCH_FLAG_KEYS = ("dangerous_functions", "copy_program", "copy_file", "without_where")
MASKING_KEYS = ("name", "columns", "detectors", "style", "keep")

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
_MAP_TAG = "tag:yaml.org,2002:map"
_SEQ_TAG = "tag:yaml.org,2002:seq"


@dataclass(frozen=True)
class PolicyProblem:
    """One thing wrong with a policy file; `line` is 1-based, 0 when the input has no lines (stored JSON)."""

    line: int
    message: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.message}" if self.line else self.message


class PolicyFileError(ValueError):
    """The input is not a valid policy; `problems` lists every mistake found, in line order."""

    def __init__(self, problems: Iterable[PolicyProblem]) -> None:
        self.problems = tuple(sorted(problems, key=lambda problem: problem.line))
        super().__init__("\n".join(str(problem) for problem in self.problems))

    def lines(self, source: str) -> list[str]:
        """The problems as `SOURCE:LINE: message` (as compilers print them), at most MAX_REPORTED of them."""
        lines = [f"{source}:{problem.line}: {problem.message}" for problem in self.problems[:MAX_REPORTED]]
        if len(self.problems) > MAX_REPORTED:
            lines.append(f"{source}: and {len(self.problems) - MAX_REPORTED} more problems")
        return lines


@dataclass(frozen=True)
class PolicyEntry:
    """One policy of a file: its spec, description and the connections the file attaches it to.

    `connections` is None when the entry has no `connections` key: the file
    then leaves the policy's attachments alone. `connection_lines` holds the
    line of each listed connection, for errors found when applying.
    """

    spec: PolicySpec
    description: str = ""
    connections: tuple[str, ...] | None = None
    line: int = field(default=0, compare=False)
    connection_lines: tuple[int, ...] = field(default=(), compare=False)


@dataclass(frozen=True)
class PolicyFile:
    """A parsed policy file: its policies in file order."""

    policies: tuple[PolicyEntry, ...] = ()


# --- YAML to line-numbered nodes ---------------------------------------------


@dataclass
class _Node:
    """A YAML value with its line: a dict of key -> (key line, node), a list of nodes, or a scalar."""

    value: Any
    line: int


class _Refused(Exception):
    def __init__(self, line: int, message: str) -> None:
        super().__init__(message)
        self.problem = PolicyProblem(line, message)


class _SafeComposer(yaml.SafeLoader):
    """SafeLoader's composer with aliases refused and the node count and depth capped."""

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.node_count = 0
        self.depth = 0

    def compose_node(self, parent: yaml.Node | None, index: object) -> yaml.Node:
        event = self.peek_event()
        line = event.start_mark.line + 1
        if isinstance(event, yaml.AliasEvent):
            raise _Refused(line, f"aliases (*{event.anchor}) are not allowed in policy files; repeat the value")
        self.node_count += 1
        if self.node_count > MAX_NODES:
            raise _Refused(line, f"the file has more than {MAX_NODES} values; split it")
        if self.depth >= MAX_DEPTH:
            raise _Refused(line, f"values are nested more than {MAX_DEPTH} levels deep")
        self.depth += 1
        try:
            return super().compose_node(parent, index)
        finally:
            self.depth -= 1


def _decode(data: str | bytes) -> str:
    size = len(data.encode("utf-8", "surrogatepass")) if isinstance(data, str) else len(data)
    if size > MAX_FILE_BYTES:
        raise _Refused(1, f"the file is {size} bytes; policy files are limited to {MAX_FILE_BYTES} bytes (1 MiB)")
    if isinstance(data, str):
        return data
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise _Refused(line, f"the file is not UTF-8 text (byte 0x{data[exc.start]:02x})") from None


def _yaml_problem(exc: yaml.YAMLError, text: str) -> PolicyProblem:
    if isinstance(exc, yaml.MarkedYAMLError) and exc.problem_mark is not None:
        line = exc.problem_mark.line + 1
        if "'\\t'" in (exc.problem or ""):
            return PolicyProblem(line, "a tab character here; YAML indents with spaces only")
        context = f" ({exc.context})" if exc.context else ""
        return PolicyProblem(line, f"YAML syntax error: {exc.problem}{context}")
    if isinstance(exc, yaml.reader.ReaderError):
        line = text[: exc.position].count("\n") + 1
        code = exc.character if isinstance(exc.character, int) else ord(exc.character)
        return PolicyProblem(line, f"the control character U+{code:04X} is not allowed in YAML")
    return PolicyProblem(1, f"YAML error: {exc}")


def _compose(data: str | bytes) -> _Node | None:
    """Parse YAML text into line-numbered nodes; None for an empty document. Raises PolicyFileError."""
    text = ""
    try:
        text = _decode(data)
        composer = _SafeComposer(text)
        try:
            root = composer.get_single_node()
            problems: list[PolicyProblem] = []
            node = None if root is None else _convert(composer, root, problems)
        finally:
            composer.dispose()
    except _Refused as exc:
        raise PolicyFileError([exc.problem]) from None
    except yaml.YAMLError as exc:
        raise PolicyFileError([_yaml_problem(exc, text)]) from None
    if problems:
        raise PolicyFileError(problems)
    return node


def _convert(composer: _SafeComposer, node: yaml.Node, problems: list[PolicyProblem]) -> _Node:
    line = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        if node.tag != _MAP_TAG:
            problems.append(PolicyProblem(line, f"the tag {node.tag} is not allowed here"))
        mapping: dict[str, tuple[int, _Node]] = {}
        for key_node, value_node in node.value:
            key = _convert(composer, key_node, problems)
            if not isinstance(key.value, str):
                problems.append(PolicyProblem(key.line, f"keys must be words, not {_describe(key.value)}"))
            elif key.value in mapping:
                first = mapping[key.value][0]
                problems.append(PolicyProblem(key.line, f"duplicate key {key.value!r} (first at line {first})"))
            else:
                mapping[key.value] = (key.line, _convert(composer, value_node, problems))
        return _Node(mapping, line)
    if isinstance(node, yaml.SequenceNode):
        if node.tag != _SEQ_TAG:
            problems.append(PolicyProblem(line, f"the tag {node.tag} is not allowed here"))
        return _Node([_convert(composer, item, problems) for item in node.value], line)
    try:
        return _Node(composer.construct_object(node), line)
    except yaml.constructor.ConstructorError as exc:
        problems.append(PolicyProblem(line, f"cannot read this value: {exc.problem}"))
        return _Node(None, line)
    except ValueError as exc:  # a date such as 2024-13-45, or an integer of more than 4300 digits
        problems.append(PolicyProblem(line, f"cannot read this value: {exc}"))
        return _Node(None, line)


def _from_plain(value: Any) -> _Node:
    """Wrap plain JSON values (a stored policy) in nodes without lines."""
    if isinstance(value, dict):
        return _Node({str(key): (0, _from_plain(item)) for key, item in value.items()}, 0)
    if isinstance(value, list | tuple):
        return _Node([_from_plain(item) for item in value], 0)
    return _Node(value, 0)


def _describe(value: Any) -> str:
    if value is None:
        return "nothing (null)"
    if isinstance(value, bool):
        return f"the boolean {str(value).lower()}"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, str):
        return f"the text {value!r}"
    if isinstance(value, int | float):
        return f"the number {value!r}"
    return f"a {type(value).__name__} value"


# --- checking nodes ----------------------------------------------------------


class _Checker:
    """Turns nodes into specs, collecting every problem instead of stopping at the first."""

    def __init__(self) -> None:
        self.problems: list[PolicyProblem] = []

    def error(self, line: int, message: str) -> None:
        self.problems.append(PolicyProblem(line, message))

    def mapping(self, node: _Node, allowed: tuple[str, ...], what: str) -> dict[str, _Node] | None:
        if not isinstance(node.value, dict):
            self.error(node.line, f"{what} must be a mapping of keys to values, not {_describe(node.value)}")
            return None
        fields = {}
        for key, (key_line, value) in node.value.items():
            if key in allowed:
                fields[key] = value
            else:
                self.error(key_line or node.line, f"unknown key {key!r} in {what}; allowed keys: {', '.join(allowed)}")
        return fields

    def text(self, node: _Node, what: str, max_length: int = TEXT_MAX_LENGTH) -> str | None:
        value = node.value
        if not isinstance(value, str):
            self.error(node.line, f"{what} must be text, not {_describe(value)}")
            return None
        if _CONTROL.search(value):
            self.error(node.line, f"{what} must not contain control characters such as newlines or tabs")
            return None
        if len(value) > max_length:
            self.error(node.line, f"{what} is longer than {max_length} characters")
            return None
        return value

    def name(self, node: _Node, what: str) -> str | None:
        value = self.text(node, what, NAME_MAX_LENGTH)
        if value is not None and not _NAME.fullmatch(value):
            self.error(node.line, f"{what} {value!r} must be letters, digits, hyphens and underscores")
            return None
        return value

    def choice(self, node: _Node, choices: tuple[str, ...], what: str) -> str | None:
        value = self.text(node, what)
        if value is not None and value not in choices:
            self.error(node.line, f"{what} {value!r} is unknown; use one of: {', '.join(choices)}")
            return None
        return value

    def flag(self, node: _Node, what: str) -> bool | None:
        if not isinstance(node.value, bool):
            self.error(node.line, f"{what} must be true or false, not {_describe(node.value)}")
            return None
        return node.value

    def items(self, node: _Node, what: str, *, allow_empty: bool = False) -> list[_Node] | None:
        """A list's items; a single scalar counts as a list of one."""
        if isinstance(node.value, dict) or node.value is None:
            self.error(node.line, f"{what} must be a list, not {_describe(node.value)}")
            return None
        items = node.value if isinstance(node.value, list) else [node]
        if not items and not allow_empty:
            self.error(node.line, f"{what} is an empty list; list something or remove the key")
            return None
        return items

    def texts(self, node: _Node, what: str) -> tuple[str, ...] | None:
        items = self.items(node, what)
        if items is None:
            return None
        values = [self.text(item, f"each of {what}") for item in items]
        return None if None in values else tuple(values)  # type: ignore[arg-type]

    def kinds(self, node: _Node) -> tuple[str, ...] | None:
        items = self.items(node, "kind")
        if items is None:
            return None
        kinds = [self.kind(item) for item in items]
        return None if None in kinds else tuple(kinds)  # type: ignore[arg-type]

    def kind(self, node: _Node) -> str | None:
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

    def regex(self, node: _Node) -> str | None:
        pattern = self.text(node, "regex", 2000)
        if pattern is None:
            return None
        if not pattern:
            self.error(node.line, "regex is empty; it would match every statement")
            return None
        try:
            re.compile(pattern)
        except re.error as exc:
            self.error(node.line, f"regex {pattern!r} does not compile: {exc}")
            return None
        return pattern

    def approvals(self, node: _Node) -> int | None:
        value = node.value
        if isinstance(value, bool) or not isinstance(value, int) or not MIN_APPROVALS <= value <= MAX_APPROVALS:
            self.error(
                node.line,
                f"approvals must be a whole number from {MIN_APPROVALS} to {MAX_APPROVALS}, not {_describe(value)}",
            )
            return None
        return value

    def timeout(self, node: _Node) -> float | None:
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
            self.error(node.line, f"timeout must be a duration like 5m or a number of seconds, not {_describe(value)}")
            return None
        # Compared before float(): a huge int would overflow it, and NaN fails every comparison.
        if value > MAX_REVIEW_TIMEOUT_SECONDS:
            longest = _duration_text(MAX_REVIEW_TIMEOUT_SECONDS)
            self.error(node.line, f"timeout {node.value!r} is longer than the maximum, {longest}")
            return None
        if not value > 0:
            self.error(node.line, f"timeout must be positive, not {_describe(node.value)}")
            return None
        return float(value)

    def keep(self, node: _Node) -> int | None:
        value = node.value
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 1000:
            self.error(node.line, f"keep must be a whole number from 0 to 1000, not {_describe(value)}")
            return None
        return value


def _check_body(checker: _Checker, fields: dict[str, _Node], name: str) -> PolicySpec | None:
    """The rules of one policy (every key but name, description and connections)."""
    before = len(checker.problems)
    actions = {}
    for key, fallback in (("default", "allow"), ("unparseable", "deny"), ("opaque", "review")):
        actions[key] = checker.choice(fields[key], ACTIONS, key) if key in fields else fallback
    rule_lines: dict[str, int] = {}
    guardrails = _check_rules(checker, fields.get("guardrails"), "guardrails", _check_guardrail, rule_lines)
    masking = _check_rules(checker, fields.get("masking"), "masking", _check_masking_rule, rule_lines)
    if len(checker.problems) > before:
        return None
    return PolicySpec(name=name, guardrails=guardrails, masking=masking, **actions)


def _check_rules(checker: _Checker, node: _Node | None, what: str, check_one, rule_lines: dict[str, int]) -> tuple:
    if node is None:
        return ()
    if not isinstance(node.value, list):
        checker.error(node.line, f"{what} must be a list of rules, not {_describe(node.value)}")
        return ()
    return tuple(rule for rule in (check_one(checker, item, rule_lines) for item in node.value) if rule is not None)


def _check_rule_name(checker: _Checker, fields: dict[str, _Node], line: int, what: str, rule_lines: dict) -> str:
    if "name" not in fields:
        checker.error(line, f"{what} needs a name; the client's error message and the recording show it")
        return ""
    name = checker.name(fields["name"], f"{what} name")
    if name is None:
        return ""
    if name in rule_lines:
        checker.error(fields["name"].line, f"rule name {name!r} is already used at line {rule_lines[name]}")
    rule_lines.setdefault(name, fields["name"].line)
    return name


def _check_guardrail(checker: _Checker, node: _Node, rule_lines: dict[str, int]) -> GuardrailRule | None:
    fields = checker.mapping(node, GUARDRAIL_KEYS, "a guardrail")
    if fields is None:
        return None
    before = len(checker.problems)
    name = _check_rule_name(checker, fields, node.line, "a guardrail", rule_lines)
    action = None
    if "action" in fields:
        action = checker.choice(fields["action"], ACTIONS, "action")
    else:
        checker.error(node.line, f"guardrail {name!r} needs an action: {', '.join(ACTIONS)}")
    match = None
    if "match" in fields:
        match = _check_match(checker, fields["match"])
    else:
        checker.error(node.line, f"guardrail {name!r} needs a match; write match: {{}} to match every statement")
    message = checker.text(fields["message"], "message") if "message" in fields else ""
    approvals = checker.approvals(fields["approvals"]) if "approvals" in fields else 1
    timeout = checker.timeout(fields["timeout"]) if "timeout" in fields else None
    for key in REVIEW_KEYS:
        if key in fields and action is not None and action != "review":
            checker.error(fields[key].line, f"{key} applies only to action: review, not action: {action}")
    if len(checker.problems) > before:
        return None
    return GuardrailRule(name, action, match, message, approvals, timeout)  # type: ignore[arg-type]


def _check_match(checker: _Checker, node: _Node) -> GuardrailMatch | None:
    fields = checker.mapping(node, MATCH_KEYS, "match")
    if fields is None:
        return None
    values: dict[str, Any] = {}
    for key, value in fields.items():
        if key == "kind":
            values[key] = checker.kinds(value)
        elif key in MATCH_LIST_KEYS:
            values[key] = checker.texts(value, key)
        elif key in MATCH_FLAG_KEYS:
            values[key] = checker.flag(value, key)
        else:
            values[key] = checker.regex(value)
    if None in values.values():
        return None
    return GuardrailMatch(**values)


def _check_masking_rule(checker: _Checker, node: _Node, rule_lines: dict[str, int]) -> MaskingRule | None:
    fields = checker.mapping(node, MASKING_KEYS, "a masking rule")
    if fields is None:
        return None
    before = len(checker.problems)
    name = _check_rule_name(checker, fields, node.line, "a masking rule", rule_lines)
    style = _check_style(checker, fields["style"]) if "style" in fields else "full"
    columns = checker.texts(fields["columns"], "columns") if "columns" in fields else ()
    detectors: tuple | None = ()
    if "detectors" in fields:
        items = checker.items(fields["detectors"], "detectors")
        found = [checker.choice(item, DETECTORS, "detector") for item in items or ()]
        detectors = None if items is None or None in found else tuple(found)
    if "columns" not in fields and "detectors" not in fields:
        checker.error(node.line, f"masking rule {name!r} needs columns, detectors or both")
    keep = DEFAULT_PARTIAL_KEEP
    if "keep" in fields:
        keep = checker.keep(fields["keep"])
        if style is not None and style != "partial":
            checker.error(fields["keep"].line, f"keep applies only to style: partial, not style: {style}")
    if len(checker.problems) > before:
        return None
    return MaskingRule(name=name, style=style, columns=columns, detectors=detectors, keep=keep)  # type: ignore[arg-type]


def _check_style(checker: _Checker, node: _Node) -> str | None:
    if node.value is None:  # `style: null` unquoted is YAML's null, not the style
        checker.error(node.line, 'YAML reads a bare null as nothing; write style: "null"')
        return None
    return checker.choice(node, MASK_STYLES, "style")


def _check_entry(checker: _Checker, node: _Node, policy_lines: dict, owners: dict) -> PolicyEntry | None:
    """One policy of a file; `policy_lines` and `owners` carry names and connections seen so far."""
    fields = checker.mapping(node, POLICY_KEYS, "a policy")
    if fields is None:
        return None
    before = len(checker.problems)
    name = ""
    if "name" in fields:
        name = checker.name(fields["name"], "policy name") or ""
    else:
        checker.error(node.line, "a policy needs a name")
    if name and name in policy_lines:
        checker.error(fields["name"].line, f"policy {name!r} is already defined at line {policy_lines[name]}")
    elif name:
        policy_lines[name] = fields["name"].line
    description = ""
    if "description" in fields:
        description = checker.text(fields["description"], "description", DESCRIPTION_MAX_LENGTH) or ""
    connections, connection_lines = None, ()
    if "connections" in fields:
        connections, connection_lines = _check_connections(checker, fields["connections"], (name, node.line), owners)
    spec = _check_body(checker, fields, name)
    if len(checker.problems) > before or spec is None:
        return None
    return PolicyEntry(spec, description, connections, node.line, connection_lines)


def _check_connections(checker: _Checker, node: _Node, policy: tuple[str, int], owners: dict) -> tuple[tuple, tuple]:
    """The connections of a policy (its name and line); a connection is given at most one policy per file."""
    items = checker.items(node, "connections", allow_empty=True) or []
    names = tuple(checker.name(item, "connection name") or "" for item in items)
    for connection, item in zip(names, items, strict=True):
        if connection in owners:
            other, other_line, other_policy_line = owners[connection]
            if other_policy_line == policy[1]:
                checker.error(item.line, f"connection {connection!r} is listed twice (first at line {other_line})")
            else:
                checker.error(
                    item.line,
                    f"connection {connection!r} is already given policy {other!r} at line {other_line}; "
                    "a connection has one policy",
                )
        elif connection:
            owners[connection] = (policy[0], item.line, policy[1])
    return names, tuple(item.line for item in items)


def _check_file(checker: _Checker, root: _Node) -> tuple[PolicyEntry, ...]:
    if isinstance(root.value, list):
        checker.error(root.line, "the top level must be a mapping with a policies: key, not a list")
        return ()
    fields = checker.mapping(root, FILE_KEYS, "the top level")
    if fields is None:
        return ()
    if "policies" not in fields:
        checker.error(root.line, "the file needs a policies: key with a list of policies")
        return ()
    policies = fields["policies"]
    if not isinstance(policies.value, list):
        checker.error(policies.line, f"policies must be a list of policies, not {_describe(policies.value)}")
        return ()
    policy_lines: dict[str, int] = {}
    owners: dict[str, tuple[str, int, int]] = {}  # connection -> policy name, its line, the policy's line
    entries = (_check_entry(checker, item, policy_lines, owners) for item in policies.value)
    return tuple(entry for entry in entries if entry is not None)


def _check_known(checker: _Checker, root: _Node, known: Collection[str]) -> None:
    """Every listed connection exists; checked on the nodes, so policies with other errors are checked too."""
    for item in _connection_nodes(root):
        if isinstance(item.value, str) and item.value and item.value not in known:
            checker.error(item.line, f"no connection named {item.value!r}; see: manage.py connections list")


def _connection_nodes(root: _Node) -> list[_Node]:
    """The nodes of the connection names the file lists, wherever it is well-formed enough to find them."""
    found: list[_Node] = []
    policies = root.value.get("policies") if isinstance(root.value, dict) else None
    if policies is None or not isinstance(policies[1].value, list):
        return found
    for policy in policies[1].value:
        connections = policy.value.get("connections") if isinstance(policy.value, dict) else None
        if connections is not None:
            node = connections[1]
            found.extend(node.value if isinstance(node.value, list) else [node])
    return found


# --- public entry points -----------------------------------------------------


def parse_policy_file(data: str | bytes, known_connections: Collection[str] | None = None) -> PolicyFile:
    """Read a policy file (`policies:` and a list of policies). Raises PolicyFileError listing every problem.

    With `known_connections`, a listed connection that is not among them is
    one more problem, reported with its line like the others.
    """
    root = _compose(data)
    if root is None:
        raise PolicyFileError([PolicyProblem(1, "the file is empty; it needs a policies: key with a list")])
    checker = _Checker()
    entries = _check_file(checker, root)
    if known_connections is not None:
        _check_known(checker, root, known_connections)
    if checker.problems:
        raise PolicyFileError(checker.problems)
    return PolicyFile(entries)


def parse_policy_body(data: str | bytes, name: str) -> PolicySpec:
    """Read one policy's rules (default, unparseable, opaque, guardrails, masking), as the admin edits them."""
    root = _compose(data)
    if root is None:
        raise PolicyFileError([PolicyProblem(1, "the rules are empty; write at least default: allow")])
    checker = _Checker()
    fields = checker.mapping(root, BODY_KEYS, "the rules")
    spec = _check_body(checker, fields, name) if fields is not None else None
    if checker.problems or spec is None:
        raise PolicyFileError(checker.problems)
    return spec


def spec_from_dict(name: str, data: Any) -> PolicySpec:
    """A spec from the plain values `spec_to_dict` made, checked as strictly as a file. Raises PolicyFileError."""
    checker = _Checker()
    fields = checker.mapping(_from_plain(data), BODY_KEYS, "a stored policy")
    spec = _check_body(checker, fields, name) if fields is not None else None
    if checker.problems or spec is None:
        raise PolicyFileError(checker.problems)
    return spec


def spec_to_dict(spec: PolicySpec) -> dict:
    """A spec's rules as JSON-ready values (no name): the shape of a policy file's entry, defaults spelled out."""
    return {
        "default": spec.default,
        "unparseable": spec.unparseable,
        "opaque": spec.opaque,
        "guardrails": [_guardrail_dict(rule) for rule in spec.guardrails],
        "masking": [_masking_dict(rule) for rule in spec.masking],
    }


def _guardrail_dict(rule: GuardrailRule) -> dict:
    match = {}
    for key in MATCH_KEYS:
        value = getattr(rule.match, key)
        if value:
            match[key] = list(value) if isinstance(value, tuple) else value
    data = {"name": rule.name, "match": match, "action": rule.action}
    if rule.approvals != 1:
        data["approvals"] = rule.approvals
    if rule.timeout is not None:
        data["timeout"] = _duration_text(rule.timeout)
    if rule.message:
        data["message"] = rule.message
    return data


def _duration_text(seconds: float) -> str | float:
    """Whole seconds as the policy file writes them ("5m", "1h30m", "90s" as "1m30s"); other numbers unchanged."""
    if not float(seconds).is_integer() or seconds <= 0:
        return seconds
    hours, rest = divmod(int(seconds), 3600)
    minutes, secs = divmod(rest, 60)
    return "".join(f"{number}{unit}" for number, unit in ((hours, "h"), (minutes, "m"), (secs, "s")) if number)


def _masking_dict(rule: MaskingRule) -> dict:
    data: dict[str, Any] = {"name": rule.name, "style": rule.style}
    if rule.columns:
        data["columns"] = list(rule.columns)
    if rule.detectors:
        data["detectors"] = list(rule.detectors)
    if rule.style == "partial":
        data["keep"] = rule.keep
    return data


def policy_body_yaml(spec: PolicySpec) -> str:
    """The rules of one policy as YAML that `parse_policy_body` reads back to the same spec."""
    return _dump(spec_to_dict(spec))


def policy_file_yaml(entries: Iterable[PolicyEntry], header: str = "") -> str:
    """A policy file that `parse_policy_file` reads back to the same entries; `header` becomes # comments."""
    policies = []
    for entry in entries:
        data: dict[str, Any] = {"name": entry.spec.name}
        if entry.description:
            data["description"] = entry.description
        if entry.connections is not None:
            data["connections"] = list(entry.connections)
        data.update(spec_to_dict(entry.spec))
        policies.append(data)
    comments = "".join(f"# {line}".rstrip() + "\n" for line in header.splitlines())
    return comments + _dump({"policies": policies})


class _IndentedDumper(yaml.SafeDumper):
    """Indents list items under their key, as people write them."""

    def increase_indent(self, flow: bool = False, indentless: bool = False) -> None:
        super().increase_indent(flow, False)


def _dump(data: dict) -> str:
    # Flow style for lists of plain values ([DROP, TRUNCATE]), block style for everything else.
    return yaml.dump(
        data, Dumper=_IndentedDumper, sort_keys=False, default_flow_style=None, allow_unicode=True, width=100
    )
