"""Masking of ErrorResponse and NoticeResponse fields.

PostgreSQL puts row values in error texts ("Key (email)=(bob@example.com)
already exists.", "Failing row contains (...)"), and statement text in the
context and internal query fields: these are masked by the session's
`Masker` before the message reaches the client or the recording. A payload
that does not parse is replaced by a safe, well-formed one.

The functions take the masker as an argument and use only its methods and
attributes, so this module never imports connections.policy.masking at run
time; masking.py imports from here (and re-exports `mask_error_fields`).
"""

import re
from typing import TYPE_CHECKING

from connections.policy.detectors import encode_text

if TYPE_CHECKING:
    from connections.policy.masking import Masker, Style

# Fields that can carry row values or statement text: message, detail, hint,
# context ("where") and internal query. Only the first three carry the
# "(col)=(value)" and "Failing row contains" forms.
ERROR_TEXT_FIELDS = frozenset(b"MDHWq")
ROW_VALUE_FIELDS = frozenset(b"MDH")
_KEY_VALUES = re.compile(r"\((?P<cols>(?:[^()]|\([^()]*\))*)\)=\((?P<vals>.*)\)", re.DOTALL)
_FAILING_ROW = re.compile(r"row contains \((?P<vals>.*)\)", re.DOTALL)
_IDENTIFIER = re.compile(r'"((?:[^"]|"")+)"|([^\W\d][\w$]*)')
_WITHHELD = "error text withheld by Gatehouse: malformed error message"


def mask_error_fields(masker: "Masker", payload: bytes) -> bytes:
    """An ErrorResponse / NoticeResponse payload with row values and detected secrets masked.

    Detectors run over the message, detail, hint, context and internal
    query. Values shown in "Key (email)=(bob@example.com)" forms are masked
    with the first column rule matching one of the key columns (qualified by
    the 's' and 't' fields when present); a "Failing row contains (...)" has
    no column names, so its whole tuple is masked as soon as any column rule
    could apply to the table. Returns the same object when unchanged; a
    payload that does not parse is replaced by a well-formed one that keeps
    only the severity and SQLSTATE.
    """
    if not masker.has_rules:
        return payload
    fields = _parse_fields(payload)
    if fields is None:
        return _withheld(payload)
    by_code = dict(fields)
    schema, table = by_code.get(ord("s")), by_code.get(ord("t"))
    place = None if table is None else (_decode(schema or b""), _decode(table))
    changed = False
    out = []
    for code, value in fields:
        if code in ERROR_TEXT_FIELDS:
            text = _decode(value)
            masked = masker.mask_text(_mask_row_values(masker, text, place) if code in ROW_VALUE_FIELDS else text)
            if masked is not text:
                value, changed = encode_text(masked), True
        out.append(bytes([code]) + value + b"\0")
    return b"".join(out) + b"\0" if changed else payload


def _parse_fields(payload: bytes) -> list[tuple[int, bytes]] | None:
    fields, pos = [], 0
    while pos < len(payload):
        code = payload[pos]
        if code == 0:
            return fields if pos == len(payload) - 1 else None
        end = payload.find(b"\0", pos + 1)
        if end < 0:
            return None
        fields.append((code, payload[pos + 1 : end]))
        pos = end + 1
    return None  # no terminating NUL


def _withheld(payload: bytes) -> bytes:
    keep = []
    pos = 0
    while pos < len(payload) and payload[pos] in b"SVC":
        end = payload.find(b"\0", pos + 1)
        if end < 0:
            break
        keep.append(payload[pos : end + 1])
        pos = end + 1
    return b"".join(keep) + b"M" + _WITHHELD.encode() + b"\0\0"


def _decode(value: bytes) -> str:
    return value.decode("utf-8", "surrogateescape")


def _mask_row_values(masker: "Masker", text: str, place: tuple[str, str] | None) -> str:
    if not masker.column_rules or ")=(" not in text and "row contains (" not in text:
        return text
    known = place is not None
    where = place if place is not None else ("", "")
    match = _KEY_VALUES.search(text) if ")=(" in text else None
    if match is not None:
        style = _key_style(masker, match.group("cols"), where, known)
        if style is not None:
            return (
                text[: match.start("vals")] + masker.mask_part(match.group("vals"), style) + text[match.end("vals") :]
            )
    match = _FAILING_ROW.search(text)
    if match is not None and _rules_touch_table(masker, where, known):
        return text[: match.start("vals")] + masker.full_mask + text[match.end("vals") :]
    return text


def _key_style(masker: "Masker", columns: str, place: tuple[str, str], known: bool) -> "Style | None":
    # Key columns may be expressions ("lower(email::text)"): any identifier in them counts.
    for quoted, bare in _IDENTIFIER.findall(columns):
        name = quoted.replace('""', '"') if quoted else bare
        style = masker.style_for((name,), place, known)
        if style is not None:
            return style
    return None


def _rules_touch_table(masker: "Masker", place: tuple[str, str], known: bool) -> bool:
    for rule in masker.column_rules:
        for pattern in rule.patterns:
            if pattern.any_table or not known:
                return True
            schema, table = place
            if pattern.table.match(table) and (pattern.schema is None or pattern.schema.match(schema)):  # type: ignore[union-attr]
                return True
    return False
