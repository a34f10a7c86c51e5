"""What a SQL query string does, statement by statement, read by the real PostgreSQL parser.

`classify(sql)` parses with pglast (libpg_query: the server's own grammar
and lexer), so comments, odd case, quoted identifiers, U&"..." escapes,
dollar quoting and E'' strings are seen exactly as the server sees them.
Nothing here matches SQL text with regexes to decide what a statement does.

Speed. A cold parse costs tens of microseconds; a proxy classifies every
statement, so results are cached in three tiers, all shared by every
session (facts do not depend on the policy):

1. the exact query text;
2. a "shape" key: for texts made only of a small safe token set (see
   `_shape_key`), the text with each '...' string and each decimal number
   replaced by a placeholder, computed with two regex substitutions;
3. libpg_query's normalized text (`pglast.parser.normalize`): the query
   text with each constant replaced by $n, everything else verbatim.

A cache key may be shared only by texts that differ solely in literal
values, so a key never maps to facts of a structurally different statement.
That is why the normalized *text* is used and not libpg_query's fingerprint:
the fingerprint also ignores prepared-statement names (PREPARE a / PREPARE b
share one), column aliases and the length of IN lists. Facts that do depend on a literal value
(`EXPLAIN (ANALYZE 0)` against `(ANALYZE 1)`) are marked and kept out of
tiers 2 and 3. Cached facts are templates: each call gets its own statement
texts (`classify_shared`), never another call's.

On a miss, `parse_sql_json` + `orjson.loads` (about 4 + 5 us for a short
statement) is many times cheaper than pglast's Python AST (about 90 us),
so the facts are read from libpg_query's JSON tree; the walk over that tree
is in sql_tree, which also defines StatementFacts and KINDS (re-exported here).
"""

import json
import re
import sys
from dataclasses import dataclass, replace

import orjson
from pglast import parser as pg_parser

from connections.policy.sql_tree import KINDS, StatementFacts, bare_kind, read_tree

__all__ = [
    "DANGEROUS_FUNCTIONS",
    "KINDS",
    "MAX_SQL_CHARS",
    "StatementFacts",
    "UnparseableSQL",
    "bare_kind",
    "classify",
    "classify_known_shape",
    "classify_shared",
    "clear_caches",
    "with_text",
]

# Glob patterns (lower case, matched against bare function names) of built-in
# functions a bot should not call: they reach outside the database's tables,
# or run SQL text the parser cannot see.
DANGEROUS_FUNCTIONS = (
    # Server files: read, list, stat, and the adminpack writers.
    "pg_read_file", "pg_read_binary_file", "pg_stat_file",
    "pg_ls_*",  # pg_ls_dir, pg_ls_logdir, pg_ls_waldir, pg_ls_tmpdir, ...
    "pg_file_*", "pg_logdir_ls",
    # Server-side large-object file I/O. (lo_from_bytea, lo_get, lo_put only move
    # bytes between a query and pg_largeobject; they are in, not out, so not listed.)
    "lo_import", "lo_export",
    # Connections to any server, this one included, with their own SQL text.
    "dblink*",
    # Other sessions and the server itself.
    "pg_terminate_backend", "pg_cancel_backend", "pg_reload_conf", "pg_rotate_logfile",
    "pg_promote",
    # Replication slots stream every row change of the database and pin WAL.
    "pg_*replication_slot*", "pg_logical_slot_*",
    # SQL passed as a string, or whole tables named by a string: the parser never
    # sees what runs, so table rules cannot apply.
    "query_to_xml*", "query_to_xmlschema", "table_to_xml*", "schema_to_xml*",
    "database_to_xml*", "ts_stat", "ts_rewrite",
)  # fmt: skip
# Deliberately not listed: set_config (it is SET by another name and pg_dump
# calls it; deny it by name when needed), pg_sleep (statement_timeout's job),
# current_setting (read only), cursor_to_xml (the cursor's query was
# classified when it was declared).

MAX_SQL_CHARS = 32 * 1024 * 1024  # a longer query string is refused: fail closed
_DEEP_RECURSION_LIMIT = 200_000  # libpg_query's own stack check stops far below this

_EXACT_MAX_CHARS = 4096  # texts cached by exact value
_KEYED_MAX_CHARS = 16384  # texts cached by shape or normalized key
_CACHE_MAX_ENTRIES = 8192
_LARGE_MAX_CHARS = 2 * 1024 * 1024  # longer texts are parsed every time
_LARGE_MAX_ENTRIES = 8


class UnparseableSQL(Exception):
    """The parser rejected the query string; the message is the parser's."""


@dataclass(frozen=True)
class _Entry:
    """A cached classification: facts templates and how to cut texts for a look-alike query."""

    facts: tuple[StatementFacts, ...]
    texts: tuple[str, ...]
    head: int  # chars before the only statement (-1: several statements, use split)
    tail: int  # chars after it


