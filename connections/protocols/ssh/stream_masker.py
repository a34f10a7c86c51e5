"""Masking terminal output (exec and shell stdout/stderr) with the content detectors, as a stream.

A `StreamMasker` takes the session's masking rules that name detectors
(connections.policy.masking.Masker compiles them; spans are masked with
`mask_span` and the first rule's style, as in a PostgreSQL result). `feed`
returns the bytes that can leave now, masked; it holds back only a short
tail that may be the start of a secret continuing in the next chunk.
`flush` releases the tail, masked; the engine calls it `hold_seconds` after
output stops, and at end of file. Only what these two return is recorded.

What is held, and why the result does not depend on chunking
---------------------------------------------------------------
No detector's hit (other than a private key block) contains a *separator*:
a control character, or one of ``! " # $ & ' * , : ; < > ? [ \\ ] ^ ` { | }``,
or a non-ASCII character that is not a letter or digit. So a position right
after a separator is a *cut*: nothing found later can reach back across it.
Blanks right after a cut are cuts too, since no hit starts with a blank.
`feed` releases everything up to the last cut and holds the rest: usually a
few bytes of a word, never more than `MAX_HELD`. Each released block is
scanned with the 1 KiB of output before it as context (the look-behind of
the card, IBAN and token rules, the "aws"/"secret" label 80 characters
before an AWS secret key), so a secret split at any byte across chunks that
arrive within the hold window is masked exactly as if it came in one chunk.
Prompts ("$ ", "# ", "> ", "Password: ", "[y/N] ") end at a cut, so they are
not held.

Private key blocks ("-----BEGIN ... PRIVATE KEY-----" to its END line)
span lines: from its BEGIN line, output is held until the END line, up to
`MAX_KEY_BLOCK` (16 KiB: an 8192-bit RSA key is 6.4 KiB). A longer block is
masked conservatively: "********" for the whole of it, whatever the rule's
style, dropping everything up to its END line or `MAX_KEY_SWALLOW` bytes
after its BEGIN. A block still open when `flush` runs is masked as far as
it got, and what follows is dropped the same way (fail closed: the rest of
the key may still come).

Terminal escape sequences (CSI such as ESC[31m, OSC such as ESC]0;title BEL,
DCS/APC strings, ESC[?2004h) and other control characters are never altered
or split: an unfinished sequence at the end of a chunk is held (a string
sequence up to `MAX_STRING_HOLD`, then passed through as opaque until its
terminator). Detectors see each sequence as a single separator character, so
a secret with colour codes around it (not inside it) is found; if a masked
span contains sequences (a key block drawn by a pager), they are kept, in
order, after the mask.

Bytes are scanned as UTF-8; a character split across chunks is held whole,
and invalid UTF-8 passes through unchanged outside masked spans. Bulk output
costs one prefilter pass (`DetectorSet.features`, on bytes) when nothing can
match; the detectors run, on decoded text, only on blocks it lets through.
On the development machine (bench/stream_masker_cost.py, 32 KiB chunks,
every detector): about 350 MB/s on text the prefilter clears, about 38 MB/s
on `ls -l` and log lines, which wake the card, SSN and AWS rules (the
detectors scan ASCII blocks only where a hit could fit, see
connections.policy.detectors), and about 16 MB/s on random bytes (not ASCII:
scanned whole).

Trade-offs, honestly:

- Interactive echo is not held. A chunk of at most `ECHO_BYTES` bytes with
  no control character, arriving when nothing is held and the line already
  shows something (a prompt), is released at once: it is a key's echo, and
  holding every letter typed for `hold_seconds` makes a shell feel broken.
  So a secret that arrives a few bytes at a time with pauses (typed on an
  interactive echo, or written a character at a time by a program) is not
  masked in the echo. What the line editor records as the command, and the
  command's output, are masked as usual. A chunk that starts a line, or
  arrives while something is held, gets no such exception.
- A pause in output longer than `hold_seconds`, or a run of more than
  `MAX_HELD` bytes with no separator, is a cut that content alone would not
  make: the part of a secret after it is still masked (the next scan looks
  back), the part before it may have left unmasked.
- Text inside string sequences (window titles, hyperlink targets, OSC 52
  clipboard data, inline images) is not scanned: masking it would alter the
  sequence.
- AWS's "the value is exactly the 40-character key" rule needs a value's
  bounds, which a stream does not have: a bare 40-character AWS secret key
  with neither '/' nor '+' and no "aws"/"secret" label in the 80 characters
  before it is not found in terminal output.
- Masking cannot keep byte lengths: binary output (a tar stream through
  exec) that contains a detectable secret is changed where it matches.
"""

