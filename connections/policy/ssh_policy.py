"""What an SSH session asks of its connection's policy: verdicts on commands, and masking of terminal text.

The same policy file serves PostgreSQL and SSH connections. For SSH, the
guardrails that apply to commands judge exec commands and interactive shell
lines (connections.policy.command_guardrails), and the masking rules'
content detectors mask terminal output (column rules have no columns to
match here).
"""

from connections.policy.guardrails import Decision, Verdict
from connections.policy.session_policy import CompiledPolicy

BLIND_SHELL_TEXT = "<a shell without a terminal, reading commands from its input>"
BLIND_SHELL_DETAIL = (
    "a shell without a terminal reads its commands from input that Gatehouse cannot judge line by line; "
    "run each command with exec (ssh host 'command') instead"
)
UNCERTAIN_DETAIL = (
    "the gateway cannot see the whole command line (history recall, completion or an editing key); type it out in full"
)


class SshSessionPolicy:
    """One SSH session's view of a compiled policy."""

    def __init__(self, compiled: CompiledPolicy) -> None:
        self.compiled = compiled
        self.session = compiled.for_session()
        spec = compiled.spec
        self.detector_rules = tuple(rule for rule in spec.masking if rule.detectors)  # for terminal output
        self.hash_key = compiled.hash_key
        self.judges_commands = spec.default != "allow" or compiled.commands.has_rules

    def check_command(self, command: str, uncertain: bool = False) -> Verdict:
        """The verdict on a command; a line the gateway could not fully see is at least as strict as `unparseable`."""
        verdict = self.session.check_command(command)
        fallback = self.compiled.spec.unparseable
        if not uncertain or verdict.action != "allow" or fallback == "allow":
            return verdict
        return Decision.of(fallback, "uncertain", UNCERTAIN_DETAIL, subject="command").verdict(command)

    def check_blind_shell(self) -> Verdict:
        """The verdict on a shell without a terminal (`ssh host < script`): the policy's `opaque` action."""
        decision = Decision.of(self.compiled.spec.opaque, "opaque", BLIND_SHELL_DETAIL, subject="command")
        return decision.verdict(BLIND_SHELL_TEXT)

    def mask_text(self, text: str) -> str:
        """A command line as recordings and reviewers get it, with the detectors' finds masked.

        Not `mask_statement`: that one skips text without SQL literals, and a shell command has none.
        """
        masker = self.session.masker
        return masker.mask_text(text) if masker is not None else text