def classify(sql: str) -> tuple[StatementFacts, ...]:
    """Facts of every statement of `sql`, in order; () for an empty or comment-only string.

    Raises UnparseableSQL when the parser rejects the text.
    """
    facts, texts = classify_shared(sql)
    return tuple(with_text(one, text) for one, text in zip(facts, texts, strict=True))


def classify_shared(sql: str) -> tuple[tuple[StatementFacts, ...], tuple[str, ...]]:
    """The fast form of `classify`: (facts, statement texts).

    The facts may be cached objects shared with other callers whose `text`
    is that of an earlier look-alike statement; the texts are this call's.
    """
    entry = _EXACT.get(sql)
    if entry is not None:
        return entry.facts, entry.texts
    _check_input(sql)
    if len(sql) > _KEYED_MAX_CHARS:
        return _classify_large(sql)
    shape = _cached_shape_key(sql)
    if shape is not None:
        entry = _SHAPES.get(shape)
        if entry is not None and (texts := _texts_like(entry, sql)) is not None:
            return entry.facts, texts
    normalized = _normalized_key(sql)
    if normalized is not None:
        entry = _NORMALIZED.get(normalized)
        if entry is not None and (texts := _texts_like(entry, sql)) is not None:
            if shape is not None:
                _put(_SHAPES, shape, entry)
            return entry.facts, texts
    facts, texts, head, tail, literal_bound = _parse(sql)
    if not literal_bound:
        entry = _Entry(facts, texts, head, tail)
        if shape is not None:
            _put(_SHAPES, shape, entry)
        if normalized is not None:
            _put(_NORMALIZED, normalized, entry)
    return _remember_exact(sql, facts, texts)


def classify_known_shape(sql: str) -> tuple[StatementFacts, str] | None:
    """(facts, statement text) of a one-statement `sql` whose shape is cached; None if it is not.

    The hot path of a statement that runs again and again with new numbers
    (pgbench -S): a translate and two look-ups. `classify_shared` would find
    the same entry the same way; this skips its exact-text look-up and input
    checks, which a text sharing a cached shape passes by construction (shape
    keys are ASCII, shorter than _KEYED_MAX_CHARS and free of NUL bytes).
    The facts are shared, as with `classify_shared`.
    """
    if not sql.isascii():
        return None
    shape = _FOLDED.get(sql.encode().translate(_FOLD_DIGITS))
    entry = _SHAPES.get(shape) if shape is not None else None
    if entry is None or entry.head < 0:
        return None
    return entry.facts[0], sql[entry.head : len(sql) - entry.tail].strip()


def clear_caches() -> None:
    """Forget every cached classification (tests and benchmarks measure cold paths with it)."""
    _EXACT.clear()
    _SHAPES.clear()
    _FOLDED.clear()
    _NORMALIZED.clear()
    _LARGE.clear()


def with_text(facts: StatementFacts, text: str) -> StatementFacts:
    """`facts` carrying `text` (and its prepared body too), copied only if the text differs."""
    if facts.text == text:
        return facts
    prepared = facts.prepared and with_text(facts.prepared, text)
    return replace(facts, text=text, prepared=prepared)


# --- caches -----------------------------------------------------------------

_EXACT: dict[str, _Entry] = {}
_SHAPES: dict[str, _Entry] = {}
_NORMALIZED: dict[str, _Entry] = {}
_LARGE: dict[str, _Entry] = {}  # a few big statements (bulk INSERTs of one batch size), by normalized text
_FOLDED: dict[bytes, str] = {}  # text with its digits folded to "0" -> its shape key (see _cached_shape_key)


def _put(cache: dict, key: str, entry: _Entry) -> None:
    if len(cache) >= _CACHE_MAX_ENTRIES:
        cache.clear()  # a bounded cache; a burst of one-off texts costs one refill
    cache[key] = entry


def _remember_exact(sql: str, facts: tuple, texts: tuple) -> tuple[tuple, tuple]:
    if len(sql) <= _EXACT_MAX_CHARS:
        _put(_EXACT, sql, _Entry(facts, texts, -1, -1))
    return facts, texts


def _classify_large(sql: str) -> tuple[tuple[StatementFacts, ...], tuple[str, ...]]:
    """A long query string: a full parse costs about 0.6 s a megabyte, normalize about 50 ms."""
    normalized = _normalized_key(sql) if len(sql) <= _LARGE_MAX_CHARS else None
    entry = _LARGE.get(normalized) if normalized is not None else None
    if entry is not None and (texts := _texts_like(entry, sql)) is not None:
        return entry.facts, texts
    facts, texts, head, tail, literal_bound = _parse(sql)
    if normalized is not None and not literal_bound:
        if len(_LARGE) >= _LARGE_MAX_ENTRIES:
            _LARGE.clear()
        _LARGE[normalized] = _Entry(facts, (), head, tail)
    return facts, texts


def _texts_like(entry: _Entry, sql: str) -> tuple[str, ...] | None:
    """This text's statement texts, for a text that shares `entry`'s key (None: parse it)."""
    if not entry.facts:
        return ()
    if entry.head >= 0:
        # One statement: what precedes and follows it holds no literal, so its
        # length is the same in every text with this key.
        return (sql[entry.head : len(sql) - entry.tail].strip(),)
    texts = tuple(text.strip() for text in pg_parser.split(sql))
    return texts if len(texts) == len(entry.facts) else None


