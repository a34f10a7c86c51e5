"""Rebuilding an interactive shell's command line from the agent's keystrokes, to judge it on Enter.

`LineEditor.feed(data)` splits the agent's input, in order, into plain bytes
to forward to the host at once and `Enter` items: the line as the shell will
run it, and the exact Enter bytes to forward if the line is allowed. The
bytes are never changed; joining the plain pieces and the Enter keys gives
back the input. Whatever follows an Enter in the same chunk comes as later
pieces, so the engine can hold it behind the decision.

The model is the default emacs key map that bash (readline), zsh (zle) and
fish share, and the tty's own line editing for programs without one:

- printable text (UTF-8, a character split across chunks is joined) is
  inserted at the cursor; backspace (DEL 0x7f and Ctrl-H) deletes the
  character before it, Delete (ESC[3~) and Ctrl-D the one under it;
- Ctrl-U kills to the start of the line, Ctrl-K to its end, Ctrl-W the
  word before the cursor (whitespace-delimited, as unix-word-rubout and the
  tty's werase do); Ctrl-C discards the line; Ctrl-D on an empty line is
  end of input and changes nothing;
- Left/Right (CSI and SS3 forms), Home/End and Ctrl-A/E/B/F move the cursor;
- Enter is CR, LF, or CR LF within one chunk (one key); a CR at the end of
  one chunk and an LF at the start of the next are two Enters, the second
  on an empty line, which is what the shell sees too. Ctrl-O (bash's
  operate-and-get-next, zsh's accept-line-and-down-history) runs the line
  too, so it is an Enter, and the line after it is uncertain;
- a bracketed paste (ESC[200~ ... ESC[201~) is inserted literally, tabs
  included; each newline inside it is an Enter of its own (`pasted=True`),
  since the shell runs each pasted line. In bash a pasted newline only
  inserts a newline into the buffer and the lines run on the next Enter, so
  allowing a pasted line and denying a later one interrupts both.

`uncertain=True` says the gateway cannot know the line exactly; `cause`
says why: history recall (Up/Down, Ctrl-P/N/R/S, Page Up/Down), completion
(Tab), the kill ring (Ctrl-Y), undo, transposition, quoted insert, Alt/Meta
keys, a key sequence the model does not know, control characters or invalid
UTF-8 in the text, or a line longer than `MAX_LINE` characters (the rest is
dropped from `line`, not from the bytes forwarded). The line then holds the
best reconstruction; the engine applies its policy for uncertain lines.
Ctrl-C and Enter start a certain line again.

This is a guard-rail and not a sandbox. The gateway sees keystrokes, not
the shell's state: a vi-mode or rebound key map, an alias, a function, a
script, a line recalled from history or completed by Tab, and any program
that reads the terminal itself (an editor, a REPL, `read`) can run what no
judged line shows. Agents that need a hard boundary should use exec, where
the whole command is judged before the host sees it.
"""

import codecs
import enum
import re
from collections.abc import Callable
from typing import NamedTuple

MAX_LINE = 64 * 1024  # characters of a line kept; beyond, the line is uncertain
MAX_SEQUENCE = 32  # bytes of an escape sequence before it is given up as unknown

ESC = 0x1B
CR, LF = 0x0D, 0x0A
PASTE_START = b"\x1b[200~"
PASTE_END = b"\x1b[201~"

# Why a line is uncertain (Enter.cause).
HISTORY = "history recall"
COMPLETION = "tab completion"
UNKNOWN_KEY = "a key the gateway does not model"
META_KEY = "an Alt/Meta key"
PASTED_CONTROL = "a control character in pasted text"
INVALID_UTF8 = "invalid UTF-8"
TOO_LONG = f"a line longer than {MAX_LINE} characters"


