"""Masking of COPY TO STDOUT rows, in text and CSV format.

A CopyData row is split into its fields (text format: backslash escapes,
\\N for NULL; CSV: quoting, an unquoted empty field for NULL), each field is
masked by the session's `Masker` (column rules by position when the columns
are known, detectors on every field), and the row is encoded again the way
COPY TO writes it. A row with nothing to mask comes back as the very same
object. COPY data with column rules but unknown columns has every field
masked; a row that does not parse raises ValueError.

The functions take the masker as an argument and use only its methods and
attributes, so this module never imports connections.policy.masking at run
time; masking.py imports from here (and re-exports `copy_text_decode`,
`copy_text_encode` and `mask_copy_row`).
"""

import functools
import re
from collections.abc import Sequence
from typing import TYPE_CHECKING, NamedTuple

from connections.policy.detectors import encode_text

if TYPE_CHECKING:
    from connections.policy.masking import Masker, Style

_COPY_UNESCAPES = {b"b": b"\b", b"f": b"\f", b"n": b"\n", b"r": b"\r", b"t": b"\t", b"v": b"\v"}
_COPY_ESCAPE = re.compile(rb"\\(x[0-9a-fA-F]{1,2}|[0-7]{1,3}|.)", re.DOTALL)
_COPY_SPECIAL = re.compile(rb"[\\\b\f\n\r\t\v]")
_COPY_ESCAPES = {
    b"\\": b"\\\\",
    b"\b": b"\\b",
    b"\f": b"\\f",
    b"\n": b"\\n",
    b"\r": b"\\r",
    b"\t": b"\\t",
    b"\v": b"\\v",
}
_CSV_FIELD = re.compile(rb'"([^"]*(?:""[^"]*)*)"|([^",]*)', re.DOTALL)


def _copy_unescape_one(match: re.Match[bytes]) -> bytes:
    code = match.group(1)
    if code[:1] == b"x":
        return bytes([int(code[1:], 16)])
    if code[:1].isdigit():
        return bytes([int(code, 8) & 0xFF])
    return _COPY_UNESCAPES.get(code, code)


def copy_text_decode(field: bytes) -> bytes:
    """A COPY text-format field without its backslash escapes (not for the NULL marker \\N)."""
    return _COPY_ESCAPE.sub(_copy_unescape_one, field) if b"\\" in field else field


def copy_text_encode(value: bytes, delimiter: bytes = b"\t") -> bytes:
    """A value escaped as COPY TO writes it in text format."""
    escaped = _COPY_SPECIAL.sub(lambda match: _COPY_ESCAPES[match.group()], value)
    return escaped.replace(delimiter, b"\\" + delimiter) if delimiter not in _COPY_ESCAPES else escaped


class _CopyField(NamedTuple):
    value: bytes | None  # decoded; None is NULL
    quoted: bool  # CSV only: was it quoted


def _split_copy_text(body: bytes, delimiter: bytes) -> list[_CopyField]:
    if delimiter == b"\t" or b"\\" not in body:
        raws = body.split(delimiter)  # a tab in data is written as \t: every tab separates
    else:
        raws = [match.group() for match in _fields(_text_pattern(delimiter), body, delimiter)]
    return [_CopyField(None if raw == b"\\N" else copy_text_decode(raw), False) for raw in raws]


def _split_copy_csv(body: bytes, delimiter: bytes) -> list[_CopyField]:
    fields = []
    for match in _fields(_CSV_FIELD if delimiter == b"," else _csv_pattern(delimiter), body, delimiter):
        if match.group(1) is not None:
            fields.append(_CopyField(match.group(1).replace(b'""', b'"'), True))
        else:
            fields.append(_CopyField(match.group(2) or None, False))  # unquoted and empty: NULL
    return fields


def _fields(pattern: re.Pattern[bytes], body: bytes, delimiter: bytes) -> list[re.Match[bytes]]:
    """The field matches of a row, each followed by the delimiter or the end."""
    matches, pos = [], 0
    while True:
        match = pattern.match(body, pos)
        matches.append(match)
        pos = match.end()  # type: ignore[union-attr]
        if pos == len(body):
            return matches  # type: ignore[return-value]
        if body[pos : pos + len(delimiter)] != delimiter:
            raise ValueError("malformed row in COPY data")
        pos += len(delimiter)