import bisect
import re
from collections.abc import Sequence

from connections.policy.detectors import DetectorSet, encode_text
from connections.policy.masking import FULL_MASK, Masker, mask_span
from connections.policy.rules import MaskingRule

HOLD_SECONDS = 0.05  # how long the engine waits for more output before it flushes a held tail
MAX_HELD = 8 * 1024  # the longest tail held for a secret that may continue
MAX_KEY_BLOCK = 16 * 1024  # the longest private key block masked with its rule's style
MAX_KEY_SWALLOW = 64 * 1024  # output dropped after a BEGIN line at most, waiting for its END line
MAX_STRING_HOLD = 4 * 1024  # an unterminated OSC/DCS string held at most; then passed through as opaque
MAX_SEQUENCE_HOLD = 64  # an unfinished CSI or other escape sequence held at most
ECHO_BYTES = 4  # a chunk this short, with no control character, may be a key's echo
CONTEXT_BYTES = 1024  # output before a block that its scan sees
KEY_TAIL = 256  # characters of a dropped key block kept to find an END line split across chunks

_PAD = "\x00" * 48  # before the context: no scanned text is ever exactly a 40-character value
_KEY_HEAD = "-----BEGIN PRIVATE KEY-----\n"  # lets the private_key detector find where a block ends

# --- Bytes: separators, escape sequences -----------------------------------------------------

_SEPARATOR, _BLANK, _OTHER = 0, 1, 2
_SEPARATOR_BYTES = bytes(range(0x20)).replace(b"\t", b"") + b"\x7f" + b"!\"#$&'*,:;<>?[\\]^`{|}"


def _class_table() -> bytes:
    table = bytearray([_OTHER] * 256)
    for byte in _SEPARATOR_BYTES:
        table[byte] = _SEPARATOR
    table[0x20] = table[0x09] = _BLANK
    return bytes(table)


_CLASSES = _class_table()
_BLANKS = re.compile(rb"[ \t]*")
_NON_ASCII = re.compile(rb"[\x80-\xff]")
_ECHO_BREAK = re.compile(rb"[\x00-\x1f\x7f]")

# A complete escape sequence: a string (OSC, DCS, SOS, PM, APC) to BEL or ST, a CSI, or another escape.
_STRING_B = rb"\x1b[\]PX^_][^\x07\x1b]*(?:\x07|\x1b\\)"
_CSI_B = rb"\x1b\[[\x30-\x3f]*[\x20-\x2f]*[\x40-\x7e]"
_OTHER_ESCAPE_B = rb"\x1b(?:[\x20-\x2f]+[\x30-\x7e]|[\x30-\x4f\x51-\x57\x59\x5a\x5c\x60-\x7e])"
_SEQUENCE = re.compile(b"|".join((_STRING_B, _CSI_B, _OTHER_ESCAPE_B)))
_TOKEN_B = re.compile(b"|".join((_STRING_B, _CSI_B, _OTHER_ESCAPE_B, rb"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")))
# An escape sequence that has begun and not ended at the end of the buffer.
_OPEN = re.compile(rb"\x1b(?:\[[\x30-\x3f]*[\x20-\x2f]*|[\]PX^_][^\x07\x1b]*|[\x20-\x2f]*)\Z")
_OPEN_STRING_AT_ST = re.compile(rb"\x1b[\]PX^_][^\x07\x1b]*\x1b\Z")  # a string whose ST has begun
_STRING_INTRODUCERS = b"]PX^_"

