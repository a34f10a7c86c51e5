"""Masking inside json and jsonb values, keeping them valid JSON.

Inside a JSON value, a member whose key matches a column rule (as a column
of an unknown table: qualified patterns match on their column part) has its
value masked whole: JSON null for "null", the hash as a JSON string for
"hash", "********" otherwise. This catches row_to_json(users), to_jsonb(u)
and json_agg(u). Detectors then mask spans inside the remaining strings
(re-encoded with json.dumps), and a bare number they hit (a card number)
becomes a JSON string.

The functions take the masker as an argument and use only its methods and
attributes, so this module never imports connections.policy.masking at run
time; masking.py imports from here (and re-exports `JSON_FULL_MASK`).
"""

import json
import re
from collections.abc import Sequence
from typing import TYPE_CHECKING

from connections.policy.detectors import encode_text

if TYPE_CHECKING:
    from connections.policy.masking import Masker, Style, _ColumnRule

JSON_FULL_MASK = '"********"'  # masking.FULL_MASK as a JSON string: what a masked JSON value becomes

_JSON_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_JSON_COLON = re.compile(r"\s*:\s*")
_JSON_NESTING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"|[\[\]{}]', re.DOTALL)
_JSON_SCALAR = re.compile(r"[^,}\]\s]*")


def json_key_prefilter(column_rules: Sequence["_ColumnRule"]) -> re.Pattern[bytes] | None:
    """One regex finding a JSON key that some column rule's column glob matches."""
    globs = sorted({pattern.text.split(".")[-1] for rule in column_rules for pattern in rule.patterns})
    if not globs:
        return None
    inside = {"*": '[^"]*', "?": '[^"]'}
    alternatives = "|".join("".join(inside.get(char) or re.escape(char) for char in glob) for glob in globs)
    return re.compile(f'"(?:{alternatives})"\\s*:'.encode(), re.IGNORECASE)


def json_may_hit(masker: "Masker", value: bytes) -> bool:
    """Whether a JSON value's bytes could hold anything to mask: cheap prefilters before `mask_json`."""
    # A backslash may be an escape hiding a character from the prefilters ("\u0040" is '@').
    if 92 in value:
        return True
    if masker.detectors is not None and masker.detectors.features(value):
        return True
    return masker.json_keys is not None and masker.json_keys.search(value) is not None


def mask_json(masker: "Masker", text: str) -> str:
    """Mask a JSON text inside (members by key, strings and bare values by detector); the same object if none."""
    pieces, pos, changed = [], 0, False
    while (match := _JSON_STRING.search(text, pos)) is not None:
        start, end = match.span()
        if start > pos:
            changed = _append_changed(pieces, text[pos:start], _mask_json_outside(masker, text[pos:start])) or changed
        token = match.group()
        colon = _JSON_COLON.match(text, end)
        style = (
            _json_key_style(masker, token) if colon is not None and text[colon.start() :].lstrip()[:1] == ":" else None
        )
        if style is not None:
            value_end = _json_value_end(text, colon.end())  # type: ignore[union-attr]
            pieces.append(text[start : colon.end()])  # type: ignore[union-attr]
            pieces.append(_json_masked_member(masker, text[colon.end() : value_end], style))  # type: ignore[union-attr]
            pos, changed = value_end, True
            continue
        changed = _append_changed(pieces, token, _mask_json_string(masker, token)) or changed
        pos = end
    if pos < len(text):
        changed = _append_changed(pieces, text[pos:], _mask_json_outside(masker, text[pos:])) or changed
    return "".join(pieces) if changed else text


def _append_changed(pieces: list[str], old: str, new: str) -> bool:
    pieces.append(new)
    return new is not old


def _json_key_style(masker: "Masker", token: str) -> "Style | None":
    if masker.json_keys is None:
        return None
    try:
        key = json.loads(token)
    except ValueError:
        key = token[1:-1]
    return masker.style_for((key,), ("", ""), False)


def _json_value_end(text: str, start: int) -> int:
    """Where the JSON value starting at `start` ends; the end of the text if it never closes (fail closed)."""
    if start >= len(text):
        return start
    first = text[start]
    if first == '"':
        match = _JSON_STRING.match(text, start)
        return match.end() if match is not None else len(text)
    if first not in "[{":
        return _JSON_SCALAR.match(text, start).end()  # type: ignore[union-attr]
    depth = 0
    for match in _JSON_NESTING.finditer(text, start):
        part = match.group()
        if part in ("[", "{"):
            depth += 1
        elif part in ("]", "}"):
            depth -= 1
            if depth == 0:
                return match.end()
    return len(text)


def _json_masked_member(masker: "Masker", raw: str, style: "Style") -> str:
    if style.name == "null":
        return "null"
    if style.name == "hash":
        return json.dumps(masker.mask_value(raw, style))
    return JSON_FULL_MASK


def _mask_json_string(masker: "Masker", token: str) -> str:
    detectors = masker.detectors
    if detectors is None:
        return token
    # Escapes can hide characters from the prefilter ("\u0040" is '@'): decode those first.
    if "\\" not in token and not detectors.features(encode_text(token)):
        return token
    try:
        value = json.loads(token)
    except ValueError:
        return JSON_FULL_MASK  # cannot decode what might hold a secret: fail closed
    masked = masker.mask_text(value)
    if masked is value:
        return token
    dumped = json.dumps(masked, ensure_ascii=False)
    try:
        dumped.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:  # a lone surrogate escape ("\ud800") must stay an escape
        return json.dumps(masked)
    return dumped


def _mask_json_outside(masker: "Masker", text: str) -> str:
    """Numbers and literals between JSON strings; a hit (a card number) becomes a JSON string."""
    spans = masker.detectors.find(text) if masker.detectors is not None else []
    if not spans:
        return text
    pieces, pos = [], 0
    for start, end, name in spans:
        pieces.append(text[pos:start])
        pieces.append(json.dumps(masker.mask_part(text[start:end], masker.detector_styles[name])))
        pos = end
    pieces.append(text[pos:])
    return "".join(pieces)
