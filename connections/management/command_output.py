"""How the connections app's management commands print tables and validation errors."""

from datetime import datetime, timedelta

from django.core.exceptions import ValidationError

STATEMENT_WIDTH = 60


def format_table(headers: list[str], rows: list[list[str]]) -> str:
    """Left-aligned columns separated by two spaces."""
    widths = [max(len(str(cell)) for cell in column) for column in zip(headers, *rows, strict=True)]
    lines = [
        "  ".join(str(cell).ljust(width) for cell, width in zip(row, widths, strict=True)) for row in [headers, *rows]
    ]
    return "\n".join(line.rstrip() for line in lines)


def validation_message(error: ValidationError) -> str:
    return "; ".join(error.messages)


def age(since: datetime, now: datetime) -> str:
    """How long ago, in the largest whole unit: 42s, 7m, 3h, 12d."""
    seconds = max(0, int((now - since) / timedelta(seconds=1)))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def shorten(text: str, width: int = STATEMENT_WIDTH) -> str:
    """One line of at most `width` characters."""
    line = " ".join(text.split())
    return line if len(line) <= width else line[: width - 1] + "…"