class Enter(NamedTuple):
    """An Enter key: the line it runs, whether that line is exactly known, and the key's bytes."""

    line: str
    uncertain: bool
    key: bytes  # b"\r", b"\n", b"\r\n" or b"\x0f" (Ctrl-O): what to forward if the line is allowed
    pasted: bool = False  # a newline inside a bracketed paste
    cause: str = ""  # why the line is uncertain, "" when it is not


class Mode(enum.Enum):
    """Where the editor is in the input stream."""

    TEXT = "text"  # ordinary keys
    ESCAPE = "escape"  # after ESC
    CSI = "csi"  # after ESC [
    SS3 = "ss3"  # after ESC O
    PASTE = "paste"  # inside ESC[200~ ... ESC[201~
    PASTE_ESCAPE = "paste-escape"  # an ESC inside a paste: maybe the paste's end


# CSI sequences (parameters + final byte) and SS3 final bytes that edit the line.
_LEFT, _RIGHT, _HOME, _END, _DELETE = "left", "right", "home", "end", "delete"
_CSI_KEYS = {
    b"D": _LEFT, b"1D": _LEFT, b"C": _RIGHT, b"1C": _RIGHT,
    b"H": _HOME, b"1H": _HOME, b"1~": _HOME, b"7~": _HOME,
    b"F": _END, b"1F": _END, b"4~": _END, b"8~": _END,
    b"3~": _DELETE,
}  # fmt: skip
_CSI_HISTORY = {b"A", b"B", b"1A", b"1B", b"5~", b"6~"}  # Up, Down, Page Up, Page Down
_SS3_KEYS = {ord("D"): _LEFT, ord("C"): _RIGHT, ord("H"): _HOME, ord("F"): _END}
_SS3_HISTORY = {ord("A"), ord("B")}

# Runs of bytes that are inserted as text: printable ASCII and UTF-8; a paste takes tabs too.
_TEXT_RUN = re.compile(rb"[\x20-\x7e\x80-\xff]+")
_PASTE_RUN = re.compile(rb"[\t\x20-\x7e\x80-\xff]+")


