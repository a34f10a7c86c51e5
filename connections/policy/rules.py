"""What a policy says, as plain values: the shared language of the policy file, the model and the engines.

A `PolicySpec` is what `policies apply` reads from YAML, what the `Policy`
model stores (as `to_dict()` JSON) and what a session's engine compiles into
its guardrail and masking objects. Nothing here imports Django; nothing here
validates (beyond refusing a match that mixes SQL and command keys):
`connections.policy.policy_file` does that, with line numbers.

One policy serves PostgreSQL and SSH connections. A guardrail that sets SQL
keys (SQL_MATCH_KEYS) is an SQL rule, judged by
connections.policy.guardrails; one that sets command keys
(COMMAND_MATCH_KEYS: `programs`, `args_regex`) is a command rule, judged by
connections.policy.command_guardrails; one that sets neither (no key, or
only `regex`) applies to both. A rule cannot set both kinds.

SQL matching: a rule's *filters* (`kind`, `schemas`, `tables`) narrow
which statements it is about; its *conditions* (`functions`,
`dangerous_functions`, `copy_program`, `copy_file`, `without_where`,
`regex`) say what is wrong with them. A rule matches a statement when every
filter it sets matches and, if it sets any condition, at least one condition
holds. A rule with neither matches every statement.

Command matching works the same way on each program a command runs:
`programs` is the filter, `args_regex` (on that program's arguments) and
`regex` (on the whole command line) the conditions.
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
SQL_MATCH_KEYS = (
    "kind",
    "schemas",
    "tables",
    "functions",
    "dangerous_functions",
    "copy_program",
    "copy_file",
    "without_where",
)
COMMAND_MATCH_KEYS = ("programs", "args_regex")


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
    - `regex`: a Python regex searched in the statement's (or command line's) text, a last resort.
    - `programs`: glob patterns of the programs a command runs, matched against
      the program's basename ("rm", "python*"), or against its path as written
      when the pattern holds a "/" ("/usr/local/bin/*").
    - `args_regex`: a Python regex searched in each matching program's
      arguments, joined by single spaces ("-rf /" for `rm -rf /`).

    Setting SQL keys and command keys in one match is a ValueError.
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
    programs: tuple[str, ...] = ()
    args_regex: str = ""

    def __post_init__(self) -> None:
        if self.sql_keys() and self.command_keys():
            raise ValueError(
                f"a guardrail match sets SQL keys ({', '.join(self.sql_keys())}) and command keys "
                f"({', '.join(self.command_keys())}); a rule is about SQL statements or about commands"
            )

    def sql_keys(self) -> tuple[str, ...]:
        """The SQL keys this match sets."""
        return tuple(key for key in SQL_MATCH_KEYS if getattr(self, key))

    def command_keys(self) -> tuple[str, ...]:
        """The command keys this match sets."""
        return tuple(key for key in COMMAND_MATCH_KEYS if getattr(self, key))

    @property
    def for_sql(self) -> bool:
        """Whether SQL statements are judged by this rule (it sets no command key)."""
        return not self.command_keys()

    @property
    def for_commands(self) -> bool:
        """Whether commands are judged by this rule (it sets no SQL key)."""
        return not self.sql_keys()


@dataclass(frozen=True)
class GuardrailRule:
    """One ordered rule; the first rule that matches a statement (or a program a command runs) decides it.

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
    unparseable: str = "deny"  # the action for SQL or a command line the parser rejects: fail closed
    # DO blocks and function bodies; commands whose programs are only known when they run (eval, $X, python -c)
    opaque: str = "review"
    guardrails: tuple[GuardrailRule, ...] = ()
    masking: tuple[MaskingRule, ...] = ()
