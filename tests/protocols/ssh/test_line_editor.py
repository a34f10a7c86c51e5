"""LineEditor: the command line rebuilt from keystrokes, judged on Enter, whatever the chunking."""

import random

import pytest

from connections.protocols.ssh.line_editor import (
    COMPLETION,
    HISTORY,
    INVALID_UTF8,
    MAX_LINE,
    META_KEY,
    PASTED_CONTROL,
    TOO_LONG,
    UNKNOWN_KEY,
    Enter,
    LineEditor,
    Mode,
)

LEFT, RIGHT, UP, DOWN = b"\x1b[D", b"\x1b[C", b"\x1b[A", b"\x1b[B"
HOME, END, DELETE = b"\x1b[H", b"\x1b[F", b"\x1b[3~"
PASTE_START, PASTE_END = b"\x1b[200~", b"\x1b[201~"


def enters(data: bytes, editor: LineEditor | None = None) -> list[Enter]:
    editor = editor or LineEditor()
    return [piece for piece in editor.feed(data) if isinstance(piece, Enter)]


def lines(data: bytes) -> list[tuple[str, bool]]:
    return [(enter.line, enter.uncertain) for enter in enters(data)]


def forwarded(pieces: list[bytes | Enter]) -> bytes:
    """What the engine forwards when every line is allowed: the bytes and each Enter's key."""
    return b"".join(piece.key if isinstance(piece, Enter) else piece for piece in pieces)


def fed_in(chunks: list[bytes]) -> list[bytes | Enter]:
    editor = LineEditor()
    pieces: list[bytes | Enter] = []
    for chunk in chunks:
        pieces.extend(editor.feed(chunk))
    return pieces


# --- Enter and the pieces --------------------------------------------------------------------------


def test_it_splits_input_at_each_enter_keeping_the_bytes() -> None:
    data = b"ls -la\rcd /tmp\r\necho hi\nrest"
    pieces = LineEditor().feed(data)
    assert pieces == [
        b"ls -la",
        Enter("ls -la", False, b"\r"),
        b"cd /tmp",
        Enter("cd /tmp", False, b"\r\n"),
        b"echo hi",
        Enter("echo hi", False, b"\n"),
        b"rest",
    ]
    assert forwarded(pieces) == data


def test_it_reads_cr_and_lf_in_two_chunks_as_two_enters() -> None:
    editor = LineEditor()
    assert editor.feed(b"make\r") == [b"make", Enter("make", False, b"\r")]
    assert editor.feed(b"\nnext") == [Enter("", False, b"\n"), b"next"]


def test_it_starts_each_line_empty_after_an_enter() -> None:
    editor = LineEditor()
    editor.feed(b"first\r")
    assert editor.line == ""
    assert enters(b"second\r", editor) == [Enter("second", False, b"\r")]


def test_it_treats_ctrl_o_as_an_enter_that_recalls_the_next_line() -> None:
    pieces = LineEditor().feed(b"make test\x0f\r")
    assert pieces[1] == Enter("make test", False, b"\x0f")
    assert pieces[2] == Enter("", True, b"\r", cause=HISTORY)


# --- editing keys ----------------------------------------------------------------------------------


@pytest.mark.parametrize("key", [b"\x7f", b"\x08"])
def test_it_deletes_one_character_on_backspace(key: bytes) -> None:
    assert lines(b"lss" + key + b" -l" + key * 3 + b"-a\r") == [("ls-a", False)]


def test_it_deletes_a_whole_multibyte_character_on_backspace() -> None:
    assert lines("café\x7f\x7fé!\r".encode()) == [("caé!", False)]


def test_it_ignores_backspace_on_an_empty_line() -> None:
    assert lines(b"\x7f\x7f\x08ls\r") == [("ls", False)]


def test_it_kills_to_the_start_of_the_line_on_ctrl_u() -> None:
    assert lines(b"rm -rf /\x15ls\r") == [("ls", False)]
    # From the cursor: what is after it stays.
    assert lines(b"sudo ls" + LEFT * 2 + b"\x15\r") == [("ls", False)]


def test_it_kills_to_the_end_of_the_line_on_ctrl_k() -> None:
    assert lines(b"ls -la /root" + LEFT * 6 + b"\x0b\r") == [("ls -la", False)]


def test_it_kills_the_previous_word_on_ctrl_w() -> None:
    assert lines(b"git push --force   \x17origin\r") == [("git push origin", False)]
    assert lines(b"rm -rf /var/lib\x17\x17echo\r") == [("rm echo", False)]


def test_it_discards_the_line_on_ctrl_c() -> None:
    editor = LineEditor()
    assert editor.feed(b"rm -rf /\x03") == [b"rm -rf /\x03"]
    assert editor.line == ""
    assert enters(b"ls\r", editor) == [Enter("ls", False, b"\r")]


def test_it_makes_the_line_certain_again_after_ctrl_c() -> None:
    assert lines(b"rm -r\t\x03ls\r") == [("ls", False)]


