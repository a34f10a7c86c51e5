"""What a shell command line runs, read without running it: the facts SSH command guardrails judge.

`command_facts(command)` parses the command as bash (bashlex, not a regex on
the raw text) and lists the argv of every simple command it may run:

- anywhere in the tree: pipelines, lists (`;` `&&` `||` `&`, newlines),
  subshells, `{ }` groups, `if`/`for`/`while`/`until` bodies, function
  bodies, `$( )`, backticks, process substitution, redirection targets;
- inside shell code given as text, parsed again (depth bounded): `sh -c`,
  `bash -c` (and dash, zsh, ksh, ...), `su -c`, `eval`, `watch`, `trap`
  actions, alias values;
- through wrappers, so the real program is seen too: `env [-i] [VAR=x]`,
  `env -S`, `sudo`/`doas [opts]`, `nohup`, `time`, `nice`, `ionice`,
  `timeout N`, `xargs [opts]`, `exec`, `command`, `builtin`, `stdbuf`,
  `setsid`, `chroot DIR`, `busybox`, `find ... -exec/-execdir/-ok ... ;`.

Words are unquoted here, as bash would (bashlex's own quote removal gets
mixed quoting such as `"r"'m'` wrong), so `r\\m`, `'rm'`, `"r"m` and
`$'\\x72m'` are all `rm`. A program is known by the basename of its argv[0]:
`/bin/rm`, `./rm` and `rm` are all `rm`.

What cannot be known statically makes the command *opaque*, with a reason:
a program word built at run time (`$X`, `$(echo rm)`, globs, brace
expansion), `eval`, `source`/`.`, code given inline to an interpreter
(`python -c`, `perl -e`, `ruby -e`, `node -e`, `php -r`, ...), awk programs
that call `system(` or pipes, a shell or interpreter reading its code from
its input (here-documents, here-strings, pipes, no operand), aliases,
`hash -p`, `enable -f`, and assignments to PATH, LD_PRELOAD and the like.
Code that can be read anyway (the text of `eval "rm x"`, a here-string fed
to `sh`) is still read, so a deny rule can decide it on its merits.

Shell code bashlex cannot parse (it raises on some valid bash: `case`,
`[[ ]]`, `$(( ))`, arrays, the `time` keyword) raises `UnparseableCommand`,
which policies judge with their `unparseable` action: fail closed. So do
inputs over MAX_COMMAND_CHARS and shell code nested deeper than
MAX_NESTING. (Quoted here-document delimiters, which bashlex mishandles,
are read by parsing again without the quotes.) Nothing here imports Django.
"""

import contextlib
import posixpath
import re
import shlex
from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

import bashlex
import bashlex.ast
import bashlex.errors

MAX_COMMAND_CHARS = 64 * 1024
MAX_NESTING = 8  # levels of shell code inside shell code (sh -c "sh -c '...'")
MAX_PARSED_CHARS = 2 * MAX_COMMAND_CHARS  # every string parsed for one command, nested ones included
_SHOWN_CHARS = 60  # of a word quoted in a reason or an error

# Variables that change which program a name runs, or inject code into every program.
RISKY_VARIABLES = frozenset({"PATH", "LD_PRELOAD", "LD_LIBRARY_PATH", "LD_AUDIT", "BASH_ENV", "ENV"})
SHELLS = frozenset({"sh", "bash", "dash", "zsh", "ksh", "mksh", "lksh", "pdksh", "ash", "rbash", "yash", "posh"})
FOREIGN_SHELLS = frozenset({"csh", "tcsh", "fish"})  # shells whose code is not bash's: never read
AWKS = frozenset({"awk", "gawk", "mawk", "nawk"})


class UnparseableCommand(ValueError):
    """The command cannot be read as shell code; policies judge it with their `unparseable` action."""


@dataclass(frozen=True)
class CommandFacts:
    """What a command line runs.

    `invocations` holds the argv of every simple command found, wrappers
    included (`sudo rm x` gives `(sudo, rm, x)` and `(rm, x)`); `programs`
    the basenames of their argv[0]; `opaque` is true when part of what runs
    cannot be known statically, and `reasons` says why.
    """

    invocations: tuple[tuple[str, ...], ...]
    programs: frozenset[str]
    opaque: bool
    reasons: tuple[str, ...] = ()


