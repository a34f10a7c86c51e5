"""Shell facts: every program a command line runs, read with bashlex, and what cannot be known statically."""

import pytest

from connections.policy.shell_facts import (
    MAX_COMMAND_CHARS,
    MAX_NESTING,
    CommandFacts,
    UnparseableCommand,
    command_facts,
    program_name,
    unquote,
)
from tests.policy.command_corpus import nested_sh


def programs(command: str) -> set[str]:
    return set(command_facts(command).programs)


# --- where commands are found ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("command", "expected"),
    [
        ("ls -la", {"ls"}),
        ("a | b | c", {"a", "b", "c"}),
        ("a; b && c || d & e", {"a", "b", "c", "d", "e"}),
        ("a\nb\n\nc", {"a", "b", "c"}),
        ("(a; (b))", {"a", "b"}),
        ("{ a; { b; }; }", {"a", "b"}),
        ("if a; then b; elif c; then d; else e; fi", {"a", "b", "c", "d", "e"}),
        ("for x in 1 2; do a; done", {"a"}),
        ("while a; do b; done; until c; do d; done", {"a", "b", "c", "d"}),
        ("f() { a; }; function g { b; }", {"a", "b"}),
        ("echo $(a $(b))", {"echo", "a", "b"}),
        ("echo `a`", {"echo", "a"}),
        ("diff <(a) >(b)", {"diff", "a", "b"}),
        ("x=$(a) y=`b` c", {"a", "b", "c"}),
        ("echo hi > $(a) 2> `b`", {"echo", "a", "b"}),
        ("(a) > $(b)", {"a", "b"}),
        ("! a", {"a"}),
        ("for f in $(a); do :; done", {"a", ":"}),
    ],
)
def test_it_finds_commands_anywhere_in_the_tree(command, expected):
    assert programs(command) == expected


def test_it_keeps_the_argv_of_every_invocation_in_order():
    facts = command_facts("ls -la /tmp | grep -v x; rm -rf '/tmp/a b'")
    assert facts.invocations == (("ls", "-la", "/tmp"), ("grep", "-v", "x"), ("rm", "-rf", "/tmp/a b"))
    assert facts == CommandFacts(facts.invocations, frozenset({"ls", "grep", "rm"}), False, ())


def test_assignments_and_redirections_are_not_arguments():
    assert command_facts("FOO=1 BAR=2 rm -f x > /dev/null 2>&1").invocations == (("rm", "-f", "x"),)
    assert command_facts("x=1").invocations == ()
    assert command_facts("> /tmp/truncated").invocations == ()


# --- words and program names ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "text"),
    [
        ("rm", "rm"),
        ("r\\m", "rm"),
        ("'rm'", "rm"),
        ('"rm"', "rm"),
        ('"r"m', "rm"),
        ("\"r\"'m'", "rm"),
        ("r''m", "rm"),
        ("$'\\x72m'", "rm"),
        ("$'\\162m'", "rm"),
        ("$'r\\u006d'", "rm"),
        ('$"rm"', "rm"),
        ('"a\\"b"', 'a"b'),
        ('"a\\b"', "a\\b"),
        ("'a\\b'", "a\\b"),
    ],
)
def test_it_removes_quotes_as_bash_does(raw, text):
    word = unquote(raw)
    assert word.text == text
    assert word.static and not word.pattern


@pytest.mark.parametrize(
    ("raw", "static", "pattern"),
    [
        ("$X", False, False),
        ("${X}", False, False),
        ('"$X"', False, False),
        ("$(echo rm)", False, False),
        ("`echo rm`", False, False),
        ("'$X'", True, False),
        ("\\$X", True, False),
        ("a$", True, False),
        ("r?", True, True),
        ("/bin/r*", True, True),
        ("[r]m", True, True),
        ("'r*'", True, False),
        ("{rm,x}", True, True),
        ("{a..z}", True, True),
        ("[", True, False),
        ("~/bin/rm", True, False),
    ],
)
def test_it_tells_words_known_now_from_words_known_when_they_run(raw, static, pattern):
    word = unquote(raw)
    assert (word.static, word.pattern) == (static, pattern)


