"""Inline masking of PostgreSQL results: DataRow values, COPY rows, error fields, bound text.

A `Masker` is built once per session from the policy's masking rules. For
each result set, `Masker.for_columns(RowDescription columns)` makes (and
caches) a `RowMasker`, a per-column plan; `RowMasker.mask_row` then rewrites
one DataRow payload at a time, so memory stays bounded whatever the size of
the result. Only the masked form leaves the gateway: the proxy forwards and
records what these functions return. Columns no rule touches pass
byte-identical; a row with nothing to mask comes back as the very same object.

How a value is masked depends on its type and format:

- Text-like types (`TEXT_OIDS`: text, varchar, bpchar, name, xml, unknown)
  in either format are strings: UTF-8 in practice, though any ASCII-compatible
  client encoding works, since undecodable bytes pass through untouched
  (decoded with "surrogateescape"). A column rule replaces the whole value
  with its style; detectors replace the spans they find.
- json and jsonb (`JSON_OIDS`; jsonb binary is a version byte 1 + the text)
  stay valid JSON: a column rule makes the value the JSON string
  "********" (or "h:..." for hash; partial is treated as full, since the last
  characters of a JSON text tell nothing useful). Inside a JSON value, a
  member whose key a column rule matches has its value masked whole (JSON
  null for "null"), which covers row_to_json(users) and json_agg(u); and
  detectors mask inside string values (re-encoded with json.dumps) or turn
  a bare number that is a card number into a JSON string.
- Any other type that a column rule hits is sent as SQL NULL, in both
  formats: a star string in an int4, uuid, timestamp or array column would
  break the client's decoder (psycopg binary cursors, asyncpg), while NULL is
  something every client handles. NULL values stay NULL.
- Detectors run on text-like and JSON columns, and in text format on every
  other type that can carry text (arrays, records, enums, extension types such
  as citext or hstore): the text literal is scanned as a whole, which keeps
  `{a,b}` and `(a,b)` literals parseable since masks contain no quotes,
  commas or braces. They skip types that cannot hold text (`NON_TEXT_OIDS`:
  numbers, booleans, dates and times, uuid, network types, bytea and their
  arrays): an int4 cannot hold an email, and skipping them keeps rows cheap.
  bytea is among them: its text form is hex, which no detector could read.
- In binary format, arrays of text-like types (`TEXT_ARRAY_OIDS`) and
  records are walked element by element (each element by its own type, with
  new lengths); values of any other type not known to be free of text
  (extension types such as citext, enums, hstore, arrays of those) are
  scanned as raw bytes and hits are overwritten with '*' byte for byte, so
  the lengths inside the value stay valid, whatever the style.
- A private key split over several JSON strings (an array of PEM lines) is
  masked from its BEGIN line to the end of that string only.

Column patterns are matched against the column's label and, when the proxy
provides `Masker.attributes`, its real name (an alias does not dodge a rule),
and against its table and schema (`Masker.tables`); the proxy fills both
from the upstream's catalog. A computed column (table oid 0) matches only
"col" and "*.col" patterns; a column of a table not yet in `tables` matches
qualified patterns on its name alone, so an unknown table over-masks rather
than leaks. Column rules follow column identity only: an expression over a
masked column (lower(password), password || '') or a whole-row composite
(SELECT u FROM users u, u::text) is computed or opaque and only the
detectors see it.

A detected span inside a larger text is masked with the style of the first
rule that lists the detector; "null" cannot apply to part of a text, so it
acts as "full" there.

Malformed input fails closed: a DataRow that does not match its
RowDescription raises ValueError (the proxy ends the session rather than pass
it on unmasked); a malformed ErrorResponse is replaced by a safe one; COPY
data with column rules but unknown columns has every field masked.

COPY rows are parsed and masked in copy_masking.py, error and notice fields
in error_masking.py, the inside of JSON values in json_masking.py: the Masker
delegates to them, and this module re-exports their public names
(`copy_text_decode`, `copy_text_encode`, `mask_copy_row`, `mask_error_fields`,
`JSON_FULL_MASK`). They take the masker as an argument and never import this
module at run time.
"""

import hmac
import json
import re
import struct
from collections.abc import Callable, Mapping, Sequence
from fnmatch import translate as glob_to_regex
from typing import NamedTuple

