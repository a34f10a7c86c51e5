"""What a policy says, as plain values: the shared language of the policy file, the model and the engines.

A `PolicySpec` is what `policies apply` reads from YAML, what the `Policy`
model stores (as `to_dict()` JSON) and what a session's engine compiles into
its guardrail and masking objects. Nothing here imports Django; nothing here
validates: `connections.policy.policy_file` does that, with line numbers.

Guardrail matching: a rule's *filters* (`kind`, `schemas`, `tables`) narrow
which statements it is about; its *conditions* (`functions`,
`dangerous_functions`, `copy_program`, `copy_file`, `without_where`,
`regex`) say what is wrong with them. A rule matches a statement when every
filter it sets matches and, if it sets any condition, at least one condition
holds. A rule with neither matches every statement.
"""

from dataclasses import dataclass, field

ACTIONS = ("allow", "deny", "review")
MASK_STYLES = ("full", "partial", "hash", "null")
DETECTORS = (
    "email",
    "credit_card",
    "iban",
    "ssn",
    "phone",
    "jwt",
    "aws_key",
    "private_key",
    "api_token",
)
DEFAULT_PARTIAL_KEEP = 4
MIN_APPROVALS, MAX_APPROVALS = 1, 32  # approvals a review rule may require
MAX_REVIEW_TIMEOUT_SECONDS = 24 * 3600  # the longest a review rule may hold a statement


@dataclass(frozen=True)
class GuardrailMatch:
    """When a guardrail applies (see the module docstring for how the keys combine).

    - `kind`: statement kinds, upper case: "DROP" (any DROP) or "DROP TABLE"
      (one object type), "SELECT", "UPDATE", "COPY", "GRANT", "SET", ...
    - `schemas`, `tables`: glob patterns, case-insensitive; a table pattern
      may be schema-qualified ("billing.*", "public.users").
    - `functions`: glob patterns of function names ("dblink*", "pg_catalog.pg_read_file").
    - `dangerous_functions`: the built-in list of file, network and
      backend-killing functions (connections.policy.sql_facts.DANGEROUS_FUNCTIONS).
    - `copy_program`: COPY ... TO/FROM PROGRAM; `copy_file`: COPY to or from a server file.
    - `without_where`: an UPDATE or DELETE with no WHERE clause.
    - `regex`: a Python regex searched in the statement's text, a last resort.
    """

    kind: tuple[str, ...] = ()
    schemas: tuple[str, ...] = ()
    tables: tuple[str, ...] = ()
    functions: tuple[str, ...] = ()
    dangerous_functions: bool = False
    copy_program: bool = False
    copy_file: bool = False
    without_where: bool = False
    regex: str = ""


@dataclass(frozen=True)
class GuardrailRule:
    """One ordered rule; the first rule that matches a statement decides it.

    `approvals` and `timeout` matter only for action "review" (the policy
    file accepts them only there): how many reviewers must approve a held
    statement, and how many seconds to wait for them before the statement is
    denied. A timeout of None means the deployment's default
    (GATEHOUSE_REVIEW_TIMEOUT_SECONDS).
    """

    name: str
    action: str  # one of ACTIONS
    match: GuardrailMatch = field(default_factory=GuardrailMatch)
    message: str = ""  # shown to the client after the rule's name, if set
    approvals: int = 1  # approvals a held statement needs (review only), MIN_APPROVALS..MAX_APPROVALS
    timeout: float | None = None  # seconds to wait for them (review only); None: the deployment default


@dataclass(frozen=True)
class MaskingRule:
    """Mask values by column name pattern, by content detector, or both.

    `columns` are glob patterns, case-insensitive: "api_key", "*password*"
    (column name only), "users.email" or "*.token" (table.column),
    "billing.users.email" (schema.table.column). `detectors` name entries of
    DETECTORS and apply to text values in every column.
    """

    name: str
    style: str = "full"  # one of MASK_STYLES
    columns: tuple[str, ...] = ()
    detectors: tuple[str, ...] = ()
    keep: int = DEFAULT_PARTIAL_KEEP  # characters kept by the "partial" style


@dataclass(frozen=True)
class PolicySpec:
    """A whole policy: ordered guardrails, masking rules and the fallbacks."""

    name: str
    default: str = "allow"  # the action when no guardrail matches
    unparseable: str = "deny"  # the action for SQL the parser rejects: fail closed
    opaque: str = "review"  # DO blocks and function bodies, which cannot be looked into
    guardrails: tuple[GuardrailRule, ...] = ()
    masking: tuple[MaskingRule, ...] = ()
