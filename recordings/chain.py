"""The recording format: hash-chained JSON Lines, and its verification.

No Django, so that the gateway's hot path, the verifier and any offline
tool share one definition. Line 1 is an asciicast v2 compatible header
object, every other line an event array `[t, kind, data]`. Each stored line
carries its chain link, appended to the compact JSON text without
re-serializing it:

    event:  body[:-1] + ',"<link>"]'
    header: body[:-1] + ',"chain":"<link>"}'

where link_i = SHA256(link_{i-1} || body_i) and link_0 is a per-session seed,
so a line cannot be moved to another recording either. Verification cuts the
link off the raw text, recomputes it and compares, so what is hashed is
exactly what is on disk.
"""

import base64
import binascii
import hashlib
import json
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

import orjson

SEED_PREFIX = b"gatehouse-recording-v1:"
SEGMENT_BYTES = 1 << 20  # encode_events joins lines into pieces of about this size
LINK_HEX_LENGTH = 64


def _json_fallback(value: object) -> str:
    """Bytes as base64, anything else as its str(): a stray type must not lose a batch."""
    if isinstance(value, bytes | bytearray | memoryview):
        return base64.b64encode(value).decode()
    return str(value)


# One encoder, made once: json.dumps with non-default options builds a new
# encoder on every call, which shows in the per-line cost.
_ENCODER = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, default=_json_fallback)
_ASCII_ENCODER = json.JSONEncoder(separators=(",", ":"), ensure_ascii=True, default=_json_fallback)
_MISMATCH_REASON = "chain link mismatch: this line was edited, or a line before it deleted or moved"
_HEX_DIGITS = frozenset("0123456789abcdef")
_HEADER_SUFFIX_START = ',"chain":"'
_EVENT_SUFFIX_START = ',"'
# A stored line from its body without the closing bracket, and its link in hex.
_HEADER_LINE = b"%s" + _HEADER_SUFFIX_START.encode() + b'%s"}\n'
_EVENT_LINE = b"%s" + _EVENT_SUFFIX_START.encode() + b'%s"]\n'
# Length of what follows the body's closing bracket in a stored line.
_HEADER_SUFFIX_LENGTH = len(_HEADER_SUFFIX_START) + LINK_HEX_LENGTH + 2
_EVENT_SUFFIX_LENGTH = len(_EVENT_SUFFIX_START) + LINK_HEX_LENGTH + 2


def canonical_session_id(session_id: object) -> str:
    """The session id as the chain and the seal use it: a lowercase, dashed UUID."""
    return str(uuid.UUID(str(session_id)))


def chain_seed(session_id: object) -> bytes:
    """link_0 of a session's chain."""
    return hashlib.sha256(SEED_PREFIX + canonical_session_id(session_id).encode()).digest()


def _serialize(obj: dict | list) -> bytes:
    try:
        # orjson is several times faster than json and writes the same compact UTF-8.
        return orjson.dumps(obj, default=_json_fallback)
    except orjson.JSONEncodeError:
        pass  # a lone surrogate or an integer over 64 bits: the stdlib handles both
    try:
        return _ENCODER.encode(obj).encode()
    except UnicodeEncodeError:
        # A lone surrogate (from bytes decoded with surrogateescape) cannot be
        # UTF-8; the ASCII form escapes it and is still valid JSON.
        return _ASCII_ENCODER.encode(obj).encode()