from connections.policy.copy_masking import copy_text_decode as copy_text_decode
from connections.policy.copy_masking import copy_text_encode as copy_text_encode
from connections.policy.copy_masking import mask_copy_row
from connections.policy.detectors import DetectorSet, byte_features, encode_text
from connections.policy.error_masking import ERROR_TEXT_FIELDS as ERROR_TEXT_FIELDS
from connections.policy.error_masking import ROW_VALUE_FIELDS as ROW_VALUE_FIELDS
from connections.policy.error_masking import mask_error_fields
from connections.policy.json_masking import JSON_FULL_MASK as JSON_FULL_MASK
from connections.policy.json_masking import json_key_prefilter, json_may_hit, mask_json
from connections.policy.rules import DEFAULT_PARTIAL_KEEP, MaskingRule
from connections.protocols.pgwire.messages import Column

FULL_MASK = "********"

# Types whose text and binary forms are the string itself.
TEXT_OIDS = frozenset({25, 1043, 1042, 19, 705, 142})  # text, varchar, bpchar, name, unknown, xml
JSON_OID = 114
JSONB_OID = 3802
JSON_OIDS = frozenset({JSON_OID, JSONB_OID})
RECORD_OID = 2249
# Types that cannot carry free text: detectors skip them; a column rule NULLs them.
NON_TEXT_OIDS = frozenset(
    {
        16, 17, 18, 20, 21, 23, 24, 26, 27, 28, 29, 700, 701, 790, 829, 774, 869, 650, 1082, 1083, 1114,
        1184, 1186, 1266, 1560, 1562, 1700, 2950, 3220, 5069, 600, 601, 602, 603, 604, 628, 718,
        2202, 2203, 2204, 2205, 2206, 4089, 4096, 3734, 3769, 2278,
        3904, 3906, 3908, 3910, 3912, 3926, 4451, 4532, 4533, 4534, 4535, 4536,
        # their arrays
        1000, 1001, 1002, 1005, 1006, 1007, 1016, 1010, 1011, 1012, 1013, 1021, 1022, 1028, 791, 1040, 775,
        1041, 651, 1182, 1183, 1115, 1185, 1187, 1270, 1561, 1563, 1231, 2951, 3221, 271,
        1017, 1018, 1019, 1020, 1027, 629, 719, 2207, 2208, 2209, 2210, 2211, 4090, 4097, 3735, 3770,
        3905, 3907, 3909, 3911, 3913, 3927, 6150, 6151, 6152, 6153, 6155, 6157,
    }
)  # fmt: skip

# Arrays of text-like types, walked element by element in binary format:
# _text, _varchar, _bpchar, _name, _xml, _json, _jsonb, _record, _cstring.
TEXT_ARRAY_OIDS = frozenset({1009, 1015, 1014, 1003, 143, 199, 3807, 2287, 1263})

_INT32 = struct.Struct("!i")
_UINT32 = struct.Struct("!I")
_ARRAY_HEADER = struct.Struct("!iiI")  # ndim, has-null flag, element type oid
_NULL_LENGTH = _INT32.pack(-1)


class _Unchanged:
    __slots__ = ()

    def __repr__(self) -> str:
        return "UNCHANGED"


UNCHANGED = _Unchanged()  # a value action's answer when the value stays as it was


class Style(NamedTuple):
    """How to mask: one of rules.MASK_STYLES, and the characters "partial" keeps."""

    name: str
    keep: int = DEFAULT_PARTIAL_KEEP


def hash_mask(key: bytes, value: bytes) -> str:
    """The deterministic "hash" style: joins on masked values still work, the value stays secret."""
    return "h:" + hmac.digest(key, value, "sha256").hex()[:16]


def mask_string(text: str, style: Style, key: bytes) -> str | None:
    """`text` masked with `style`; None (SQL NULL) only for the "null" style."""
    name = style.name
    if name == "full":
        return FULL_MASK
    if name == "partial":
        keep = style.keep
        if keep <= 0 or len(text) < keep * 2:
            return "*" * len(text)
        return "*" * (len(text) - keep) + text[-keep:]
    if name == "hash":
        return hash_mask(key, encode_text(text))
    if name == "null":
        return None
    return FULL_MASK  # an unknown style: fail closed


def mask_span(text: str, style: Style, key: bytes) -> str:
    """A detected span masked; "null" cannot blank part of a text and acts as "full"."""
    masked = mask_string(text, style, key)
    return FULL_MASK if masked is None else masked


