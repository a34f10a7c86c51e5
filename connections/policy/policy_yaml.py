"""Policy YAML read into line-numbered nodes, and the errors that point at those lines.

`compose(text)` parses YAML with PyYAML's SafeLoader into `Node`s (so every
value keeps its line); aliases are refused (no billion laughs), and the
size, node count and nesting depth are capped. `from_plain` wraps stored
JSON values the same way, without lines. Problems are `PolicyProblem`s,
collected into one `PolicyFileError`. Used by connections.policy.policy_file
and the checks it runs; nothing here imports Django.
"""

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import yaml

MAX_FILE_BYTES = 1 << 20
MAX_NODES = 50_000
MAX_DEPTH = 24
MAX_REPORTED = 100
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


@dataclass
class Node:
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


def compose(data: str | bytes) -> Node | None:
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


def _convert(composer: _SafeComposer, node: yaml.Node, problems: list[PolicyProblem]) -> Node:
    line = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        if node.tag != _MAP_TAG:
            problems.append(PolicyProblem(line, f"the tag {node.tag} is not allowed here"))
        mapping: dict[str, tuple[int, Node]] = {}
        for key_node, value_node in node.value:
            key = _convert(composer, key_node, problems)
            if not isinstance(key.value, str):
                problems.append(PolicyProblem(key.line, f"keys must be words, not {describe(key.value)}"))
            elif key.value in mapping:
                first = mapping[key.value][0]
                problems.append(PolicyProblem(key.line, f"duplicate key {key.value!r} (first at line {first})"))
            else:
                mapping[key.value] = (key.line, _convert(composer, value_node, problems))
        return Node(mapping, line)
    if isinstance(node, yaml.SequenceNode):
        if node.tag != _SEQ_TAG:
            problems.append(PolicyProblem(line, f"the tag {node.tag} is not allowed here"))
        return Node([_convert(composer, item, problems) for item in node.value], line)
    try:
        return Node(composer.construct_object(node), line)
    except yaml.constructor.ConstructorError as exc:
        problems.append(PolicyProblem(line, f"cannot read this value: {exc.problem}"))
        return Node(None, line)
    except ValueError as exc:  # a date such as 2024-13-45, or an integer of more than 4300 digits
        problems.append(PolicyProblem(line, f"cannot read this value: {exc}"))
        return Node(None, line)


def from_plain(value: Any) -> Node:
    """Wrap plain JSON values (a stored policy) in nodes without lines."""
    if isinstance(value, dict):
        return Node({str(key): (0, from_plain(item)) for key, item in value.items()}, 0)
    if isinstance(value, list | tuple):
        return Node([from_plain(item) for item in value], 0)
    return Node(value, 0)


def describe(value: Any) -> str:
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