class ChainWriter:
    """The running state of one recording's chain: the current link and line count.

    `encode_line` is the only way to produce a stored line; it advances the
    chain, so lines must be written in the order they were encoded.
    """

    __slots__ = ("_link", "line_count", "session_id")

    def __init__(self, session_id: object, link: bytes | None = None, line_count: int = 0) -> None:
        self.session_id = canonical_session_id(session_id)
        self._link = link if link is not None else chain_seed(self.session_id)
        self.line_count = line_count

    @property
    def head(self) -> str:
        """The current link as hex (the seed's hex before any line)."""
        return self._link.hex()

    def snapshot(self) -> tuple[bytes, int]:
        """The state, to restore with `restore` if encoded lines never reach the disk."""
        return self._link, self.line_count

    def restore(self, state: tuple[bytes, int]) -> None:
        self._link, self.line_count = state

    def encode_line(self, obj: dict | list) -> bytes:
        """The stored form of `obj` plus b"\\n"; advances the chain.

        The first line must be the header object, every later one an event
        array; neither may be empty, and the header may not have a "chain" key.
        """
        expect_header = self.line_count == 0
        if expect_header and not (isinstance(obj, dict) and obj and "chain" not in obj):
            raise ValueError("the first line must be a non-empty header object without a 'chain' key")
        if not expect_header and not (isinstance(obj, list) and obj):
            raise ValueError("lines after the header must be non-empty event arrays")
        body = _serialize(obj)
        link = hashlib.sha256(self._link + body).digest()
        self._link = link
        self.line_count += 1
        return (_HEADER_LINE if expect_header else _EVENT_LINE) % (body[:-1], binascii.hexlify(link))

    def encode_events(self, events: Iterable[tuple[float, str, object]]) -> list[bytes]:
        """The stored lines of `(t, kind, data)` events, after the header, in segments; advances the chain.

        The same lines as `encode_line([t, kind, data])` one by one (t rounded to the microsecond),
        in one loop: this runs for every event a gateway records. The lines come joined into segments
        of about SEGMENT_BYTES, not one bytes object, so a batch of 100 MB of terminal output is not
        held twice while it is joined.
        """
        if self.line_count == 0:
            raise ValueError("the first line must be the header")
        link, sha256, hexlify, segments, parts, size, count = self._link, hashlib.sha256, binascii.hexlify, [], [], 0, 0
        for t, kind, data in events:
            # round(x * 1e6) / 1e6, not round(x, 6): same value, without a trip through decimal text.
            event = (round(t * 1e6) / 1e6, kind, data)
            try:
                body = orjson.dumps(event, default=_json_fallback)
            except orjson.JSONEncodeError:
                body = _serialize(list(event))  # what orjson refuses, the stdlib writes (see _serialize)
            link = sha256(link + body).digest()
            parts.append(_EVENT_LINE % (body[:-1], hexlify(link)))
            size += len(body)
            count += 1
            if size >= SEGMENT_BYTES:
                segments.append(b"".join(parts))
                parts, size = [], 0
        if parts:
            segments.append(b"".join(parts))
        self._link = link
        self.line_count += count
        return segments


class Problem(StrEnum):
    """What verification found; the names are stable for callers to branch on."""

    OK = "ok"
    EMPTY = "empty"
    INCOMPLETE = "incomplete"
    NOT_UTF8 = "not_utf8"
    NO_LINK = "no_link"
    BAD_JSON = "bad_json"
    BAD_HEADER = "bad_header"
    BAD_EVENT = "bad_event"
    MISMATCH = "mismatch"
    # Found by comparing with a seal (recordings.actions), not by the chain alone.
    MISSING_FILE = "missing_file"
    TRUNCATED = "truncated"
    EXTRA_LINES = "extra_lines"
    HEAD_MISMATCH = "head_mismatch"
    BAD_SEAL = "bad_seal"
    UNSEALED = "unsealed"


@dataclass(frozen=True)
class VerifyResult:
    """The outcome of checking a chain.

    `line_count`, `chain_head` and `valid_bytes` describe the prefix that
    verified (all of it when `ok`); `bad_line` is 1-based. `valid_bytes` is
    where a recovery cuts an incomplete last line.
    """

    ok: bool
    line_count: int
    chain_head: str
    valid_bytes: int = 0
    bad_line: int | None = None
    problem: Problem = Problem.OK
    reason: str = ""

    def describe(self) -> str:
        """One human line: "line K: reason", or the reason alone."""
        if self.bad_line is None:
            return self.reason
        return f"line {self.bad_line}: {self.reason}"