# --- Column patterns ------------------------------------------------------------------


class ColumnPattern:
    """One glob of MaskingRule.columns: "col", "table.col" or "schema.table.col", case-insensitive."""

    __slots__ = ("text", "column", "table", "schema", "any_table")

    def __init__(self, pattern: str) -> None:
        parts = pattern.split(".")
        if len(parts) > 3:
            parts = [".".join(parts[:-2]), parts[-2], parts[-1]]
        self.text = pattern
        self.column = _glob(parts[-1])
        self.table = _glob(parts[-2]) if len(parts) >= 2 else None
        self.schema = _glob(parts[0]) if len(parts) == 3 else None
        # "col", "*.col" and "*.*.col" also match computed columns, which have no table.
        self.any_table = all(part == "*" for part in parts[:-1])

    def matches(self, column: str, place: tuple[str, str] | None, known: bool) -> bool:
        """Whether the pattern matches a column.

        `place` is (schema, table), None for a computed column; `known` is
        False when the column has a table whose name we do not know, and
        then a qualified pattern matches on its column part alone: fail closed.
        """
        if not self.column.match(column):
            return False
        if self.any_table:
            return True
        if place is None:
            return False
        if not known:
            return True
        schema, table = place
        return bool(self.table.match(table)) and (self.schema is None or bool(self.schema.match(schema)))


def _glob(pattern: str) -> re.Pattern[str]:
    return re.compile(glob_to_regex(pattern), re.IGNORECASE | re.DOTALL)


class _ColumnRule(NamedTuple):
    patterns: tuple[ColumnPattern, ...]
    style: Style


# --- Per-value actions -----------------------------------------------------------------

# An action takes (payload, start, end) and returns new bytes, None for NULL, or UNCHANGED.
Action = Callable[[bytes, int, int], "bytes | None | _Unchanged"]


def _constant(value: bytes | None) -> bytes:
    """A constant replacement as a plan holds it: with its length word."""
    return _NULL_LENGTH if value is None else _INT32.pack(len(value)) + value


class _ScanText:
    __slots__ = ()

    def __repr__(self) -> str:
        return "SCAN_TEXT"


# A plan's action for a column is None (pass), bytes (a constant replacement,
# length word included), SCAN_TEXT (run the detectors over a string), or an
# Action for anything else. The first three are handled inline in mask_row:
# a Python call per value would cost more than the work itself.
SCAN_TEXT = _ScanText()
PlanAction = Action | bytes | _ScanText | None


class RowMasker:
    """The masking plan of one result set: an action per column, applied to each DataRow."""

    __slots__ = ("count", "actions", "masker", "min_length", "needed")

    def __init__(self, actions: Sequence[PlanAction], masker: "Masker") -> None:
        self.count = len(actions)
        self.actions = tuple(actions)
        self.masker = masker
        detectors = masker.detectors
        self.min_length = detectors.min_length if detectors is not None else 0
        self.needed = detectors.features_needed if detectors is not None else 0

    def mask_row(self, payload: bytes) -> bytes:
        """A DataRow payload (after the 5-byte header) with its values masked.

        Returns the very same object when nothing changed. Raises ValueError
        when the payload does not match the plan (column count, truncation,
        a negative length other than -1, a value running past the end, or
        trailing bytes): the caller must fail the session closed.
        """
        size = len(payload)
        if size < 2 or (payload[0] << 8 | payload[1]) != self.count:
            raise ValueError(f"DataRow does not have the {self.count} values of its RowDescription")
        unpack, pos, pieces, copied = _INT32.unpack_from, 2, None, 0
        min_length, needed = self.min_length, self.needed
        for action in self.actions:
            try:
                length = unpack(payload, pos)[0]
            except struct.error:
                raise ValueError("DataRow truncated") from None
            start = pos + 4
            if length < 0:
                if length != -1:
                    raise ValueError(f"DataRow value has length {length}")
                pos = start
                continue
            end = start + length
            if end > size:
                raise ValueError("DataRow value runs past the end of the message")
            if action is None:
                pos = end
                continue
            if action.__class__ is bytes:
                replacement = action
            elif action is SCAN_TEXT:
                if length < min_length or not (found := byte_features(value := payload[start:end]) & needed):
                    pos = end
                    continue
                replacement = self._scan(value, found)
            else:
                replacement = _framed(action(payload, start, end))  # type: ignore[operator]
            if replacement is not None:
                if pieces is None:
                    pieces = []
                pieces.append(payload[copied:pos])
                pieces.append(replacement)
                copied = end
            pos = end
        if pos != size:
            raise ValueError("DataRow has trailing bytes")
        if pieces is None:
            return payload
        pieces.append(payload[copied:])
        return b"".join(pieces)

    def _scan(self, value: bytes, found: int) -> bytes | None:
        """The detectors' slow path: a length-prefixed replacement, or None if nothing was really there."""
        text = value.decode("utf-8", "surrogateescape")
        masked = self.masker._mask_spans(text, found)
        return None if masked is text else _framed(encode_text(masked))


