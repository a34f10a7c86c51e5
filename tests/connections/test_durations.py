from datetime import timedelta

import pytest

from connections.durations import DurationError, parse_duration


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("24h", timedelta(hours=24)),
        ("30m", timedelta(minutes=30)),
        ("7d", timedelta(days=7)),
        ("90s", timedelta(seconds=90)),
        ("2w", timedelta(weeks=2)),
        ("1h30m", timedelta(minutes=90)),
        (" 12H ", timedelta(hours=12)),
    ],
)
def test_it_parses_durations(text, expected):
    assert parse_duration(text) == expected


@pytest.mark.parametrize("text", ["", "24", "h", "1.5h", "-1h", "1y", "24 h", "0s", "0h0m", "forever"])
def test_it_rejects_bad_durations(text):
    with pytest.raises(DurationError):
        parse_duration(text)


def test_it_rejects_overflowing_durations_with_a_clear_error():
    with pytest.raises(DurationError, match="too long"):
        parse_duration("99999999999999d")