class Word(NamedTuple):
    """A word of a command after quote removal; expansions are left as written."""

    text: str
    static: bool = True  # no parameter, command or process substitution in it
    pattern: bool = False  # an unquoted glob or brace expansion: bash decides its value when it runs


def program_name(word: str) -> str:
    """The name a program is known by: the basename of its path (`/bin/rm`, `./rm` and `rm` give `rm`)."""
    return posixpath.basename(word.rstrip("/")) or word


def command_facts(command: str) -> CommandFacts:
    """Read `command` as bash and list what it runs. Raises UnparseableCommand (a ValueError)."""
    if len(command) > MAX_COMMAND_CHARS:
        raise UnparseableCommand(
            f"the command is {len(command)} characters long; commands are limited to {MAX_COMMAND_CHARS}"
        )
    reader = _Reader()
    try:
        reader.read(command, 0)
    except RecursionError:  # a parse tree nested deeper than the walk can follow
        raise UnparseableCommand("its shell code is nested too deeply to read") from None
    invocations = tuple(reader.invocations)
    programs = frozenset(program_name(argv[0]) for argv in invocations)
    reasons = tuple(dict.fromkeys(reader.reasons))
    return CommandFacts(invocations, programs, bool(reasons), reasons)


# --- words ------------------------------------------------------------------------------------------------------

_EXPANSION_START = re.compile(r"[A-Za-z_0-9{(@*#?$!-]")  # what makes a $ start an expansion
_PATTERN = re.compile(r"[*?]|\[.+\]|\{[^{}]*(?:,|\.\.)[^{}]*\}")  # glob or brace expansion, in unquoted text
_DOUBLE_QUOTE_ESCAPES = '$`"\\\n'
_ANSI_C = re.compile(r"\\(?:x[0-9a-fA-F]{1,2}|u[0-9a-fA-F]{1,4}|U[0-9a-fA-F]{1,8}|[0-7]{1,3}|c.|.)", re.DOTALL)
_ANSI_C_SIMPLE = {"a": "\a", "b": "\b", "e": "\x1b", "E": "\x1b", "f": "\f", "n": "\n", "r": "\r", "t": "\t"}
_ANSI_C_SIMPLE.update({"v": "\v", "\\": "\\", "'": "'", '"': '"', "?": "?"})


def unquote(raw: str) -> Word:
    """A word as written (quotes and all) after bash's quote removal, with whether it expands at run time."""
    out: list[str] = []
    loose: list[str] = []  # the unquoted characters, where globs and braces take effect
    static, i, length = True, 0, len(raw)
    while i < length:
        char = raw[i]
        if char == "\\":
            if raw.startswith("\n", i + 1):  # a line continuation
                i += 2
                continue
            out.append(raw[i + 1 : i + 2])
            i += 2
        elif char == "'":
            end = _closing(raw, "'", i + 1)
            out.append(raw[i + 1 : end])
            i = end + 1
        elif raw.startswith("$'", i):
            end = _ansi_c_end(raw, i + 2)
            out.append(_ANSI_C.sub(_ansi_c_escape, raw[i + 2 : end]))
            i = end + 1
        elif char == '"' or raw.startswith('$"', i):
            i, text, quoted_static = _double_quoted(raw, i + (1 if char == '"' else 2))
            out.append(text)
            static = static and quoted_static
        else:
            if char == "`" or (char == "$" and _EXPANSION_START.match(raw, i + 1)) or raw.startswith(("<(", ">("), i):
                static = False
            out.append(char)
            loose.append(char)
            i += 1
    return Word("".join(out), static, bool(_PATTERN.search("".join(loose))))


def _closing(raw: str, quote: str, start: int) -> int:
    end = raw.find(quote, start)
    return len(raw) if end < 0 else end


def _ansi_c_end(raw: str, start: int) -> int:
    i = start
    while i < len(raw) and raw[i] != "'":
        i += 2 if raw[i] == "\\" else 1
    return min(i, len(raw))


def _ansi_c_escape(match: re.Match) -> str:
    body = match.group()[1:]
    if body[0] in "xuU" and len(body) > 1:
        return chr(min(int(body[1:], 16), 0x10FFFF))
    if body[0] in "01234567":
        return chr(int(body, 8) & 0xFF)
    if body[0] == "c" and len(body) == 2:
        return chr(ord(body[1].upper()) ^ 0x40)
    return _ANSI_C_SIMPLE.get(body, match.group())