def _split_link(text: str, is_header: bool) -> tuple[str, str] | None:
    """(body, link hex) of a stored line, or None if it carries no well-formed link."""
    if is_header:
        start, closing, suffix_length = _HEADER_SUFFIX_START, "}", _HEADER_SUFFIX_LENGTH
    else:
        start, closing, suffix_length = _EVENT_SUFFIX_START, "]", _EVENT_SUFFIX_LENGTH
    if len(text) <= suffix_length or not text.endswith('"' + closing):
        return None
    suffix = text[-suffix_length:]
    link = suffix[len(start) : -2]
    if not suffix.startswith(start) or not _HEX_DIGITS.issuperset(link):
        return None
    return text[:-suffix_length] + closing, link


def _check_shape(body: str, is_header: bool) -> tuple[Problem, str] | None:
    """A problem with the line's JSON, or None if it is a well-formed header or event."""
    try:
        value = json.loads(body)
    except ValueError:
        return Problem.BAD_JSON, "not valid JSON"
    if is_header:
        if not isinstance(value, dict) or value.get("version") != 2:
            return Problem.BAD_HEADER, "not a recording header (asciicast v2 object)"
        return None
    if not (
        isinstance(value, list)
        and len(value) == 3
        and isinstance(value[0], int | float)
        and not isinstance(value[0], bool)
        and isinstance(value[1], str)
    ):
        return Problem.BAD_EVENT, "not an event [t, kind, data]"
    return None


def _check_line(text: str, is_header: bool, link: bytes) -> tuple[Problem, str] | bytes:
    """The line's link as bytes if it verifies after `link`, else (problem, reason)."""
    split = _split_link(text, is_header)
    if split is None:
        what = "header" if is_header else "event"
        return Problem.NO_LINK, f"missing or malformed chain link (expected a chained {what})"
    body, stored = split
    shape_problem = _check_shape(body, is_header)
    if shape_problem is not None:
        return shape_problem
    computed = hashlib.sha256(link + body.encode()).digest()
    if computed.hex() != stored:
        return Problem.MISMATCH, _MISMATCH_REASON
    return computed


def verify_lines(session_id: object, lines: Iterable[bytes | str]) -> VerifyResult:
    """Check a recording's chain, line by line, as read from the file.

    `lines` keep their line endings (iterating a file opened in "rb" does
    that). Stops at the first bad line. A final line without its newline is
    reported as Problem.INCOMPLETE: the writer died mid-write.
    """
    link = chain_seed(session_id)
    count = 0
    valid_bytes = 0
    for raw in lines:
        data = raw.encode() if isinstance(raw, str) else raw
        outcome = _check_raw_line(data, count == 0, link)
        if isinstance(outcome, tuple):
            problem, reason = outcome
            return VerifyResult(False, count, link.hex(), valid_bytes, count + 1, problem, reason)
        link = outcome
        count += 1
        valid_bytes += len(data)
    if count == 0:
        return VerifyResult(False, 0, link.hex(), 0, 1, Problem.EMPTY, "empty recording: no header line")
    return VerifyResult(True, count, link.hex(), valid_bytes)


def _check_raw_line(data: bytes, is_header: bool, link: bytes) -> tuple[Problem, str] | bytes:
    if not data.endswith(b"\n"):
        return Problem.INCOMPLETE, "incomplete last line (no newline: the write was cut short)"
    try:
        text = data[:-1].decode()
    except UnicodeDecodeError:
        return Problem.NOT_UTF8, "not valid UTF-8"
    return _check_line(text, is_header, link)


def verify_file(session_id: object, path: Path) -> VerifyResult:
    """`verify_lines` over a recording file (raises OSError if it cannot be read)."""
    with path.open("rb") as handle:
        return verify_lines(session_id, handle)