# --- Text: the same, on decoded output ------------------------------------------------------

# Scanned text has each escape sequence and control character (but tab, CR and LF) as one NUL.
_TOKEN = re.compile(_TOKEN_B.pattern.decode("latin-1"))
_CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
# A non-ASCII character that is not a word character (and not an undecodable byte) ends any hit.
_UNICODE_SEPARATOR = re.compile(r"[^\x00-\x7f\w\udc80-\udcff]")


class _Tokens:
    """A decoded block and its scanned text, where each escape sequence and control character is one NUL.

    The map between the two is built only when a hit needs it: random bytes
    hold thousands of control characters per chunk and almost never a hit.
    """

    __slots__ = ("text", "scan", "spans", "positions", "shifts")

    def __init__(self, text: str) -> None:
        self.text = text
        self.scan = text if _CONTROL.search(text) is None else _TOKEN.sub("\x00", text)
        self.spans: list[tuple[int, int]] | None = None if self.scan is not text else []

    def _map(self) -> list[tuple[int, int]]:
        if self.spans is None:
            self.spans = [match.span() for match in _TOKEN.finditer(self.text)]
            self.positions: list[int] = []  # each token's index in `scan`
            self.shifts = [0]  # text index - scan index, after the first k tokens
            shift = 0
            for start, end in self.spans:
                self.positions.append(start - shift)
                shift += end - start - 1
                self.shifts.append(shift)
        return self.spans

    def text_index(self, index: int) -> int:
        """The index in `text` of the character at `index` in `scan`."""
        if not self._map():
            return index
        return index + self.shifts[bisect.bisect_left(self.positions, index)]

    def sequences(self, start: int, end: int) -> str:
        """The escape sequences and control characters within text[start:end], in order."""
        spans = self._map()
        first = bisect.bisect_left(spans, (start, start))
        pieces = []
        for a, b in spans[first:]:
            if b > end:
                break
            pieces.append(self.text[a:b])
        return "".join(pieces)


def _open_sequence(buf: bytes) -> tuple[int | None, bool]:
    """Where an unfinished escape sequence at the end of `buf` starts, and whether it is a string."""
    start = buf.rfind(b"\x1b")
    if start < 0 or _OPEN.match(buf, start) is None:
        return None, False
    if start == len(buf) - 1:  # a lone ESC: maybe the start of a string's terminator
        before = buf.rfind(b"\x1b", 0, start)
        if before >= 0 and _OPEN_STRING_AT_ST.match(buf, before) is not None:
            return before, True
        return start, False
    if buf[start + 1] in _STRING_INTRODUCERS:
        return start, True
    if len(buf) - start > MAX_SEQUENCE_HOLD:
        return None, False  # no real sequence is this long: its bytes are text and controls
    return start, False


def _char_start(buf: bytes, index: int) -> int:
    """`index` moved back to the start of the UTF-8 character it falls in."""
    for _ in range(3):
        if index <= 0 or not 0x80 <= buf[index] < 0xC0:
            break
        index -= 1
    return index


class _KeyBlock:
    """A private key block being dropped until its END line: bytes since its BEGIN, and its last text."""

    __slots__ = ("taken", "recent")

    def __init__(self, taken: int, recent: str) -> None:
        self.taken = taken
        self.recent = recent


