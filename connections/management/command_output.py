"""How the connections app's management commands print tables and validation errors."""

from django.core.exceptions import ValidationError


def format_table(headers: list[str], rows: list[list[str]]) -> str:
    """Left-aligned columns separated by two spaces."""
    widths = [max(len(str(cell)) for cell in column) for column in zip(headers, *rows, strict=True)]
    lines = [
        "  ".join(str(cell).ljust(width) for cell, width in zip(row, widths, strict=True)) for row in [headers, *rows]
    ]
    return "\n".join(line.rstrip() for line in lines)


def validation_message(error: ValidationError) -> str:
    return "; ".join(error.messages)
