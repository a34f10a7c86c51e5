"""Parse short human durations such as "24h", "30m", "7d", "90s" or "1h30m"."""

import re
from datetime import timedelta

UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_PART = re.compile(r"(\d+)([smhdw])")
_WHOLE = re.compile(r"(?:\d+[smhdw])+")


class DurationError(ValueError):
    """The text is not a positive duration like "24h"."""


def parse_duration(text: str) -> timedelta:
    """Turn "24h", "30m", "7d", "90s", "2w" or a mix like "1h30m" into a positive timedelta."""
    cleaned = text.strip().lower()
    if not _WHOLE.fullmatch(cleaned):
        raise DurationError(
            f"{text!r} is not a duration; use a number and a unit (s, m, h, d, w), e.g. 90s, 30m, 24h, 7d"
        )
    seconds = sum(int(number) * UNIT_SECONDS[unit] for number, unit in _PART.findall(cleaned))
    if seconds <= 0:
        raise DurationError(f"{text!r} is not a positive duration")
    try:
        return timedelta(seconds=seconds)
    except OverflowError:
        raise DurationError(f"{text!r} is too long a duration") from None