def _check_input(sql: str) -> None:
    if "\x00" in sql:
        raise UnparseableSQL("the query text contains a NUL byte")
    if len(sql) > MAX_SQL_CHARS:
        raise UnparseableSQL(f"the query text is longer than {MAX_SQL_CHARS} characters")
    if not sql.isascii():
        try:
            sql.encode()
        except UnicodeEncodeError as exc:  # lone surrogates, from bytes that were not UTF-8
            raise UnparseableSQL(f"the query text is not valid UTF-8: {exc}") from None


# Shape keys. A text qualifies only if, once its '...' strings (no backslash)
# and decimal numbers (not touching a word character, "." or "$") are replaced
# by \x01 and \x02, what is left is plain ASCII words, whitespace, simple
# "quoted" identifiers, a small operator set and at most a final ";", with no
# "--" or "/*" and no word character glued to a string (E'', B'', X'', N'').
# In such a text the server's lexer is in its normal state at every
# placeholder, so each one stands for exactly one literal token (adjacent
# \x01\x01 is one literal with a doubled quote) and everything else is verbatim.
_STRINGS = re.compile(r"'[^'\\]*'")
_NUMBERS = re.compile(r"\b[0-9]+(?:\.[0-9]+)?(?![\w.$])", re.ASCII)
_SHAPE = re.compile(r"[A-Za-z0-9_ \t\n\r\f=<>!(),.*+\-/:%|\[\]^~@#\"\x01\x02]*(?:;[ \t\n\r\f]*)?")
_QUOTED_IDENTIFIER = re.compile(r'"[A-Za-z_][A-Za-z0-9_]*"')
_GLUED_STRING = re.compile(r"[A-Za-z0-9_]\x01")


def _shape_key(sql: str) -> str | None:
    if "\x01" in sql or "\x02" in sql:
        return None
    key = _NUMBERS.sub("\x02", _STRINGS.sub("\x01", sql))
    if _SHAPE.fullmatch(key) is None or "--" in key or "/*" in key:
        return None
    if "\x01" in key and _GLUED_STRING.search(key) is not None:
        return None
    if '"' in key and '"' in _QUOTED_IDENTIFIER.sub("", key):
        return None
    return key


# Texts that differ only in their digits have the same shape key when every digit lies in a
# literal: each step of _shape_key sees digits only as digits, never their values. So a text's
# key is cached under the text with its digits folded to "0", if the key holds no digit (a digit
# left in the key is part of a name, such as t1, and t1 and t2 are not one shape). A hot
# statement with a new number each time (pgbench -S) then costs a translate and a lookup.
# (classify_shared has refused text that is not UTF-8 before it gets here.)
_FOLD_DIGITS = bytes.maketrans(b"123456789", b"000000000")
_DIGIT = re.compile("[0-9]")


def _cached_shape_key(sql: str) -> str | None:
    folded = sql.encode().translate(_FOLD_DIGITS)  # on bytes: ten times faster than str.translate
    key = _FOLDED.get(folded)
    if key is None:
        key = _shape_key(sql)
        if key is not None and _DIGIT.search(key) is None:
            if len(_FOLDED) >= _CACHE_MAX_ENTRIES:
                _FOLDED.clear()
            _FOLDED[folded] = key
    return key


def _normalized_key(sql: str) -> str | None:
    try:
        return pg_parser.normalize(sql)
    except (pg_parser.ParseError, UnicodeError, ValueError):
        return None  # the full parse below reports it


# --- the cold path ------------------------------------------------------------


def _parse(sql: str) -> tuple[tuple[StatementFacts, ...], tuple[str, ...], int, int, bool]:
    """(facts, texts, head, tail, literal_bound) of a full parse."""
    try:
        tree_json = pg_parser.parse_sql_json(sql)
    except pg_parser.ParseError as exc:
        raise UnparseableSQL(str(exc)) from None
    except (UnicodeError, ValueError) as exc:
        raise UnparseableSQL(f"the query text is not valid UTF-8: {exc}") from None
    try:
        return read_tree(sql, orjson.loads(tree_json))  # orjson: about 5 us here, json: 13
    except (orjson.JSONDecodeError, RecursionError):
        pass
    # Deeply nested expressions (a + b + ... with hundreds of terms) exceed
    # orjson's 1024 levels and Python's default recursion limit in the walk.
    # libpg_query already refused anything deeper than its stack check allows.
    old_limit = sys.getrecursionlimit()
    sys.setrecursionlimit(max(old_limit, _DEEP_RECURSION_LIMIT))
    try:
        return read_tree(sql, json.loads(tree_json))
    except (RecursionError, ValueError):
        raise UnparseableSQL("the statement is nested too deeply to inspect") from None
    finally:
        sys.setrecursionlimit(old_limit)