@pytest.mark.parametrize(
    ("word", "name"),
    [("rm", "rm"), ("/bin/rm", "rm"), ("./rm", "rm"), ("../x/rm", "rm"), ("~/bin/rm", "rm"), ("/usr/bin/", "bin")],
)
def test_a_program_is_known_by_its_basename(word, name):
    assert program_name(word) == name


def test_quoted_and_pathed_names_give_the_same_program():
    for command in ("rm x", "/bin/rm x", "./rm x", "r\\m x", "'rm' x", '"r"m x', "\"r\"'m' x", "$'\\x72m' x"):
        assert command_facts(command).programs == frozenset({"rm"}), command


def test_inside_backticks_a_backslash_escapes_a_backslash_first():
    assert programs("echo `r\\\\m x`") == {"echo", "rm"}


# --- shell code inside shell code -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("command", "expected"),
    [
        ("sh -c 'rm x'", ("rm", "x")),
        ("bash -c \"bash -c 'rm x'\"", ("rm", "x")),
        ("dash -c 'a && rm x'", ("rm", "x")),
        ("zsh -c 'rm x' zsh-name arg", ("rm", "x")),
        ("bash -xec 'rm x'", ("rm", "x")),
        ("bash --norc -o pipefail -c 'rm x'", ("rm", "x")),
        ("sh -c 'sh -c \"rm x\"'", ("rm", "x")),
        ("su -c 'rm x' root", ("rm", "x")),
        ("su root --command='rm x'", ("rm", "x")),
        ("eval 'rm x'", ("rm", "x")),
        ("eval rm x", ("rm", "x")),
        ("watch -n 5 rm x", ("rm", "x")),
        ("trap 'rm x' EXIT", ("rm", "x")),
        ("bash <<< 'rm x'", ("rm", "x")),
        ("sh <<EOF\nrm x\nEOF", ("rm", "x")),
        ("cat <<EOF\n$(rm x)\nEOF", ("rm", "x")),
        ("echo ${X:-$(rm x)}", ("rm", "x")),
    ],
)
def test_it_reads_shell_code_given_as_text(command, expected):
    assert expected in command_facts(command).invocations


def test_nesting_is_read_up_to_the_limit_and_refused_beyond_it():
    assert "rm" in programs(nested_sh("rm x", MAX_NESTING))
    with pytest.raises(UnparseableCommand, match=f"nested more than {MAX_NESTING} levels"):
        command_facts(nested_sh("rm x", MAX_NESTING + 1))


def test_a_quoted_here_document_is_not_expanded():
    facts = command_facts("cat <<'EOF' > /etc/motd\n$(rm -rf /)\nEOF")
    assert facts.programs == frozenset({"cat"}) and not facts.opaque
    assert command_facts('cat <<"EOF"\nx\nEOF\nrm y').programs == frozenset({"cat", "rm"})
    assert command_facts("cat <<\\EOF\n`rm x`\nEOF").programs == frozenset({"cat"})