def test_it_forwards_ctrl_d_on_an_empty_line_and_deletes_under_the_cursor_otherwise() -> None:
    editor = LineEditor()
    assert editor.feed(b"\x04") == [b"\x04"]
    assert editor.line == ""
    assert lines(b"lsx" + LEFT + b"\x04\r") == [("ls", False)]
    assert lines(b"ls\x04\r") == [("ls", False)]  # at the end of a line: nothing to delete


def test_it_moves_the_cursor_and_inserts_in_the_middle() -> None:
    assert lines(b"echo wrld" + LEFT * 3 + b"o" + RIGHT * 3 + b"!\r") == [("echo world!", False)]
    assert lines(b"cho" + HOME + b"e" + END + b" x\r") == [("echo x", False)]
    assert lines(b"ls" + LEFT * 5 + b"x" + RIGHT * 9 + b"y\r") == [("xlsy", False)]


@pytest.mark.parametrize(
    ("home", "end"),
    [
        (b"\x1b[H", b"\x1b[F"),
        (b"\x1b[1~", b"\x1b[4~"),
        (b"\x1b[7~", b"\x1b[8~"),
        (b"\x1bOH", b"\x1bOF"),
        (b"\x01", b"\x05"),
    ],
)
def test_it_knows_every_form_of_home_and_end(home: bytes, end: bytes) -> None:
    assert lines(b"ls" + home + b"sudo " + end + b" /root\r") == [("sudo ls /root", False)]


@pytest.mark.parametrize(("left", "right"), [(b"\x1b[D", b"\x1b[C"), (b"\x1bOD", b"\x1bOC"), (b"\x02", b"\x06")])
def test_it_knows_every_form_of_left_and_right(left: bytes, right: bytes) -> None:
    assert lines(b"ac" + left + b"b" + right + b"d\r") == [("abcd", False)]


def test_it_deletes_under_the_cursor_on_delete() -> None:
    assert lines(b"lss -l" + HOME + RIGHT + DELETE + b"\r") == [("ls -l", False)]


# --- uncertain lines -------------------------------------------------------------------------------


def test_it_marks_a_completed_line_uncertain() -> None:
    assert enters(b"cat /etc/pas\t\r") == [Enter("cat /etc/pas", True, b"\r", cause=COMPLETION)]


@pytest.mark.parametrize("key", [UP, DOWN, b"\x1bOA", b"\x1bOB", b"\x1b[5~", b"\x10", b"\x0e", b"\x12"])
def test_it_marks_history_recall_uncertain(key: bytes) -> None:
    (enter,) = enters(b"x" + key + b"\r")
    assert enter.uncertain
    assert enter.cause in (HISTORY, UNKNOWN_KEY)


@pytest.mark.parametrize(
    "key",
    [
        b"\x1b[1;5D",  # Ctrl-Left: a word move in some key maps only
        b"\x1b[Z",  # Shift-Tab
        b"\x19",  # Ctrl-Y: yank
        b"\x1f",  # Ctrl-_: undo
        b"\x14",  # Ctrl-T: transpose
        b"\x16",  # Ctrl-V: quoted insert
        b"\x18\x05",  # Ctrl-X Ctrl-E: edit in $EDITOR
        b"\x1b[2~",  # Insert
        b"\x1bOP",  # F1
    ],
)
def test_it_marks_keys_it_does_not_model_uncertain(key: bytes) -> None:
    (enter,) = enters(b"ls" + key + b"\r")
    assert (enter.line.startswith("ls"), enter.uncertain, enter.cause) == (True, True, UNKNOWN_KEY)


@pytest.mark.parametrize("key", [b"\x1bb", b"\x1bd", b"\x1b.", b"\x1b\x7f"])
def test_it_marks_alt_keys_uncertain(key: bytes) -> None:
    (enter,) = enters(b"rm -rf tmp" + key + b"\r")
    assert enter.uncertain
    assert enter.cause in (META_KEY, UNKNOWN_KEY)


def test_it_still_sees_an_enter_right_after_an_escape() -> None:
    # ESC then CR must not swallow the Enter: the line is judged, as uncertain.
    assert enters(b"reboot\x1b\r") == [Enter("reboot", True, b"\r", cause=UNKNOWN_KEY)]
    assert enters(b"reboot\x1b[1;\r") == [Enter("reboot", True, b"\r", cause=UNKNOWN_KEY)]
    assert enters(b"reboot\x1bO\r") == [Enter("reboot", True, b"\r", cause=UNKNOWN_KEY)]


def test_it_marks_invalid_utf8_uncertain_and_keeps_the_bytes() -> None:
    data = b"echo \xff\xfe\r"
    pieces = LineEditor().feed(data)
    assert forwarded(pieces) == data
    assert pieces[1].uncertain and pieces[1].cause == INVALID_UTF8
    # A character cut short by a control key is invalid too.
    assert enters(b"echo \xc3\r")[0].cause == INVALID_UTF8


def test_it_bounds_the_line_and_marks_a_longer_one_uncertain() -> None:
    data = b"echo " + b"x" * (MAX_LINE + 1000) + b"\r"
    pieces = LineEditor().feed(data)
    assert forwarded(pieces) == data
    enter = pieces[1]
    assert len(enter.line) == MAX_LINE
    assert (enter.uncertain, enter.cause) == (True, TOO_LONG)