def _framed(value: "bytes | None | _Unchanged") -> bytes | None:
    """A new value with its length word (-1 for NULL); None when it is UNCHANGED."""
    if value is UNCHANGED:
        return None
    if value is None:
        return _NULL_LENGTH
    return _INT32.pack(len(value)) + value  # type: ignore[arg-type]


# --- The session's masker --------------------------------------------------------------

PLAN_CACHE_SIZE = 256


# A string or dollar-quoted literal, or a number long enough to be a card, phone or SSN:
# "['$]|[0-9][0-9 ()+-]{6}", written to start with one character class.
_SECRET_LITERAL = re.compile(r"[$'0-9](?:(?<=[$'])|[0-9 ()+-]{6})")
# The same question for ASCII text without quotes, asked faster: re tests a character class at
# every position (about 55 instructions a character), but finds a literal first character at
# memchr speed. So digits become "0" and " ()+-" become "1", and a long number is "0" and six of
# "01": a pgbench statement costs about a third of the instructions.
_NUMBER_CLASSES = bytes.maketrans(b"0123456789 ()+-", b"000000000011111")  # other bytes stay: none is 0 or 1
_LONG_NUMBER = re.compile(rb"0[01]{6}")


def may_hold_secret(sql: str) -> bool:
    """Whether `sql` has a literal that could hold a secret: what _SECRET_LITERAL finds."""
    if "'" in sql or "$" in sql:
        return True
    if not sql.isascii():
        return _SECRET_LITERAL.search(sql) is not None
    return _LONG_NUMBER.search(sql.encode().translate(_NUMBER_CLASSES)) is not None