class StreamMasker:
    """One output stream's masking: bytes in, masked bytes out, a bounded tail held between chunks."""

    hold_seconds = HOLD_SECONDS

    def __init__(self, rules: Sequence[MaskingRule], hash_key: bytes, echo_bytes: int = ECHO_BYTES) -> None:
        """A masker for the rules that name detectors (others are ignored); `echo_bytes` 0 turns echo off."""
        masker = Masker([rule for rule in rules if rule.detectors], hash_key)
        if masker.detectors is None:
            raise ValueError("no masking rule names a detector")
        self._detectors = masker.detectors
        self._styles = masker.detector_styles
        self._hash_key = masker.hash_key
        self._keys = DetectorSet(("private_key",)) if "private_key" in self._styles else None
        self._echo_bytes = echo_bytes
        self._held = b""
        self._recent = b""  # the last CONTEXT_BYTES of output released, as it came
        self._line_open = False  # whether the current line has shown anything
        self._string_open = False  # inside an OSC/DCS string too long to hold
        self._key_block: _KeyBlock | None = None
        # The last release ended where content alone would not cut (an echo, a flush, the hold's
        # bound): a secret may straddle it, so the next prefilter also looks at what came before.
        self._torn = False

    @property
    def holding(self) -> bool:
        """Whether output is held back, waiting for more or for `flush`."""
        return bool(self._held)

    @property
    def held_bytes(self) -> int:
        """How many bytes of output are held back."""
        return len(self._held)

    def feed(self, data: bytes) -> bytes:
        """The output that can leave now, masked; a tail that may be the start of a secret is held."""
        if not data:
            return b""
        if self._is_echo(data):
            self._note_released(data)
            self._torn = True
            return data
        buf = self._held + data if self._held else data
        out, self._held = self._process(buf, final=False)
        return out

    def flush(self) -> bytes:
        """Everything held, masked: output stopped for `hold_seconds`, or the stream ended."""
        if not self._held:
            return b""
        out, self._held = self._process(self._held, final=True)
        self._torn = True
        return out

    def _is_echo(self, data: bytes) -> bool:
        return (
            len(data) <= self._echo_bytes
            and self._line_open
            and not self._held
            and self._key_block is None
            and not self._string_open
            and _ECHO_BREAK.search(data) is None
        )

    def _process(self, buf: bytes, final: bool) -> tuple[bytes, bytes]:
        """(output, bytes to hold) for `buf`; with `final`, nothing is held."""
        out = []
        while buf:
            if self._string_open:
                piece, buf, wait = self._pass_string(buf, final)
            elif (key_block := self._key_block) is not None:
                piece, buf, wait = self._drop_key_block(key_block, buf, final)
            else:
                piece, buf, wait = self._release(buf, final)
            out.append(piece)
            if wait and not final:
                break
        return b"".join(out), buf

    def _note_released(self, raw: bytes) -> None:
        """Remember what left (before masking): context for the next scan, and whether a line is open."""
        if not raw:
            return
        self._recent = raw[-CONTEXT_BYTES:] if len(raw) >= CONTEXT_BYTES else (self._recent + raw)[-CONTEXT_BYTES:]
        last = max(raw.rfind(b"\n"), raw.rfind(b"\r"))
        self._line_open = last < len(raw) - 1 if last >= 0 else True

    # --- normal output ---------------------------------------------------------------------

    def _release(self, buf: bytes, final: bool) -> tuple[bytes, bytes, bool]:
        """Mask and release `buf` up to its last cut; returns (output, the rest, whether to wait for more)."""
        start, is_string = _open_sequence(buf)
        if start is not None and is_string and (final or len(buf) - start > MAX_STRING_HOLD):
            return self._release_before_string(buf, start, final)
        if final or start is not None:
            cut, forced = (len(buf) if final else start), False  # an escape sequence ends any hit before it
        else:
            cut, forced = self._cut(buf)
        block, rest = buf[:cut], buf[cut:]
        out, taken, too_long = self._mask_block(block, final)
        self._note_released(block[:taken])
        if taken == len(block):
            self._torn = self._torn or forced
            return out, rest, True
        rest = block[taken:] + rest  # a private key block begins here
        if too_long or final or len(rest) > MAX_KEY_BLOCK:
            self._key_block = _KeyBlock(0, "")  # too long to hold: "********", then drop to its END line
            return out + FULL_MASK.encode(), rest, False
        return out, rest, True

    def _release_before_string(self, buf: bytes, start: int, final: bool) -> tuple[bytes, bytes, bool]:
        """Output before a string sequence too long to hold, then the string so far, passed as opaque."""
        out, _nothing_held = self._process(buf[:start], final=True)
        string = buf[start:]
        held = b""
        if not final and string.endswith(b"\x1b"):
            string, held = string[:-1], b"\x1b"  # maybe the start of its terminator
        self._string_open = True
        self._note_released(string)
        return out + string, held, bool(held)

    def _cut(self, buf: bytes) -> tuple[int, bool]:
        """The last cut in `buf` (nothing after it can belong to a hit that starts before it).

        The flag is True when the cut was forced by the bound on what is held.
        """
        end = len(buf)
        separator = self._last_separator(buf, end)
        cut = 0
        if separator >= 0:
            cut = separator + 1
            escape = buf.rfind(b"\x1b", 0, cut)
            if escape >= 0:
                sequence = _SEQUENCE.match(buf, escape)
                if sequence is not None and sequence.end() > separator:
                    cut = min(sequence.end(), end)  # the separator was inside a sequence: cut after it
        cut = _BLANKS.match(buf, cut, end).end()  # type: ignore[union-attr]
        if cut < end and _NON_ASCII.search(buf, cut, end) is not None:
            cut = self._unicode_cut(buf, cut, end)
        if end - cut > MAX_HELD:
            return _char_start(buf, end - MAX_HELD), True  # bounded memory: a cut that content did not make
        return cut, False

    @staticmethod
    def _last_separator(buf: bytes, end: int) -> int:
        """The index of the last separator byte in buf[:end] (looking back MAX_HELD + 1 bytes), or -1."""
        low = max(0, end - 256)
        index = buf[low:end].translate(_CLASSES).rfind(_SEPARATOR)
        if index < 0 and low > 0:
            low, high = max(0, end - MAX_HELD - 1), low
            index = buf[low:high].translate(_CLASSES).rfind(_SEPARATOR)
        return index + low if index >= 0 else -1

    @staticmethod
    def _unicode_cut(buf: bytes, cut: int, end: int) -> int:
        """The cut moved past the last non-ASCII character that is not a word character."""
        text = buf[cut:end].decode("utf-8", "surrogateescape")
        last = None
        for last in _UNICODE_SEPARATOR.finditer(text):  # noqa: B007 - only the last one matters
            pass
        if last is None:
            return cut
        cut += len(encode_text(text[: last.end()]))
        return _BLANKS.match(buf, cut, end).end()  # type: ignore[union-attr]

    def _context(self) -> str:
        """The scanned text of the output released just before the block being scanned."""
        if not self._recent:
            return _PAD
        return _PAD + _TOKEN.sub("\x00", self._recent.decode("utf-8", "surrogateescape"))

    def _mask_block(self, block: bytes, final: bool) -> tuple[bytes, int, bool]:
        """(masked output, bytes of `block` it covers, whether a key block too long to hold begins there).

        Fewer bytes are covered only when a private key block begins in
        `block` and is either still open (not `final`) or longer than
        MAX_KEY_BLOCK: the output stops where it begins.
        """
        if not block:
            return block, 0, False
        if self._torn:  # a hit may have begun in what was released last
            self._torn = False
            features = self._detectors.features(self._recent[-KEY_TAIL:] + block)
        else:
            features = self._detectors.features(block)
        if not features:
            return block, len(block), False
        tokens = _Tokens(block.decode("utf-8", "surrogateescape"))
        context = self._context()
        scan = context + tokens.scan + "\x00"  # the NUL tells a key block that ends here from an open one
        base, limit = len(context), len(tokens.scan)
        text, pieces, pos = tokens.text, [], 0
        for start, end, name in self._detectors.find(scan, features):
            if end <= base:
                continue  # released before
            start, end = max(start, base) - base, end - base
            text_start = tokens.text_index(start)
            if name == "private_key":
                end, stop = self._key_span(tokens, text_start, end, limit, final)
                if stop is not None:
                    pieces.append(text[pos:text_start])
                    return encode_text("".join(pieces)), len(encode_text(text[:text_start])), stop
            text_end = tokens.text_index(end)
            pieces.append(text[pos:text_start])
            pieces.append(self._masked(tokens, start, end, name))
            pos = text_end
        if not pieces:
            return block, len(block), False
        pieces.append(text[pos:])
        return encode_text("".join(pieces)), len(block), False

    def _key_span(self, tokens: _Tokens, text_start: int, end: int, limit: int, final: bool) -> tuple[int, bool | None]:
        """A private key span's end in `tokens.scan`, and whether output must stop at its start.

        The second item is None to mask the span here, False to stop and
        hold it (still open), True to stop and mask it conservatively (too long).
        """
        still_open = end > limit
        text_end = len(tokens.text) if still_open else tokens.text_index(end)
        size = len(encode_text(tokens.text[text_start:text_end]))
        if size > MAX_KEY_BLOCK:
            return end, True
        if still_open and not final:
            return end, False
        if still_open:  # flushed while open: mask what came, drop the rest of the block when it comes
            self._key_block = _KeyBlock(size, tokens.scan[-KEY_TAIL:])
            return limit, None
        return end, None

    def _masked(self, tokens: _Tokens, start: int, end: int, name: str) -> str:
        """A hit's replacement: its rule's mask, then any escape sequences it contained."""
        hit = tokens.scan[start:end]
        if "\x00" not in hit:
            return mask_span(hit, self._styles[name], self._hash_key)
        masked = mask_span(hit.replace("\x00", ""), self._styles[name], self._hash_key)
        return masked + tokens.sequences(tokens.text_index(start), tokens.text_index(end))

    # --- inside a key block too long to hold, or flushed while open -----------------------------

    def _drop_key_block(self, block: _KeyBlock, buf: bytes, final: bool) -> tuple[bytes, bytes, bool]:
        """Drop text up to the key block's END line, passing escape sequences; (output, rest, wait)."""
        end = len(buf)
        if not final:
            start, is_string = _open_sequence(buf)
            if start is not None and not (is_string and len(buf) - start > MAX_STRING_HOLD):
                end = start
        piece = buf[: min(end, MAX_KEY_SWALLOW - block.taken)]
        tokens = _Tokens(piece.decode("utf-8", "surrogateescape"))
        stop = self._key_end(block, tokens.scan)
        if stop is not None:
            text_stop = tokens.text_index(stop)
            taken = len(encode_text(tokens.text[:text_stop]))
            self._key_block = None
            self._note_released(piece[:taken])
            return encode_text(tokens.sequences(0, text_stop)), buf[taken:], False
        block.taken += len(piece)
        block.recent = (block.recent + tokens.scan)[-KEY_TAIL:]
        self._note_released(piece)
        if block.taken >= MAX_KEY_SWALLOW:
            self._key_block = None
        rest = buf[len(piece) :]
        return encode_text(tokens.sequences(0, len(tokens.text))), rest, bool(rest) and self._key_block is not None

    def _key_end(self, block: _KeyBlock, scan: str) -> int | None:
        """Where the key block's END line ends in `scan` (its next piece of text), or None if not there."""
        if self._keys is None:
            return 0
        probe = _KEY_HEAD + block.recent + scan + "\x00"
        spans = self._keys.find(probe)
        if not spans or spans[0][0] != 0 or spans[0][1] >= len(probe):
            return None
        return max(0, spans[0][1] - len(_KEY_HEAD) - len(block.recent))

    # --- an OSC/DCS string too long to hold ----------------------------------------------------------

    def _pass_string(self, buf: bytes, final: bool) -> tuple[bytes, bytes, bool]:
        """Pass a long string sequence's bytes as they are, up to its terminator; (output, rest, wait)."""
        ends = [index for index in (buf.find(b"\x07"), buf.find(b"\x1b")) if index >= 0]
        if not ends:
            self._note_released(buf)
            return buf, b"", False
        index = min(ends)
        if buf[index] == 0x07:
            end = index + 1
        elif index + 1 < len(buf):
            end = index + 2 if buf[index + 1] == 0x5C else index  # ST ends it; another ESC aborts it
        elif not final:
            self._note_released(buf[:index])
            return buf[:index], buf[index:], True  # ESC at the very end: wait for the next byte
        else:
            end = index + 1
        self._string_open = False
        self._note_released(buf[:end])
        return buf[:end], buf[end:], False
