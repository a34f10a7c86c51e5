"""Sample events, and raw access to recording files for the tamper tests."""

from recordings.actions import recording_file
from recordings.models import Session

STATEMENTS = [
    ("sql", {"text": "SELECT id, email FROM customers WHERE id = $1", "params": ["42"]}),
    ("result", {"columns": [["id", "int4"], ["email", "text"]], "rows": [["42", "***"]], "tag": "SELECT 1"}),
    ("sql", {"text": "UPDATE orders SET state = 'shipped' WHERE id = 7"}),
    ("result", {"tag": "UPDATE 1", "ms": 1.25}),
    ("notice", {"severity": "WARNING", "message": "naïve café ☕"}),
    ("sql", {"text": "SELECT 1/0"}),
    ("result", {"error": {"sqlstate": "22012", "message": "division by zero"}}),
]


def read_lines(session: Session) -> list[bytes]:
    return recording_file(session).read_bytes().splitlines(keepends=True)


def write_lines(session: Session, lines: list[bytes]) -> None:
    recording_file(session).write_bytes(b"".join(lines))