def test_it_gives_up_an_overlong_escape_sequence() -> None:
    data = b"ls\x1b[" + b"1;" * 40 + b"m\r"
    pieces = LineEditor().feed(data)
    assert forwarded(pieces) == data
    assert pieces[-1].uncertain


# --- bracketed paste ---------------------------------------------------------------------------------


def test_it_judges_each_line_of_a_paste() -> None:
    data = PASTE_START + b"cd /srv\nrm -rf build\nmake" + PASTE_END + b"\r"
    pieces = LineEditor().feed(data)
    assert [p for p in pieces if isinstance(p, Enter)] == [
        Enter("cd /srv", False, b"\n", pasted=True),
        Enter("rm -rf build", False, b"\n", pasted=True),
        Enter("make", False, b"\r"),
    ]
    assert forwarded(pieces) == data


def test_it_inserts_pasted_text_literally_at_the_cursor() -> None:
    # Tab and backspace inside a paste are text, not completion or deletion.
    data = b"echo " + b"!" + LEFT + PASTE_START + b"a\tb" + PASTE_END + b"\r"
    assert enters(data) == [Enter("echo a\tb!", False, b"\r")]


def test_it_marks_control_characters_in_a_paste_uncertain() -> None:
    (enter,) = enters(PASTE_START + b"r\x7fm -rf /" + PASTE_END + b"\r")
    assert (enter.line, enter.uncertain, enter.cause) == ("r\x7fm -rf /", True, PASTED_CONTROL)


def test_it_reads_an_escape_in_a_paste_that_is_not_its_end_as_text() -> None:
    editor = LineEditor()
    (enter,) = enters(PASTE_START + b"a\x1b[2xb" + PASTE_END + b"\r", editor)
    assert (enter.line, enter.uncertain) == ("a\x1b[2xb", True)
    assert editor.mode is Mode.TEXT


def test_it_reads_a_paste_end_split_across_chunks() -> None:
    editor = LineEditor()
    editor.feed(PASTE_START + b"ls\x1b[20")
    assert editor.mode is Mode.PASTE_ESCAPE
    assert editor.feed(b"1~\t\r")[-1] == Enter("ls", True, b"\r", cause=COMPLETION)


# --- chunking ------------------------------------------------------------------------------------------

SESSIONS = [
    b"ls -la\x7f\x7fl /tmp\rcd /srv\r",
    "echo héllo wörld ☃\x1b[D\x1b[Dx\r".encode(),
    b"rm -rf /\x15git status\x1bOD\x1bOCs\r",
    PASTE_START + b"a\nb\tc\nd" + PASTE_END + b"\x17e\r",
    b"sudo reboot\x03make\t\x1b[A\x1b[3~\x0bok\x0fx\r",
    b"\x1b\x1b[1;5Dls\x1b\rcat\x1bO\rq\x1b[" + b"9" * 40 + b"\r",
]


@pytest.mark.parametrize("data", SESSIONS)
def test_it_gives_the_same_lines_for_a_split_at_every_byte(data: bytes) -> None:
    whole = fed_in([data])
    assert forwarded(whole) == data
    for cut in range(len(data) + 1):
        pieces = fed_in([data[:cut], data[cut:]])
        assert forwarded(pieces) == data
        assert [p for p in pieces if isinstance(p, Enter)] == [p for p in whole if isinstance(p, Enter)], cut


@pytest.mark.parametrize("data", SESSIONS)
def test_it_gives_the_same_lines_one_byte_at_a_time(data: bytes) -> None:
    whole = [p for p in fed_in([data]) if isinstance(p, Enter)]
    assert [p for p in fed_in([bytes([b]) for b in data]) if isinstance(p, Enter)] == whole


def test_it_puts_what_follows_an_enter_in_later_pieces() -> None:
    pieces = LineEditor().feed(b"drop table\rselect 1\r")
    assert pieces == [b"drop table", Enter("drop table", False, b"\r"), b"select 1", Enter("select 1", False, b"\r")]


@pytest.mark.parametrize("seed", range(20))
def test_it_survives_random_bytes_and_forwards_them_all(seed: int) -> None:
    rnd = random.Random(seed)
    data = rnd.randbytes(5000)
    editor = LineEditor()
    out = b""
    pos = 0
    while pos < len(data):
        size = rnd.randint(1, 64)
        pieces = editor.feed(data[pos : pos + size])
        for piece in pieces:
            if isinstance(piece, Enter):
                assert piece.key in (b"\r", b"\n", b"\r\n", b"\x0f")
                assert len(piece.line) <= MAX_LINE
        out += forwarded(pieces)
        pos += size
    assert out == data


def test_it_forgets_everything_on_reset() -> None:
    editor = LineEditor()
    editor.feed(PASTE_START + b"half a paste\t\xc3")
    editor.reset()
    assert (editor.line, editor.uncertain, editor.mode) == ("", False, Mode.TEXT)
    assert enters(b"ls\r", editor) == [Enter("ls", False, b"\r")]
