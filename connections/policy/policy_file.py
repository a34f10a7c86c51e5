"""Policy files: YAML in, `PolicySpec` out, every mistake reported with its line; and the way back.

    parse_policy_file(text)    the declarative file `policies apply` reads (a `policies:` list)
    parse_policy_body(text)    one policy's rules, as the admin's textarea holds them
    spec_to_dict / spec_from_dict    a spec as plain JSON values, for the `Policy` model
    policy_file_yaml / policy_body_yaml    YAML that the parsers accept again (round trip)

All checks run before anything is returned, and all problems are collected
(not just the first) into one `PolicyFileError`. The work is shared out:

    connections.policy.policy_yaml     YAML to line-numbered nodes (aliases refused, size, count and depth capped)
    connections.policy.policy_checker  single values: text, names, kinds, program patterns, regexes, durations
    connections.policy.rule_checks     guardrails (SQL or command, never both) and masking rules
    this module                        files, policies and their connections; the way back to YAML

Nothing here imports Django.
"""

from collections.abc import Collection, Iterable
from dataclasses import dataclass, field
from typing import Any

import yaml

from connections.policy.policy_checker import STATEMENT_VERBS, Checker, duration_text
from connections.policy.policy_yaml import (
    MAX_FILE_BYTES,
    MAX_REPORTED,
    Node,
    PolicyFileError,
    PolicyProblem,
    compose,
    describe,
    from_plain,
)
from connections.policy.rule_checks import MATCH_KEYS, check_guardrail, check_masking_rule, check_rules
from connections.policy.rules import ACTIONS, GuardrailRule, MaskingRule, PolicySpec

__all__ = [  # what callers use; the checks themselves live in policy_checker, rule_checks and policy_yaml
    "MAX_FILE_BYTES",
    "MAX_REPORTED",
    "STATEMENT_VERBS",
    "PolicyEntry",
    "PolicyFile",
    "PolicyFileError",
    "PolicyProblem",
    "parse_policy_body",
    "parse_policy_file",
    "policy_body_yaml",
    "policy_file_yaml",
    "spec_from_dict",
    "spec_to_dict",
]

DESCRIPTION_MAX_LENGTH = 200

FILE_KEYS = ("policies",)
POLICY_KEYS = ("name", "description", "connections", "default", "unparseable", "opaque", "guardrails", "masking")
BODY_KEYS = ("default", "unparseable", "opaque", "guardrails", "masking")


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


# --- checking a policy ---------------------------------------------------------


def _check_body(checker: Checker, fields: dict[str, Node], name: str) -> PolicySpec | None:
    """The rules of one policy (every key but name, description and connections)."""
    before = len(checker.problems)
    actions = {}
    for key, fallback in (("default", "allow"), ("unparseable", "deny"), ("opaque", "review")):
        actions[key] = checker.choice(fields[key], ACTIONS, key) if key in fields else fallback
    rule_lines: dict[str, int] = {}
    guardrails = check_rules(checker, fields.get("guardrails"), "guardrails", check_guardrail, rule_lines)
    masking = check_rules(checker, fields.get("masking"), "masking", check_masking_rule, rule_lines)
    if len(checker.problems) > before:
        return None
    return PolicySpec(name=name, guardrails=guardrails, masking=masking, **actions)


def _check_entry(checker: Checker, node: Node, policy_lines: dict, owners: dict) -> PolicyEntry | None:
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


def _check_connections(checker: Checker, node: Node, policy: tuple[str, int], owners: dict) -> tuple[tuple, tuple]:
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


def _check_file(checker: Checker, root: Node) -> tuple[PolicyEntry, ...]:
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
        checker.error(policies.line, f"policies must be a list of policies, not {describe(policies.value)}")
        return ()
    policy_lines: dict[str, int] = {}
    owners: dict[str, tuple[str, int, int]] = {}  # connection -> policy name, its line, the policy's line
    entries = (_check_entry(checker, item, policy_lines, owners) for item in policies.value)
    return tuple(entry for entry in entries if entry is not None)


def _check_known(checker: Checker, root: Node, known: Collection[str]) -> None:
    """Every listed connection exists; checked on the nodes, so policies with other errors are checked too."""
    for item in _connection_nodes(root):
        if isinstance(item.value, str) and item.value and item.value not in known:
            checker.error(item.line, f"no connection named {item.value!r}; see: manage.py connections list")


def _connection_nodes(root: Node) -> list[Node]:
    """The nodes of the connection names the file lists, wherever it is well-formed enough to find them."""
    found: list[Node] = []
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
    root = compose(data)
    if root is None:
        raise PolicyFileError([PolicyProblem(1, "the file is empty; it needs a policies: key with a list")])
    checker = Checker()
    entries = _check_file(checker, root)
    if known_connections is not None:
        _check_known(checker, root, known_connections)
    if checker.problems:
        raise PolicyFileError(checker.problems)
    return PolicyFile(entries)


def parse_policy_body(data: str | bytes, name: str) -> PolicySpec:
    """Read one policy's rules (default, unparseable, opaque, guardrails, masking), as the admin edits them."""
    root = compose(data)
    if root is None:
        raise PolicyFileError([PolicyProblem(1, "the rules are empty; write at least default: allow")])
    checker = Checker()
    fields = checker.mapping(root, BODY_KEYS, "the rules")
    spec = _check_body(checker, fields, name) if fields is not None else None
    if checker.problems or spec is None:
        raise PolicyFileError(checker.problems)
    return spec


def spec_from_dict(name: str, data: Any) -> PolicySpec:
    """A spec from the plain values `spec_to_dict` made, checked as strictly as a file. Raises PolicyFileError."""
    checker = Checker()
    fields = checker.mapping(from_plain(data), BODY_KEYS, "a stored policy")
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
        data["timeout"] = duration_text(rule.timeout)
    if rule.message:
        data["message"] = rule.message
    return data


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