class LineEditor:
    """The command line an interactive shell is editing, rebuilt from the keys the agent sends."""

    def __init__(self) -> None:
        self._handlers: dict[Mode, Callable[[bytes, int], int]] = {
            Mode.TEXT: self._on_text,
            Mode.ESCAPE: self._on_escape,
            Mode.CSI: self._on_csi,
            Mode.SS3: self._on_ss3,
            Mode.PASTE: self._on_paste,
            Mode.PASTE_ESCAPE: self._on_paste_escape,
        }
        self._controls: dict[int, Callable[[], None]] = {
            0x01: self._home, 0x02: self._left, 0x03: self._discard, 0x04: self._delete_or_eof,
            0x05: self._end, 0x06: self._right, 0x08: self._backspace, 0x09: self._complete,
            0x0B: self._kill_to_end, 0x15: self._kill_to_start, 0x17: self._kill_word, 0x7F: self._backspace,
            # No change to the line: NUL (set-mark), Ctrl-G (abort), Ctrl-L (clear screen),
            # Ctrl-Z and Ctrl-\ (signals an interactive shell ignores at its prompt).
            0x00: _nothing, 0x07: _nothing, 0x0C: _nothing, 0x1A: _nothing, 0x1C: _nothing,
        }  # fmt: skip
        self.reset()

    def reset(self) -> None:
        """Forget everything: an empty, certain line at the start of the input."""
        self._mode = Mode.TEXT
        self._chars: list[str] = []
        self._cursor = 0
        self._cause = ""
        self._sequence = bytearray()  # the escape sequence being read
        self._decoder = codecs.getincrementaldecoder("utf-8")("surrogateescape")
        self._pieces: list[bytes | Enter] = []
        self._start = 0  # where the plain bytes not yet emitted begin in the current chunk

    @property
    def line(self) -> str:
        """The line as rebuilt so far (without a UTF-8 character still arriving)."""
        return "".join(self._chars)

    @property
    def uncertain(self) -> bool:
        """Whether the line so far is only a best guess."""
        return bool(self._cause)

    @property
    def mode(self) -> Mode:
        """Where the editor is in the input (inside an escape sequence, a paste, ...)."""
        return self._mode

    def feed(self, data: bytes) -> list[bytes | Enter]:
        """The agent's input split, in order, into bytes to forward now and Enter items to judge."""
        self._pieces = []
        self._start = 0
        index = 0
        while index < len(data):
            index = self._handlers[self._mode](data, index)
        if self._start < len(data):
            self._pieces.append(data[self._start :])
        return self._pieces

    # --- modes -------------------------------------------------------------------------

    def _on_text(self, data: bytes, index: int) -> int:
        run = _TEXT_RUN.match(data, index)
        if run is not None:
            return self._insert_run(run)
        byte = data[index]
        self._settle_text()
        if byte in (CR, LF):
            return self._enter(data, index, pasted=False)
        if byte == 0x0F:  # Ctrl-O runs the line, then fetches the next one from history
            self._emit_enter(data, index, index + 1, pasted=False)
            self._mark(HISTORY)
            return index + 1
        if byte == ESC:
            self._sequence = bytearray(b"\x1b")
            self._mode = Mode.ESCAPE
            return index + 1
        self._controls.get(byte, self._unknown_control)()
        return index + 1

    def _on_escape(self, data: bytes, index: int) -> int:
        byte = data[index]
        if byte == ord("["):
            self._sequence.append(byte)
            self._mode = Mode.CSI
            return index + 1
        if byte == ord("O"):
            self._mode = Mode.SS3
            return index + 1
        self._mode = Mode.TEXT
        if byte < 0x20 or byte == 0x7F:
            # A lone Escape, then a control key: the key still counts (an Enter stays an Enter).
            self._mark(UNKNOWN_KEY)
            return index
        self._mark(META_KEY)  # Alt+key: word moves, kills, yank-last-arg, ...
        return index + 1

    def _on_csi(self, data: bytes, index: int) -> int:
        byte = data[index]
        if 0x40 <= byte <= 0x7E:
            self._mode = Mode.TEXT
            self._csi_key(bytes(self._sequence[2:]) + bytes([byte]))
            return index + 1
        if 0x20 <= byte <= 0x3F and len(self._sequence) < MAX_SEQUENCE:
            self._sequence.append(byte)
            return index + 1
        # Malformed or too long: give it up and read the byte as an ordinary key.
        self._mode = Mode.TEXT
        self._mark(UNKNOWN_KEY)
        return index

    def _on_ss3(self, data: bytes, index: int) -> int:
        byte = data[index]
        self._mode = Mode.TEXT
        if byte < 0x20 or byte == 0x7F:
            self._mark(UNKNOWN_KEY)
            return index
        if byte in _SS3_KEYS:
            self._move(_SS3_KEYS[byte])
        else:
            self._mark(HISTORY if byte in _SS3_HISTORY else UNKNOWN_KEY)
        return index + 1

    def _on_paste(self, data: bytes, index: int) -> int:
        run = _PASTE_RUN.match(data, index)
        if run is not None:
            return self._insert_run(run)
        byte = data[index]
        self._settle_text()
        if byte in (CR, LF):
            return self._enter(data, index, pasted=True)
        if byte == ESC:
            self._sequence = bytearray(b"\x1b")
            self._mode = Mode.PASTE_ESCAPE
            return index + 1
        self._insert(chr(byte))  # pasted text is inserted as it is, even control characters
        self._mark(PASTED_CONTROL)
        return index + 1

    def _on_paste_escape(self, data: bytes, index: int) -> int:
        byte = data[index]
        if byte == PASTE_END[len(self._sequence)]:
            self._sequence.append(byte)
            if len(self._sequence) == len(PASTE_END):
                self._mode = Mode.TEXT
            return index + 1
        # Not the end of the paste: what was read is pasted text, and this byte is read again.
        self._insert(self._sequence.decode("ascii"))
        self._mark(PASTED_CONTROL)
        self._mode = Mode.PASTE
        return index

    # --- keys ----------------------------------------------------------------------------

    def _csi_key(self, sequence: bytes) -> None:
        if sequence == b"200~":
            self._mode = Mode.PASTE
        elif sequence in _CSI_KEYS:
            self._move(_CSI_KEYS[sequence])
        elif sequence == b"201~":
            pass  # a paste end outside a paste: nothing to do
        else:
            self._mark(HISTORY if sequence in _CSI_HISTORY else UNKNOWN_KEY)

    def _move(self, key: str) -> None:
        if key == _LEFT:
            self._left()
        elif key == _RIGHT:
            self._right()
        elif key == _HOME:
            self._home()
        elif key == _END:
            self._end()
        else:
            self._delete()

    def _left(self) -> None:
        self._cursor = max(0, self._cursor - 1)

    def _right(self) -> None:
        self._cursor = min(len(self._chars), self._cursor + 1)

    def _home(self) -> None:
        self._cursor = 0

    def _end(self) -> None:
        self._cursor = len(self._chars)

    def _backspace(self) -> None:
        if self._cursor > 0:
            del self._chars[self._cursor - 1]
            self._cursor -= 1

    def _delete(self) -> None:
        if self._cursor < len(self._chars):
            del self._chars[self._cursor]

    def _delete_or_eof(self) -> None:
        # Ctrl-D: end of input on an empty line (the shell exits), else delete-char.
        self._delete()

    def _kill_to_start(self) -> None:
        del self._chars[: self._cursor]
        self._cursor = 0

    def _kill_to_end(self) -> None:
        del self._chars[self._cursor :]

    def _kill_word(self) -> None:
        start = self._cursor
        while start > 0 and self._chars[start - 1].isspace():
            start -= 1
        while start > 0 and not self._chars[start - 1].isspace():
            start -= 1
        del self._chars[start : self._cursor]
        self._cursor = start

    def _discard(self) -> None:
        self._new_line()

    def _complete(self) -> None:
        self._mark(COMPLETION)

    def _unknown_control(self) -> None:
        self._mark(UNKNOWN_KEY)  # Ctrl-P/N/R/S/T/Q/V/X/Y/]/^/_ : history, yank, undo, prefixes...

    # --- the line ----------------------------------------------------------------------------

    def _insert_run(self, run: re.Match[bytes]) -> int:
        self._insert(self._decoder.decode(run.group()))
        return run.end()

    def _settle_text(self) -> None:
        """A UTF-8 sequence cut short by a control key is invalid: insert what it was."""
        pending = self._decoder.decode(b"", final=True)
        if pending:
            self._insert(pending)

    def _insert(self, text: str) -> None:
        if not text:
            return
        if any("\udc80" <= char <= "\udcff" for char in text):
            self._mark(INVALID_UTF8)
        room = MAX_LINE - len(self._chars)
        if len(text) > room:
            text = text[: max(room, 0)]
            self._mark(TOO_LONG)
        self._chars[self._cursor : self._cursor] = text
        self._cursor += len(text)

    def _mark(self, cause: str) -> None:
        if not self._cause:
            self._cause = cause

    def _new_line(self) -> None:
        self._chars = []
        self._cursor = 0
        self._cause = ""

    def _enter(self, data: bytes, index: int, pasted: bool) -> int:
        end = index + 1
        if data[index] == CR and end < len(data) and data[end] == LF:
            end += 1  # CR LF in one chunk: one key
        self._emit_enter(data, index, end, pasted)
        return end

    def _emit_enter(self, data: bytes, index: int, end: int, pasted: bool) -> None:
        if index > self._start:
            self._pieces.append(data[self._start : index])
        line = "".join(self._chars)
        self._pieces.append(Enter(line, bool(self._cause), data[index:end], pasted, self._cause))
        self._start = end
        self._new_line()


def _nothing() -> None:
    """A key that leaves the line as it is."""
