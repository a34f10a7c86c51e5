"""SshSessionPolicy: the SSH-specific verdicts on top of the command guardrails."""

from connections.policy.rules import GuardrailMatch, GuardrailRule, MaskingRule, PolicySpec
from connections.policy.session_policy import CompiledPolicy
from connections.policy.ssh_policy import SshSessionPolicy

NO_RM = GuardrailRule("no-rm", "deny", GuardrailMatch(programs=("rm",)))


def policy(**fields) -> SshSessionPolicy:
    spec = PolicySpec(name="ssh", **fields)
    return SshSessionPolicy(CompiledPolicy(spec, ("ssh", 1), b"k" * 32))


def test_it_judges_a_line_it_could_not_fully_see_by_the_unparseable_action() -> None:
    guarded = policy(guardrails=(NO_RM,), unparseable="deny")
    assert guarded.check_command("ls -l").action == "allow"
    uncertain = guarded.check_command("ls -l", uncertain=True)
    assert (uncertain.action, uncertain.rule) == ("deny", "uncertain")
    assert "type it out in full" in uncertain.message
    assert guarded.check_command("rm -rf /", uncertain=True).rule == "no-rm"  # a stricter rule still names itself


def test_it_lets_an_uncertain_line_through_where_unparseable_commands_are_allowed() -> None:
    assert policy(guardrails=(NO_RM,), unparseable="allow").check_command("ls", uncertain=True).action == "allow"


def test_it_gives_a_shell_without_a_terminal_the_opaque_action() -> None:
    for action in ("allow", "review", "deny"):
        verdict = policy(guardrails=(NO_RM,), opaque=action).check_blind_shell()
        assert (verdict.action, verdict.rule) == (action, "opaque")
    assert "exec" in policy(opaque="deny").check_blind_shell().message


def test_it_judges_commands_only_when_the_policy_has_something_to_say() -> None:
    assert not policy().judges_commands
    assert policy(guardrails=(NO_RM,)).judges_commands
    assert policy(default="review").judges_commands


def test_it_masks_secrets_in_command_text_and_offers_its_detectors_for_output() -> None:
    masked = policy(masking=(MaskingRule("pii", detectors=("email",)),))
    assert "bot@example.com" not in masked.mask_text("mail -s hi bot@example.com")
    assert [rule.name for rule in masked.detector_rules] == ["pii"]
    assert policy().mask_text("mail bot@example.com") == "mail bot@example.com"
