"""A PostgreSQL session's events as the engine records them (see connections/protocols/pgwire/tracker.py).

The values are masked with the real masker before they are recorded, as
the gateway does: the canaries below must never show up on a page.
"""

from connections.policy.masking import Masker
from connections.policy.rules import MaskingRule

CANARY_EMAIL = "canary.alice@example.com"
CANARY_CARD = "4111 1111 1111 1111"
REVIEW_ID = "7d1f8a54-3f39-4c43-9a4e-0d4b8a3b8f10"
DENIAL = 'Gatehouse denied this statement: rule "no-drops": dropping tables is not allowed'

MASKER = Masker((MaskingRule("pii", "full", detectors=("email", "credit_card")),), b"k" * 32)
# Recorded text only, never run: the literal is what the masker must find.
LOOKUP = MASKER.mask_statement(f"SELECT id, email, card FROM customers WHERE email = '{CANARY_EMAIL}'")  # noqa: S608
MASKED_EMAIL = MASKER.mask_text(CANARY_EMAIL)
MASKED_CARD = MASKER.mask_text(CANARY_CARD)
DELETE = "DELETE FROM orders WHERE id = $1"


def session_events() -> list[tuple[str, dict]]:
    """Three statements: a masked lookup, a delete approved in review, a drop denied by policy."""
    return [
        ("param", {"server_version": "16.4"}),
        ("sql", {"n": 1, "text": LOOKUP}),
        (
            "result",
            {
                "n": 1,
                "ms": 0.84,
                "columns": [["id", 23], ["email", 25], ["card", 25]],
                "rows": [["42", MASKED_EMAIL, MASKED_CARD]],
                "tag": "SELECT 1",
            },
        ),
        ("review", {"id": REVIEW_ID, "rule": "deletes", "status": "pending", "approvals": 1}),
        ("review", {"id": REVIEW_ID, "status": "approved", "by": "alice", "comment": "known cleanup"}),
        ("policy", {"action": "allow", "rule": "deletes", "message": "approved by alice", "text": DELETE}),
        ("sql", {"n": 2, "text": DELETE, "params": ["7"]}),
        ("result", {"n": 2, "ms": 1.5, "tag": "DELETE 1"}),
        ("sql", {"n": 3, "text": "DROP TABLE customers"}),
        ("policy", {"action": "deny", "rule": "no-drops", "message": DENIAL, "n": 3}),
        ("result", {"n": 3, "ms": 0.3, "error": {"code": "42501", "message": DENIAL, "severity": "ERROR"}}),
        ("notice", {"code": "00000", "message": "vacuum suggested", "severity": "NOTICE"}),
        ("closed", {"reason": "the client closed the connection"}),
    ]


def many_statements(count: int) -> list[tuple[str, dict]]:
    """`count` small statements, each with its result."""
    events = []
    for n in range(1, count + 1):
        events.append(("sql", {"n": n, "text": f"SELECT {n}"}))
        events.append(
            ("result", {"n": n, "ms": 0.1, "columns": [["?column?", 23]], "rows": [[str(n)]], "tag": "SELECT 1"})
        )
    return events