class Masker:
    """A session's masking: column rules and detectors, compiled once from the policy.

    `tables` maps a table's oid to (schema, table), and `attributes` maps
    (table oid, attnum) to the column's real name, so that an alias
    ("SELECT password AS p") cannot dodge a column rule. The proxy fills both
    from the upstream's catalog (see `missing_tables`) and may keep adding to
    them. `hash_key` is the deployment's key for the "hash" style.
    """

    def __init__(
        self,
        rules: Sequence[MaskingRule],
        hash_key: bytes,
        tables: Mapping[int, tuple[str, str]] | None = None,
        attributes: Mapping[tuple[int, int], str] | None = None,
    ) -> None:
        self.rules = tuple(rules)
        self.hash_key = hash_key
        self.tables: Mapping[int, tuple[str, str]] = tables if tables is not None else {}
        self.attributes = attributes
        self.column_rules = tuple(
            _ColumnRule(tuple(ColumnPattern(p) for p in rule.columns), Style(rule.style, rule.keep))
            for rule in self.rules
            if rule.columns
        )
        self.qualified = any(not p.any_table for rule in self.column_rules for p in rule.patterns)
        self.json_keys = json_key_prefilter(self.column_rules)
        styles: dict[str, Style] = {}
        for rule in self.rules:
            for name in rule.detectors:
                styles.setdefault(name, Style(rule.style, rule.keep))
        self.detector_styles = styles
        self.detectors = DetectorSet(styles) if styles else None
        self._plans: dict[tuple[Column, ...], RowMasker | None] = {}
        # The last cached plan and its columns tuple: a hot statement's RowDescription is one
        # object, so its results skip hashing the columns again (a list never matches: it can change).
        self._last_plan: tuple[tuple | None, RowMasker | None] = (None, None)
        self._values = _ValueMasker(self)

    @property
    def has_rules(self) -> bool:
        """Whether anything can ever be masked in this session."""
        return bool(self.column_rules) or self.detectors is not None

    # --- column rules ---

    def column_style(self, name: str, table_oid: int = 0, attnum: int = 0) -> Style | None:
        """The style of the first column rule matching a column (by its label or its real name), or None."""
        if table_oid == 0:
            return self.style_for((name,), None, True)
        place = self.tables.get(table_oid)
        real = self.attributes.get((table_oid, attnum)) if self.attributes is not None and attnum > 0 else None
        names = (name,) if real is None or real == name else (name, real)
        return self.style_for(names, place or ("", ""), place is not None)

    def style_for(self, names: tuple[str, ...], place: tuple[str, str] | None, known: bool) -> Style | None:
        """The first column rule's style for a column known by any of `names` in `place` (schema, table).

        `known` is False when the table is not known: qualified patterns then
        match on the column part alone (fail closed).
        """
        for rule in self.column_rules:
            for pattern in rule.patterns:
                for name in names:
                    if pattern.matches(name, place, known):
                        return rule.style
        return None

    def missing_tables(self, columns: Sequence[Column]) -> set[int]:
        """Table oids of these columns whose names the rules need and `tables` / `attributes` lack."""
        if not self.column_rules:
            return set()
        return {c.table_oid for c in columns if c.table_oid and self._lacks_names_of(c)}

    def _lacks_names_of(self, column: Column) -> bool:
        if self.qualified and column.table_oid not in self.tables:
            return True
        attributes = self.attributes
        return attributes is not None and column.attnum > 0 and (column.table_oid, column.attnum) not in attributes

    # --- DataRow ---

    def for_columns(self, columns: Sequence[Column]) -> RowMasker | None:
        """The plan for a RowDescription, or None when no value of it can ever need masking.

        Columns must carry the format their values will arrive in (the
        Bind's result format for an Execute). Plans are cached; a plan
        computed while some table name was unknown is not, so it is redone
        once the proxy has filled `tables`.
        """
        last_columns, plan = self._last_plan
        if columns is last_columns:
            return plan
        key = tuple(columns)
        plan = self._plans.get(key, UNCHANGED)
        if plan is UNCHANGED:
            plan = self._plan(key)
            if self.missing_tables(key):
                return plan
            if len(self._plans) >= PLAN_CACHE_SIZE:
                self._plans.clear()
            self._plans[key] = plan
        self._last_plan = (key, plan)
        return plan  # type: ignore[return-value]

    def _plan(self, columns: tuple[Column, ...]) -> RowMasker | None:
        actions = [self._values.action_for(column) for column in columns]
        if all(action is None for action in actions):
            return None
        return RowMasker(actions, self)

    # --- text ---

    def mask_text(self, value: str) -> str:
        """`value` with every detected span masked (detectors only); the same object if nothing was found."""
        detectors = self.detectors
        if detectors is None or len(value) < detectors.min_length:
            return value
        features = detectors.features(encode_text(value))
        if not features:
            return value
        return self._mask_spans(value, features)

    def mask_statement(self, sql: str) -> str:
        """A statement's text for the recording: `mask_text` on statements whose literals could hold a secret.

        Only a literal can carry a secret in SQL, and SQL keywords and names
        wake the prefilter (capital runs look like key ids), so a statement
        with no string literal and no long number skips the detectors.
        """
        if not may_hold_secret(sql):
            return sql
        return self.mask_text(sql)

    def _mask_spans(self, text: str, features: int | None = None) -> str:
        spans = self.detectors.find(text, features)  # type: ignore[union-attr]
        if not spans:
            return text
        styles, key = self.detector_styles, self.hash_key
        pieces = []
        pos = 0
        for start, end, name in spans:
            pieces.append(text[pos:start])
            pieces.append(mask_span(text[start:end], styles[name], key))
            pos = end
        pieces.append(text[pos:])
        return "".join(pieces)

    def mask_bytes(self, value: bytes) -> bytes:
        """Detectors over text bytes in any ASCII-compatible encoding; the same object if nothing was found."""
        detectors = self.detectors
        if detectors is None:
            return value
        features = detectors.features(value)
        if not features:
            return value
        text = value.decode("utf-8", "surrogateescape")
        masked = self._mask_spans(text, features)
        return value if masked is text else encode_text(masked)

    def mask_json_text(self, text: str) -> str:
        """A JSON document masked inside (detected spans, members named like a masked column); still valid JSON."""
        if not json_may_hit(self, encode_text(text)):
            return text
        return mask_json(self, text)

    # --- styles with this session's key, for copy_masking, error_masking and json_masking ---

    full_mask = FULL_MASK  # for the modules that take the masker rather than import this one

    def mask_value(self, text: str, style: Style) -> str | None:
        """`text` masked whole with `style`; None (SQL NULL) only for the "null" style."""
        return mask_string(text, style, self.hash_key)

    def mask_part(self, text: str, style: Style) -> str:
        """Part of a larger text masked with `style`; "null" acts as "full" there."""
        return mask_span(text, style, self.hash_key)

    # --- COPY and errors (copy_masking and error_masking do the work) ---

    def mask_copy_row(
        self,
        row: bytes,
        columns: Sequence[str | tuple[str, str, str]] | None,
        csv: bool,
        delimiter: bytes | None = None,
    ) -> bytes:
        """One COPY TO STDOUT row (a CopyData payload, text or CSV format); see `mask_copy_row`."""
        return mask_copy_row(self, row, columns, csv, delimiter)

    def mask_error_fields(self, payload: bytes) -> bytes:
        """An ErrorResponse / NoticeResponse payload with row values masked; see `mask_error_fields`."""
        return mask_error_fields(self, payload)