def _double_quoted(raw: str, start: int) -> tuple[int, str, bool]:
    """(index after the closing quote, the text inside, whether it holds no expansion)."""
    out, static, i = [], True, start
    while i < len(raw) and raw[i] != '"':
        char = raw[i]
        if char == "\\" and raw[i + 1 : i + 2] and raw[i + 1] in _DOUBLE_QUOTE_ESCAPES:
            out.append("" if raw[i + 1] == "\n" else raw[i + 1])
            i += 2
            continue
        if char == "`" or (char == "$" and _EXPANSION_START.match(raw, i + 1)):
            static = False
        out.append(char)
        i += 1
    return i + 1, "".join(out), static


def _shorten(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= _SHOWN_CHARS else text[: _SHOWN_CHARS - 3] + "..."


def _show(text: str) -> str:
    return repr(_shorten(text))


def _substitutions(text: str) -> list[str]:
    """The code of each `$( )` and backtick pair in text, best effort (parentheses counted, quotes not).

    Substitutions nested in one are part of its code, so one pass over the text finds them all.
    """
    found = re.findall(r"`([^`]*)`", text)
    start = text.find("$(")
    while start >= 0:
        depth, i = 1, start + 2
        while i < len(text) and depth:
            depth += {"(": 1, ")": -1}.get(text[i], 0)
            i += 1
        found.append(text[start + 2 : i - 1] if depth == 0 else text[start + 2 :])
        start = text.find("$(", i)
    return found


# --- the parse tree -------------------------------------------------------------------------------------------


def _children(node: bashlex.ast.node) -> list[bashlex.ast.node]:
    children = []
    for name in ("parts", "list", "redirects"):
        children.extend(getattr(node, name, None) or ())
    for name in ("command", "output", "heredoc"):
        child = getattr(node, name, None)
        if isinstance(child, bashlex.ast.node):
            children.append(child)
    return children


def _is_blank(text: str) -> bool:
    return all(not line.strip() or line.lstrip().startswith("#") for line in text.splitlines())


# A quoted here-document delimiter (<<'EOF', <<"EOF", <<\EOF): bashlex looks for the quotes on the closing line.
_QUOTED_DELIMITER = re.compile(r"(<<-?[ \t]*)(?:(['\"])(\w[\w.-]*)\2|\\(\w[\w.-]*))")


def _parse(source: str) -> list[bashlex.ast.node]:
    """The parse trees of `source`; their positions index `source`."""
    try:
        try:
            return bashlex.parse(source)
        except bashlex.errors.ParsingError as exc:
            # Parsed again with blanks for the delimiters' quotes: every position stays in place, so the
            # caller still slices words (and sees those quotes) in the text as written.
            unquoted = _QUOTED_DELIMITER.sub(_blank_delimiter_quotes, source)
            if "here-document" not in exc.message or unquoted == source:
                raise
            return bashlex.parse(unquoted)
    except NotImplementedError:
        raise UnparseableCommand(
            "it uses shell syntax Gatehouse cannot read (such as case, [[ ]], $(( )), arrays, select, "
            "coproc or the time keyword)"
        ) from None
    except bashlex.errors.ParsingError as exc:
        raise UnparseableCommand(f"it is not valid shell: {_shorten(exc.message)}") from None
    except (AttributeError, AssertionError, IndexError, KeyError, TypeError, ValueError, RecursionError) as exc:
        # bashlex's own bugs on odd input: whatever it cannot read is not judged as read
        raise UnparseableCommand(f"the shell parser failed on it ({type(exc).__name__})") from None


def _blank_delimiter_quotes(match: re.Match) -> str:
    start, quote, word, escaped = match.groups()
    return f"{start} {word} " if quote else f"{start} {escaped}"


class _Reader:
    """Walks parse trees, collecting invocations and the reasons a command is opaque."""

    def __init__(self) -> None:
        self.invocations: list[tuple[str, ...]] = []
        self.reasons: list[str] = []
        self.parsed_chars = 0

    def read(self, text: str, depth: int) -> None:
        """Parse `text` as shell code and walk it; raises UnparseableCommand."""
        if depth > MAX_NESTING:
            raise UnparseableCommand(f"its shell code is nested more than {MAX_NESTING} levels deep")
        self.parsed_chars += len(text)
        if self.parsed_chars > MAX_PARSED_CHARS:
            raise UnparseableCommand("it holds too much nested shell code to read")
        if _is_blank(text):
            return
        # A here-document may end with the text; bashlex wants a line end after its delimiter.
        source = text if text.endswith("\n") else text + "\n"
        for tree in _parse(source):
            self.walk(tree, source, depth)

    def read_loosely(self, text: str, depth: int, reason: str) -> None:
        """Code that is opaque anyway: read what can be read, so a deny rule may still decide it."""
        self.reasons.append(reason)
        with contextlib.suppress(UnparseableCommand):  # already opaque
            self.read(text, depth)

    def read_code(self, word: Word, depth: int, what: str) -> None:
        """Shell code given as one word (`sh -c WORD`): read it strictly, or loosely if built at run time."""
        if word.static:
            self.read(word.text, depth + 1)
        else:
            self.read_loosely(word.text, depth + 1, f"{what} runs code built at run time: {_show(word.text)}")

    def walk(self, node: bashlex.ast.node, source: str, depth: int) -> None:
        if node.kind == "command":
            self.command(node, source, depth)
            return
        if node.kind == "commandsubstitution" and source.startswith("`", node.pos[0]):
            # Inside backticks a backslash escapes \, ` and $ before the code is parsed: read it as bash would.
            code = re.sub(r"\\([\\`$])", r"\1", source[node.pos[0] + 1 : node.pos[1] - 1])
            self.read(code, depth + 1)
            return
        if node.kind == "parameter" and _substitutions(node.value or ""):
            for code in _substitutions(node.value):
                self.read_loosely(code, depth + 1, f"a command substitution inside ${{{_shorten(node.value)}}}")
            return
        for child in _children(node):
            self.walk(child, source, depth)

    def command(self, node: bashlex.ast.node, source: str, depth: int) -> None:
        words: list[Word] = []
        stdin: str | None = None
        for part in node.parts:
            if part.kind == "word":
                words.append(unquote(source[part.pos[0] : part.pos[1]]))
            elif part.kind == "assignment":
                self.assignment(part.word)
            elif part.kind == "redirect":
                stdin = self.redirect(part, source, depth) or stdin
            for child in _children(part):
                self.walk(child, source, depth)
        self.run(words, depth, stdin)

    def redirect(self, node: bashlex.ast.node, source: str, depth: int) -> str | None:
        """The text a here-document or here-string feeds the command, if it is one."""
        if node.type == "<<<" and isinstance(node.output, bashlex.ast.node):
            return unquote(source[node.output.pos[0] : node.output.pos[1]]).text
        heredoc = getattr(node, "heredoc", None)
        if node.type not in ("<<", "<<-") or heredoc is None:
            return None
        body = heredoc.value.rsplit("\n", 1)[0] if "\n" in heredoc.value else ""
        start, end = node.output.pos
        delimiter = source[max(start - 1, 0) : end]  # with the character before: a quote bashlex did not see
        if not any(quote in delimiter for quote in "'\"\\"):  # an unquoted delimiter: the body is expanded
            for code in _substitutions(body):
                self.read_loosely(code, depth + 1, "a here-document runs command substitutions")
        return body

    def assignment(self, text: str) -> None:
        name = text.split("=", 1)[0].removesuffix("+")
        if name in RISKY_VARIABLES:
            self.reasons.append(f"setting {name} changes what programs run")

    def run(self, words: list[Word], depth: int, stdin: str | None = None) -> None:
        """One simple command: record its argv, then look through it if it runs other code."""
        if not words:
            return
        head = words[0]
        self.invocations.append(tuple(word.text for word in words))
        if not head.static or head.pattern:
            self.reasons.append(f"the program {_show(head.text)} is decided at run time")
            return
        handler = _handler(program_name(head.text))
        if handler is not None:
            handler(self, program_name(head.text), words[1:], depth, stdin)


# --- programs that run other code ------------------------------------------------------------------------------

_Handler = Callable[[_Reader, str, list[Word], int, "str | None"], None]
_ASSIGNMENT = re.compile(r"[A-Za-z_][A-Za-z_0-9]*\+?=")


class _Options(NamedTuple):
    """How a wrapper's options read: which take a value, and the operands before the program."""

    short: str = ""  # short options that take a value ("-u root" or "-uroot")
    long: tuple[str, ...] = ()  # long options that take a value ("--user root" or "--user=root")
    operands: int = 0  # words between the options and the program (timeout's duration, chroot's directory)
    assignments: bool = False  # NAME=value words may come before the program (env, sudo)


def _split_options(args: list[Word], spec: _Options) -> tuple[list[tuple[str, Word | None]], list[Word]]:
    """(options with their values, the words after the options and operands), as getopt with "+" reads them."""
    options: list[tuple[str, Word | None]] = []
    i = 0
    while i < len(args):
        text = args[i].text
        if text == "--":
            i += 1
            break
        if spec.assignments and (_ASSIGNMENT.match(text) or text == "-"):
            options.append(("=", args[i]))
        elif text.startswith("--"):
            key, equals, value = text.partition("=")
            if equals:
                options.append((key, Word(value, args[i].static)))
            elif key in spec.long and i + 1 < len(args):
                i += 1
                options.append((key, args[i]))
            else:
                options.append((key, None))
        elif text.startswith("-") and len(text) > 1:
            i = _short_options(args, i, spec.short, options)
        else:
            break
        i += 1
    return options, args[i + spec.operands :]


def _short_options(args: list[Word], i: int, takes_value: str, options: list) -> int:
    """Read one cluster of short options (-xvf FILE); returns the index of its last word."""
    text = args[i].text
    for position, letter in enumerate(text[1:], 1):
        if letter not in takes_value:
            options.append((f"-{letter}", None))
            continue
        value = text[position + 1 :]
        if value:
            options.append((f"-{letter}", Word(value, args[i].static)))
        elif i + 1 < len(args):
            i += 1
            options.append((f"-{letter}", args[i]))
        break
    return i


_SUDO_LONG = ("--close-from", "--chdir", "--group", "--host", "--login-class", "--prompt", "--chroot", "--role")
_XARGS_LONG = ("--arg-file", "--delimiter", "--eof", "--replace", "--max-lines", "--max-args", "--max-procs")
WRAPPERS: dict[str, _Options] = {
    "env": _Options("uCS", ("--unset", "--chdir", "--split-string"), assignments=True),
    "sudo": _Options("aCcDgpRrTtUu", (*_SUDO_LONG, "--type", "--command-timeout", "--other-user", "--user"), 0, True),
    "doas": _Options("uC"),
    "nohup": _Options(),
    "time": _Options("fo", ("--format", "--output")),
    "nice": _Options("n", ("--adjustment",)),
    "ionice": _Options("cn", ("--class", "--classdata")),
    "timeout": _Options("sk", ("--signal", "--kill-after"), operands=1),
    "xargs": _Options("adEILnPs", (*_XARGS_LONG, "--max-chars", "--process-slot-var")),
    "exec": _Options("a"),
    "command": _Options(),
    "builtin": _Options(),
    "stdbuf": _Options("ioe", ("--input", "--output", "--error")),
    "setsid": _Options(),
    "chroot": _Options("", ("--userspec", "--groups"), operands=1),
    "busybox": _Options(),
}
_STARTS_A_SHELL = {"sudo": ("-s", "-i", "--shell", "--login"), "doas": ("-s",)}  # with no program: reads input


def _wrapper(reader: _Reader, name: str, args: list[Word], depth: int, stdin: str | None) -> None:
    options, rest = _split_options(args, WRAPPERS[name])
    flags = {flag for flag, _ in options}
    if name == "command" and flags & {"-v", "-V"}:
        return  # only says where the program is
    for flag, value in options:
        if flag == "=" and value is not None:
            reader.assignment(value.text)
        elif flag in ("-S", "--split-string") and value is not None:
            rest = _split_string(reader, value) + rest
    if not rest and (name == "chroot" or flags & set(_STARTS_A_SHELL.get(name, ()))):
        reader.reasons.append(f"{name} starts a shell that reads its commands from its input")
    reader.run(rest, depth, stdin)


def _split_string(reader: _Reader, value: Word) -> list[Word]:
    """`env -S STRING`: the words env splits the string into."""
    try:
        if value.static:
            return [Word(text) for text in shlex.split(value.text)]
    except ValueError:
        pass
    reader.reasons.append(f"env -S splits a string it cannot be read from: {_show(value.text)}")
    return []


def _shell(reader: _Reader, name: str, args: list[Word], depth: int, stdin: str | None) -> None:
    """sh/bash/...: `-c CODE` is read as shell code; a shell reading its input is opaque; a script file is not."""
    command_mode = stdin_mode = False
    i = 0
    while i < len(args):
        text = args[i].text
        if text in ("--", "-"):
            i += 1
            break
        if text in ("--rcfile", "--init-file"):
            i += 2
        elif text.startswith("--"):
            i += 1
        elif len(text) > 1 and text[0] in "-+":
            command_mode |= text[0] == "-" and "c" in text
            stdin_mode |= text[0] == "-" and "s" in text
            i += 2 if text[-1] in "oO" else 1  # -o OPTION, +O SHOPT
        else:
            break
    operands = args[i:]
    if name in FOREIGN_SHELLS and (command_mode or not operands):
        reader.reasons.append(f"{name} runs code that is not bash's")
    elif command_mode:
        if operands:
            reader.read_code(operands[0], depth, f"{name} -c")
    elif stdin_mode or not operands:
        reason = f"{name} reads its commands from its input"
        if stdin is not None:
            reader.read_loosely(stdin, depth + 1, reason)
        else:
            reader.reasons.append(reason)


def _su(reader: _Reader, name: str, args: list[Word], depth: int, stdin: str | None) -> None:
    """su [user] -c CODE (GNU su takes options anywhere); without -c it starts a shell reading its input."""
    for i, word in enumerate(args):
        text = word.text
        if text.startswith("--command="):
            code: Word | None = Word(text.partition("=")[2], word.static)
        elif text == "--command" or (text.startswith("-") and not text.startswith("--") and "c" in text):
            value = text[text.index("c") + 1 :] if text != "--command" else ""
            code = Word(value, word.static) if value else (args[i + 1] if i + 1 < len(args) else None)
        else:
            continue
        if code is not None:
            reader.read_code(code, depth, "su -c")
        return
    reader.reasons.append("su starts a shell that reads its commands from its input")


def _eval(reader: _Reader, name: str, args: list[Word], depth: int, stdin: str | None) -> None:
    """eval joins its words and runs them as code: read them, and count the command opaque anyway."""
    code = Word(" ".join(word.text for word in args), all(word.static for word in args))
    reader.reasons.append("eval runs text as code")
    reader.read_code(code, depth, "eval")


def _watch(reader: _Reader, name: str, args: list[Word], depth: int, stdin: str | None) -> None:
    """watch runs its words with sh -c, joined by spaces, unless -x gives them as argv."""
    options, rest = _split_options(args, _Options("nq", ("--interval", "--equexit")))
    if {"-x", "--exec"} & {flag for flag, _ in options}:
        reader.run(rest, depth)
    elif rest:
        reader.read_code(Word(" ".join(word.text for word in rest), all(word.static for word in rest)), depth, name)


def _find(reader: _Reader, name: str, args: list[Word], depth: int, stdin: str | None) -> None:
    """find's -exec, -execdir, -ok and -okdir run the words up to `;` (or `{} +`)."""
    i = 0
    while i < len(args):
        if args[i].text not in ("-exec", "-execdir", "-ok", "-okdir"):
            i += 1
            continue
        end = i + 1
        while end < len(args) and not (args[end].text == ";" or (args[end].text == "+" and args[end - 1].text == "{}")):
            end += 1
        reader.run(args[i + 1 : end], depth)
        i = end + 1


def _source(reader: _Reader, name: str, args: list[Word], depth: int, stdin: str | None) -> None:
    reader.reasons.append(f"{name} runs the code of a file in the shell itself")


def _alias(reader: _Reader, name: str, args: list[Word], depth: int, stdin: str | None) -> None:
    for word in args:
        alias, equals, value = word.text.partition("=")
        if equals:
            reader.reasons.append(f"alias {alias} gives a name to other code")
            reader.read_code(Word(value, word.static), depth, "alias")


def _trap(reader: _Reader, name: str, args: list[Word], depth: int, stdin: str | None) -> None:
    """trap ACTION SIGNAL...: the action is shell code run later."""
    words = [word for word in args if word.text != "--"]
    if len(words) < 2 or words[0].text.startswith("-") or words[0].text.isdigit():
        return  # lists, prints or resets traps
    reader.read_code(words[0], depth, "trap")


def _declaration(reader: _Reader, name: str, args: list[Word], depth: int, stdin: str | None) -> None:
    """export/declare/local/...: NAME=value words are assignments."""
    for word in args:
        if _ASSIGNMENT.match(word.text):
            reader.assignment(word.text)


def _rebinding(reader: _Reader, name: str, args: list[Word], depth: int, stdin: str | None) -> None:
    """hash -p maps a name to another program; enable -f loads a builtin from a shared library."""
    letter = "p" if name == "hash" else "f"
    if any(word.text.startswith("-") and letter in word.text for word in args):
        reader.reasons.append(f"{name} -{letter} makes a name run other code")


class _Interpreter(NamedTuple):
    """How an interpreter takes code inline, and which of its short options take a value."""

    inline: str  # short options whose value is code (-c, -e)
    inline_long: tuple[str, ...] = ()
    valued: str = ""  # other short options that take a value
    program: str = ""  # short options that name what to run instead of a script (python -m)


INTERPRETERS: dict[re.Pattern, _Interpreter] = {
    re.compile(r"(?:python|pypy)[0-9.]*"): _Interpreter("c", (), "WX", "m"),
    re.compile(r"perl[0-9.]*"): _Interpreter("eE", (), "I"),
    re.compile(r"ruby[0-9.]*"): _Interpreter("e", (), "Ir"),
    re.compile(r"node(?:js)?"): _Interpreter("ep", ("--eval", "--print"), "r"),
    re.compile(r"php[0-9.]*"): _Interpreter("rBRE", (), "cdz"),
    re.compile(r"lua(?:jit)?[0-9.]*"): _Interpreter("e", (), "l"),
    re.compile(r"Rscript"): _Interpreter("e"),
    re.compile(r"(?:tclsh|wish)[0-9.]*"): _Interpreter(""),
}


def _interpreter(reader: _Reader, name: str, args: list[Word], depth: int, stdin: str | None) -> None:
    """Code given inline (python -c, perl -e, ...) or read from the input cannot be read: opaque."""
    spec = next(spec for pattern, spec in INTERPRETERS.items() if pattern.fullmatch(name))
    i = 0
    while i < len(args):
        text = args[i].text
        if text == "--" and i + 1 < len(args):
            return  # a script file follows
        if text in ("-", "--"):
            break
        if text.startswith("--"):
            if text.partition("=")[0] in spec.inline_long:
                reader.reasons.append(f"{name} {text.partition('=')[0]} runs code given inline")
                return
        elif text.startswith("-") and len(text) > 1:
            if set(text[1:]) & set(spec.inline):
                reader.reasons.append(f"{name} {text} runs code given inline")
                return
            if set(text[1:]) & set(spec.program):
                return
            i += 1 if set(text[-1]) & set(spec.valued) else 0
        else:
            return  # a script file: a program like any other
        i += 1
    reader.reasons.append(f"{name} reads its code from its input")


def _awk(reader: _Reader, name: str, args: list[Word], depth: int, stdin: str | None) -> None:
    """An awk program that calls system() or pipes to or from a command runs code: opaque."""
    programs: list[Word] = []
    from_file = False
    i = 0
    while i < len(args):
        text = args[i].text
        if text == "--":
            i += 1
            break
        if text in ("-e", "--source") and i + 1 < len(args):
            programs.append(args[i + 1])
        elif text.startswith(("-l", "--load")):
            reader.reasons.append(f"{name} {text} loads a shared library")
        elif not text.startswith("-") or text == "-":
            break
        from_file |= text.startswith(("-f", "--file"))
        i += 2 if text in ("-e", "--source", "-f", "--file", "-F", "-v", "-i", "--include", "--assign") else 1
    if not from_file and not programs and i < len(args):
        programs.append(args[i])
    for program in programs:
        if not program.static or "system" in program.text or "|" in program.text:
            reader.reasons.append(f"the {name} program may run commands: {_show(program.text)}")


_HANDLERS: dict[str, _Handler] = {
    **dict.fromkeys(WRAPPERS, _wrapper),
    **dict.fromkeys(SHELLS | FOREIGN_SHELLS, _shell),
    **dict.fromkeys(AWKS, _awk),
    **dict.fromkeys(("export", "declare", "typeset", "local", "readonly"), _declaration),
    **dict.fromkeys(("source", "."), _source),
    **dict.fromkeys(("hash", "enable"), _rebinding),
    "su": _su,
    "eval": _eval,
    "watch": _watch,
    "find": _find,
    "alias": _alias,
    "trap": _trap,
}


def _handler(name: str) -> _Handler | None:
    handler = _HANDLERS.get(name)
    if handler is None and any(pattern.fullmatch(name) for pattern in INTERPRETERS):
        return _interpreter
    return handler