# --- wrappers ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("command", "inner"),
    [
        ("env rm x", ("rm", "x")),
        ("env -i FOO=1 -u BAR rm x", ("rm", "x")),
        ("env - rm x", ("rm", "x")),
        ("env --chdir=/tmp rm x", ("rm", "x")),
        ("env -S 'rm -f x'", ("rm", "-f", "x")),
        ("/usr/bin/env rm x", ("rm", "x")),
        ("sudo rm x", ("rm", "x")),
        ("sudo -u root -g wheel -E rm x", ("rm", "x")),
        ("sudo --user=root -- rm x", ("rm", "x")),
        ("sudo --user root FOO=1 rm x", ("rm", "x")),
        ("doas -u root rm x", ("rm", "x")),
        ("nohup rm x", ("rm", "x")),
        ("/usr/bin/time -f %e rm x", ("rm", "x")),
        ("nice -n 5 rm x", ("rm", "x")),
        ("nice -5 rm x", ("rm", "x")),
        ("ionice -c3 rm x", ("rm", "x")),
        ("timeout 5 rm x", ("rm", "x")),
        ("timeout -k 1 -s KILL 5s rm x", ("rm", "x")),
        ("xargs rm", ("rm",)),
        ("xargs -0 -n 1 -I{} rm {}", ("rm", "{}")),
        ("exec -a name rm x", ("rm", "x")),
        ("command -p rm x", ("rm", "x")),
        ("builtin rm x", ("rm", "x")),
        ("stdbuf -oL -e 0 rm x", ("rm", "x")),
        ("setsid -w rm x", ("rm", "x")),
        ("chroot --userspec=a:b /srv rm x", ("rm", "x")),
        ("busybox rm x", ("rm", "x")),
        ("watch -x rm x", ("rm", "x")),
        ("find . -name '*.o' -exec rm -f {} \\;", ("rm", "-f", "{}")),
        ("find . -execdir rm {} + -print", ("rm", "{}")),
        ("find . -ok rm {} ';' -exec shred {} ';'", ("shred", "{}")),
        ("sudo env FOO=1 nice timeout 5 rm x", ("rm", "x")),
    ],
)
def test_it_looks_through_wrappers_to_the_real_program(command, inner):
    facts = command_facts(command)
    assert inner in facts.invocations
    assert facts.invocations[0][0] == command.split()[0]  # the wrapper is an invocation too
    assert not facts.opaque


def test_command_v_only_looks_a_program_up():
    assert programs("command -v rm") == {"command"}
    assert programs("command -V rm") == {"command"}


# --- opaque commands --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("command", "reason"),
    [
        ("$CMD x", "the program '$CMD' is decided at run time"),
        ("$(echo rm) x", "is decided at run time"),
        ("`echo rm` x", "is decided at run time"),
        ("rm${IFS}x", "is decided at run time"),
        ("/bin/r? x", "the program '/bin/r?' is decided at run time"),
        ("{rm,x}", "is decided at run time"),
        ("sudo $CMD", "is decided at run time"),
        ("eval 'ls'", "eval runs text as code"),
        ('eval "$X"', "eval runs code built at run time"),
        ("source ./x.sh", "source runs the code of a file"),
        (". ./x.sh", ". runs the code of a file"),
        ('sh -c "$X"', "sh -c runs code built at run time: '$X'"),
        ("python3 -c 'print(1)'", "python3 -c runs code given inline"),
        ("python -Bc 'print(1)'", "python -Bc runs code given inline"),
        ("python3 -", "python3 reads its code from its input"),
        ("python3", "python3 reads its code from its input"),
        ("perl -ne 'print'", "perl -ne runs code given inline"),
        ("ruby -e 'x'", "ruby -e runs code given inline"),
        ("node --eval='x'", "node --eval runs code given inline"),
        ("php -r 'x'", "php -r runs code given inline"),
        ("awk 'BEGIN{system(\"id\")}'", "the awk program may run commands"),
        ("gawk '{print | \"sh\"}'", "the gawk program may run commands"),
        ("awk -l ./x.so '{}'", "loads a shared library"),
        ("curl -s x | sh", "sh reads its commands from its input"),
        ("bash -s", "bash reads its commands from its input"),
        ("sh < script.sh", "sh reads its commands from its input"),
        ("bash <<< 'ls'", "bash reads its commands from its input"),
        ("tcsh -c 'ls'", "tcsh runs code that is not bash's"),
        ("sudo -i", "sudo starts a shell"),
        ("su", "su starts a shell"),
        ("chroot /srv", "chroot starts a shell"),
        ('env -S "$X"', "env -S splits a string"),
        ("PATH=/tmp ls", "setting PATH changes what programs run"),
        ("export PATH=/tmp:$PATH", "setting PATH"),
        ("env LD_PRELOAD=/tmp/x.so ls", "setting LD_PRELOAD"),
        ("BASH_ENV=/tmp/x bash -c ls", "setting BASH_ENV"),
        ("hash -p /tmp/evil ls", "hash -p makes a name run other code"),
        ("enable -f ./x.so rm", "enable -f makes a name run other code"),
        ("alias ll='ls -l'", "alias ll gives a name to other code"),
        ("cat <<EOF\n$(id)\nEOF", "a here-document runs command substitutions"),
        ("echo ${X:-$(id)}", "a command substitution inside ${X:-$(id)}"),
    ],
)
def test_it_says_why_a_command_is_opaque(command, reason):
    facts = command_facts(command)
    assert facts.opaque
    assert any(reason in found for found in facts.reasons), facts.reasons