# --- Value actions by type --------------------------------------------------------------


class _ValueMasker:
    """Builds the per-column actions of a plan, by type, format and rule."""

    def __init__(self, masker: Masker) -> None:
        self.masker = masker
        self.key = masker.hash_key
        self.detectors = masker.detectors

    def action_for(self, column: Column) -> PlanAction:
        style = self.masker.column_style(column.name, column.table_oid, column.attnum)
        if style is not None:
            return self.rule_action(column, style)
        if self.detectors is None:
            # Column rules still reach inside JSON: {"password": ...} from row_to_json(users).
            return (
                self._json_scan(column.format == 1) if column.type_oid in JSON_OIDS and self.masker.json_keys else None
            )
        return self.scan_action(column.type_oid, column.format)

    def rule_action(self, column: Column, style: Style) -> PlanAction:
        oid, binary = column.type_oid, column.format == 1
        if style.name == "null" or not (oid in TEXT_OIDS or oid in JSON_OIDS):
            return _constant(None)
        if oid in JSON_OIDS:
            return self._json_rule(style, binary and oid == JSONB_OID)
        if style.name == "full":
            return _constant(FULL_MASK.encode())
        key = self.key

        def action(payload: bytes, start: int, end: int) -> bytes | None:
            text = payload[start:end].decode("utf-8", "surrogateescape")
            masked = mask_string(text, style, key)
            return None if masked is None else encode_text(masked)

        return action

    def _json_rule(self, style: Style, jsonb_binary: bool) -> PlanAction:
        prefix = b"\x01" if jsonb_binary else b""
        if style.name != "hash":
            return _constant(prefix + JSON_FULL_MASK.encode())
        key, skip = self.key, len(prefix)

        def action(payload: bytes, start: int, end: int) -> bytes:
            return prefix + json.dumps(hash_mask(key, payload[start + skip : end])).encode()

        return action

    def scan_action(self, oid: int, fmt: int) -> PlanAction:
        if oid in NON_TEXT_OIDS:
            return None
        if fmt == 0 or oid in TEXT_OIDS:
            return self._json_scan(False) if oid in JSON_OIDS else SCAN_TEXT
        if oid == JSON_OID:
            return self._json_scan(False)
        if oid == JSONB_OID:
            return self._json_scan(True)
        return self._binary_scan(oid)

    def _json_scan(self, jsonb_binary: bool) -> Action:
        masker = self.masker
        skip = 1 if jsonb_binary else 0

        def action(payload: bytes, start: int, end: int) -> bytes | _Unchanged:
            value = payload[start + skip : end]
            if not json_may_hit(masker, value):
                return UNCHANGED
            if skip and payload[start] != 1:
                return _overwrite(masker, payload[start:end])  # an unknown jsonb version: keep its shape
            text = value.decode("utf-8", "surrogateescape")
            masked = mask_json(masker, text)
            if masked is text:
                return UNCHANGED
            return payload[start : start + skip] + encode_text(masked)

        return action

    def _binary_scan(self, oid: int) -> Action:
        masker = self.masker
        features = self.detectors.features  # type: ignore[union-attr]

        def action(payload: bytes, start: int, end: int) -> bytes | _Unchanged:
            value = payload[start:end]
            if not features(value) and 92 not in value:
                return UNCHANGED  # no text anywhere in it can hit, whatever its structure
            masked = _mask_binary(masker, oid, value)
            return UNCHANGED if masked is value else masked

        return action


