"""The checks of one policy's rules: guardrails (SQL or command) and masking rules, with their lines.

A guardrail is about SQL statements (it sets SQL keys such as `kind`) or
about SSH commands (it sets `programs` or `args_regex`), never both; one
that sets neither applies to both (connections.policy.rules). Rule names
are unique across a policy's guardrails and masking rules, since messages
and recordings name them. Nothing here imports Django.
"""

from typing import Any

from connections.policy.policy_checker import Checker
from connections.policy.policy_yaml import Node, describe
from connections.policy.rules import (
    ACTIONS,
    COMMAND_MATCH_KEYS,
    DEFAULT_PARTIAL_KEEP,
    DETECTORS,
    MASK_STYLES,
    SQL_MATCH_KEYS,
    GuardrailMatch,
    GuardrailRule,
    MaskingRule,
)

GUARDRAIL_KEYS = ("name", "action", "match", "message", "approvals", "timeout")
REVIEW_KEYS = ("approvals", "timeout")  # guardrail keys that only a review rule may set
MATCH_KEYS = tuple(GuardrailMatch.__dataclass_fields__)
MATCH_LIST_KEYS = ("kind", "schemas", "tables", "functions")
MATCH_FLAG_KEYS = ("dangerous_functions", "copy_program", "copy_file", "without_where")
MASKING_KEYS = ("name", "columns", "detectors", "style", "keep")


def check_rules(checker: Checker, node: Node | None, what: str, check_one, rule_lines: dict[str, int]) -> tuple:
    """A list of rules, each read by `check_one` (check_guardrail, check_masking_rule); bad ones are left out."""
    if node is None:
        return ()
    if not isinstance(node.value, list):
        checker.error(node.line, f"{what} must be a list of rules, not {describe(node.value)}")
        return ()
    return tuple(rule for rule in (check_one(checker, item, rule_lines) for item in node.value) if rule is not None)


def check_rule_name(checker: Checker, fields: dict[str, Node], line: int, what: str, rule_lines: dict) -> str:
    """A rule's name, unique among the policy's rules (`rule_lines` maps the names seen so far to their lines)."""
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


def check_guardrail(checker: Checker, node: Node, rule_lines: dict[str, int]) -> GuardrailRule | None:
    """One guardrail: name, action, match, and for a review its approvals and timeout."""
    fields = checker.mapping(node, GUARDRAIL_KEYS, "a guardrail")
    if fields is None:
        return None
    before = len(checker.problems)
    name = check_rule_name(checker, fields, node.line, "a guardrail", rule_lines)
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


def _check_match(checker: Checker, node: Node) -> GuardrailMatch | None:
    fields = checker.mapping(node, MATCH_KEYS, "match")
    if fields is None:
        return None
    values: dict[str, Any] = {}
    for key, value in fields.items():
        if key == "kind":
            values[key] = checker.kinds(value)
        elif key == "programs":
            values[key] = checker.programs(value)
        elif key == "args_regex":
            values[key] = checker.regex(value, key, "command")
        elif key in MATCH_LIST_KEYS:
            values[key] = checker.texts(value, key)
        elif key in MATCH_FLAG_KEYS:
            values[key] = checker.flag(value, key)
        else:
            values[key] = checker.regex(value)
    if not _one_kind_of_rule(checker, node, fields) or None in values.values():
        return None
    return GuardrailMatch(**values)


def _one_kind_of_rule(checker: Checker, node: Node, fields: dict[str, Node]) -> bool:
    """A match sets SQL keys or command keys, not both (keys set to false or empty count as set)."""
    sql_keys = [key for key in fields if key in SQL_MATCH_KEYS]
    command_keys = [key for key in fields if key in COMMAND_MATCH_KEYS]
    if not sql_keys or not command_keys:
        return True
    line = node.value[command_keys[0]][0] or node.line  # the line of the first command key
    checker.error(
        line,
        f"match sets SQL keys ({', '.join(sql_keys)}) and command keys ({', '.join(command_keys)}): "
        "a guardrail is about SQL statements or about SSH commands, not both; split it into two rules",
    )
    return False


def check_masking_rule(checker: Checker, node: Node, rule_lines: dict[str, int]) -> MaskingRule | None:
    """One masking rule: name, columns and/or detectors, style, and keep for the partial style."""
    fields = checker.mapping(node, MASKING_KEYS, "a masking rule")
    if fields is None:
        return None
    before = len(checker.problems)
    name = check_rule_name(checker, fields, node.line, "a masking rule", rule_lines)
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


def _check_style(checker: Checker, node: Node) -> str | None:
    if node.value is None:  # `style: null` unquoted is YAML's null, not the style
        checker.error(node.line, 'YAML reads a bare null as nothing; write style: "null"')
        return None
    return checker.choice(node, MASK_STYLES, "style")