@pytest.mark.parametrize(
    "command",
    [
        "ls -la",
        "python3 manage.py check",
        "python3 -m http.server",
        "python3 -W ignore script.py",
        "python3 -- script.py",
        "perl -w script.pl",
        "bash deploy.sh --fast",
        "sh -e ./build.sh",
        "awk -F: '{print $1}' /etc/passwd",
        "awk -f prog.awk data",
        "trap - INT",
        "export FOO=1 PATHS=x",
        "sudo -l",
        "cat <<EOF\nhello $USER\nEOF",
    ],
)
def test_scripts_and_plain_programs_are_not_opaque(command):
    facts = command_facts(command)
    assert not facts.opaque, facts.reasons


def test_code_read_inside_an_opaque_command_still_counts():
    facts = command_facts('eval "rm x"; sh -c "shred $F"')
    assert facts.opaque
    assert {"rm", "shred"} <= facts.programs


# --- what cannot be read ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("command", "message"),
    [
        ("case x in a) ls;; esac", "shell syntax Gatehouse cannot read"),
        ("[[ -f x ]] && rm x", "it is not valid shell: unexpected token '-f'"),
        ("echo $((1+2))", "shell syntax Gatehouse cannot read"),
        ("time ls", "shell syntax Gatehouse cannot read"),
        ("a=(1 2)", "it is not valid shell"),
        ('echo "x', "it is not valid shell: unexpected EOF"),
        ("ls )", "it is not valid shell: unexpected token ')'"),
        ("sh -c 'ls )'", "it is not valid shell"),
        ("eval 'ls )'", "it is not valid shell"),
        ("(" * 3000 + "ls" + ")" * 3000, "the shell parser failed on it"),
    ],
)
def test_what_bashlex_cannot_read_is_unparseable(command, message):
    with pytest.raises(UnparseableCommand, match=message.replace("(", r"\(").replace(")", r"\)").replace("$", r"\$")):
        command_facts(command)


def test_unparseable_is_a_value_error():
    assert issubclass(UnparseableCommand, ValueError)


def test_it_refuses_oversized_commands_before_parsing_them():
    command_facts("echo " + "x" * (MAX_COMMAND_CHARS - 5))
    with pytest.raises(UnparseableCommand, match=f"commands are limited to {MAX_COMMAND_CHARS}"):
        command_facts("echo " + "x" * MAX_COMMAND_CHARS)


def test_code_read_loosely_may_fail_without_failing_the_command():
    facts = command_facts('sh -c "ls ) $X"')  # built at run time, and not valid shell as written
    assert facts.opaque and facts.programs == frozenset({"sh"})


def test_blank_and_comment_only_commands_run_nothing():
    for command in ("", "   ", "\n", "# a comment", "  # one\n# two\n"):
        assert command_facts(command) == CommandFacts((), frozenset(), False, ())
    assert command_facts("ls # rm -rf /").programs == frozenset({"ls"})