def _overwrite(masker: Masker, value: bytes) -> bytes | _Unchanged:
    """Detected spans in opaque bytes overwritten with '*', byte for byte, so inner lengths stay valid."""
    text = value.decode("latin-1")
    spans = masker.detectors.find(text) if masker.detectors is not None else []
    if not spans:
        return UNCHANGED
    out = bytearray(value)
    for start, end, _name in spans:
        out[start:end] = b"*" * (end - start)
    return bytes(out)


MAX_NESTING = 16  # arrays of records of arrays...: deeper values are masked as opaque bytes


def _mask_binary(masker: Masker, oid: int, value: bytes, depth: int = 0) -> bytes:
    """A binary-format value of type `oid`, masked by its structure; the same object if unchanged."""
    if oid in NON_TEXT_OIDS:
        return value
    if depth > MAX_NESTING:
        overwritten = _overwrite(masker, value)
        return value if overwritten is UNCHANGED else overwritten  # type: ignore[return-value]
    if oid in TEXT_OIDS:
        return masker.mask_bytes(value)
    if oid == JSON_OID or (oid == JSONB_OID and value[:1] == b"\x01"):
        skip = 1 if oid == JSONB_OID else 0
        text = value[skip:].decode("utf-8", "surrogateescape")
        masked = masker.mask_json_text(text)
        return value if masked is text else value[:skip] + encode_text(masked)
    if oid == RECORD_OID:
        return _mask_binary_record(masker, value, depth)
    if oid in TEXT_ARRAY_OIDS:
        return _mask_binary_array(masker, value, depth)
    overwritten = _overwrite(masker, value)
    return value if overwritten is UNCHANGED else overwritten  # type: ignore[return-value]


def _mask_binary_array(masker: Masker, value: bytes, depth: int) -> bytes:
    if len(value) < 12:
        raise ValueError("binary array too short")
    ndim, _flags, elem = _ARRAY_HEADER.unpack_from(value, 0)
    head = 12 + 8 * ndim
    if not 0 <= ndim <= 6 or len(value) < head:
        raise ValueError("binary array with a bad header")
    count = 1 if ndim else 0
    for dim in range(ndim):
        count *= _INT32.unpack_from(value, 12 + 8 * dim)[0]
    if count < 0:
        raise ValueError("binary array with a negative dimension")
    pieces, pos, changed = [value[:head]], head, False
    for _ in range(count):
        new, pos, was = _element(masker, elem, value, pos, depth)
        pieces.append(new)
        changed = changed or was
    if pos != len(value):
        raise ValueError("binary array with trailing bytes")
    return b"".join(pieces) if changed else value


def _mask_binary_record(masker: Masker, value: bytes, depth: int) -> bytes:
    if len(value) < 4:
        raise ValueError("binary record too short")
    count = _INT32.unpack_from(value, 0)[0]
    pieces, pos, changed = [value[:4]], 4, False
    for _ in range(count):
        if pos + 4 > len(value):
            raise ValueError("binary record truncated")
        oid = _UINT32.unpack_from(value, pos)[0]
        new, end, was = _element(masker, oid, value, pos + 4, depth)
        pieces.append(value[pos : pos + 4] + new)
        pos, changed = end, changed or was
    if pos != len(value):
        raise ValueError("binary record with trailing bytes")
    return b"".join(pieces) if changed else value


def _element(masker: Masker, oid: int, value: bytes, pos: int, depth: int) -> tuple[bytes, int, bool]:
    """One length-prefixed element at pos: (its new length + bytes, the position after it, changed)."""
    if pos + 4 > len(value):
        raise ValueError("binary element truncated")
    length = _INT32.unpack_from(value, pos)[0]
    if length < 0:
        if length != -1:
            raise ValueError(f"binary element has length {length}")
        return _NULL_LENGTH, pos + 4, False
    end = pos + 4 + length
    if end > len(value):
        raise ValueError("binary element runs past its value")
    element = value[pos + 4 : end]
    masked = _mask_binary(masker, oid, element, depth + 1)
    if masked is element:
        return value[pos:end], end, False
    return _INT32.pack(len(masked)) + masked, end, True