@functools.cache
def _text_pattern(delimiter: bytes) -> re.Pattern[bytes]:
    # Another delimiter than tab is escaped as backslash + itself: skip escaped characters.
    return re.compile(rb"(?:[^\\" + re.escape(delimiter) + rb"]|\\.)*", re.DOTALL)


@functools.cache
def _csv_pattern(delimiter: bytes) -> re.Pattern[bytes]:
    escaped = re.escape(delimiter)
    return re.compile(rb'"([^"]*(?:""[^"]*)*)"|((?:(?!' + escaped + rb")[^\"])*)", re.DOTALL)


def _join_copy_text(fields: Sequence[_CopyField], delimiter: bytes) -> bytes:
    return delimiter.join(b"\\N" if f.value is None else copy_text_encode(f.value, delimiter) for f in fields)


def _join_copy_csv(fields: Sequence[_CopyField], delimiter: bytes) -> bytes:
    parts = []
    for field in fields:
        value = field.value
        if value is None:
            parts.append(b"")
        elif field.quoted or not value or any(c in value for c in (delimiter, b'"', b"\n", b"\r")):
            parts.append(b'"' + value.replace(b'"', b'""') + b'"')
        else:
            parts.append(value)
    return delimiter.join(parts)


def mask_copy_row(
    masker: "Masker",
    row: bytes,
    columns: Sequence[str | tuple[str, str, str]] | None,
    csv: bool,
    delimiter: bytes | None = None,
) -> bytes:
    """One COPY TO STDOUT row in text or CSV format, masked; the same object when nothing changed.

    `columns` names the row's columns in order: a bare name (its table is
    unknown, so a qualified pattern matches on its column part: fail closed)
    or (schema, table, column). Column rules apply by position when the
    field count matches `columns`. When column rules exist and the columns
    are unknown (None, or a count that does not match), every non-NULL
    field is masked with the style of the first column rule: without names
    nothing tells a password from an id, so nothing is let through. Types
    are unknown in COPY data, so a column rule masks with its string style
    (NULL only for the "null" style). Detectors apply to every field.
    Raises ValueError on a row that does not parse (an open quote, a trailing backslash).
    """
    if not masker.has_rules or not row:
        return row
    delimiter = delimiter or (b"," if csv else b"\t")
    newline = b"\n" if row.endswith(b"\n") else b""
    body = row[: len(row) - len(newline)]
    if not masker.column_rules and not masker.detectors.features(body):  # type: ignore[union-attr]
        return row  # escapes never hide the prefilter's characters: the raw row is a sound test
    fields = _split_copy_csv(body, delimiter) if csv else _split_copy_text(body, delimiter)
    styles = _copy_styles(masker, columns, len(fields))
    masked = [_mask_copy_field(masker, field, style) for field, style in zip(fields, styles, strict=True)]
    if all(new is old for new, old in zip(masked, fields, strict=True)):
        return row
    joined = _join_copy_csv(masked, delimiter) if csv else _join_copy_text(masked, delimiter)
    return joined + newline


def _copy_styles(
    masker: "Masker", columns: Sequence[str | tuple[str, str, str]] | None, count: int
) -> Sequence["Style | None"]:
    if not masker.column_rules:
        return (None,) * count
    if columns is None or len(columns) != count:
        return (masker.column_rules[0].style,) * count  # unknown columns: fail closed
    styles = []
    for column in columns:
        if isinstance(column, str):
            styles.append(masker.style_for((column,), ("", ""), False))
        else:
            schema, table, name = column
            styles.append(masker.style_for((name,), (schema, table), True))
    return styles


def _mask_copy_field(masker: "Masker", field: _CopyField, style: "Style | None") -> _CopyField:
    value = field.value
    if value is None:
        return field
    if style is not None:
        masked = masker.mask_value(value.decode("utf-8", "surrogateescape"), style)
        return _CopyField(None if masked is None else encode_text(masked), field.quoted)
    new = masker.mask_bytes(value)
    return field if new is value else _CopyField(new, field.quoted)
