"""ops/backup/timeparse.py: strict --at parsing, always aware UTC, clear refusals."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from ops.backup.timeparse import EXAMPLE, format_utc, parse_at, parse_utc
from ops.errors import ConfigError

NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(("text", "expected"), [
    ("2026-11-24T03:00Z", datetime(2026, 11, 24, 3, 0, tzinfo=UTC)),
    ("2026-11-24T03:00:00Z", datetime(2026, 11, 24, 3, 0, tzinfo=UTC)),
    ("2026-11-24 03:00:00Z", datetime(2026, 11, 24, 3, 0, tzinfo=UTC)),
    ("2026-11-24T03:00:00z", datetime(2026, 11, 24, 3, 0, tzinfo=UTC)),
    ("  2026-11-24T03:00:00Z\n", datetime(2026, 11, 24, 3, 0, tzinfo=UTC)),
    ("2026-11-24T03:00:00.123+01:00", datetime(2026, 11, 24, 2, 0, 0, 123000, tzinfo=UTC)),
    ("2026-11-24T03:00:00.123456789+00:00", datetime(2026, 11, 24, 3, 0, 0, 123456, tzinfo=UTC)),
    ("2026-11-24 03:00-05:30", datetime(2026, 11, 24, 8, 30, tzinfo=UTC)),
    # An offset that crosses midnight lands on the previous UTC day.
    ("2026-11-24T00:30+02:00", datetime(2026, 11, 23, 22, 30, tzinfo=UTC)),
])
def test_accepted_forms_become_aware_utc(text, expected):
    value = parse_at(text, now=NOW)
    assert value == expected
    assert value.tzinfo is UTC and value.utcoffset() == timedelta(0)


def test_the_word_now_is_this_moment():
    assert parse_at("now", now=NOW) == NOW and parse_at(" NOW ", now=NOW) == NOW


def test_now_itself_is_accepted_and_now_may_have_any_offset():
    assert parse_at("2026-11-24T12:00:00Z", now=NOW) == NOW
    plus_one = NOW.astimezone(timezone(timedelta(hours=1)))
    assert parse_at("2026-11-24T13:00:00+01:00", now=plus_one) == NOW


def _refusal(text: str, now: datetime = NOW) -> str:
    with pytest.raises(ConfigError) as info:
        parse_at(text, now=now)
    message = str(info.value)
    assert "\n" not in message, "errors are one line"
    return message


@pytest.mark.parametrize("text", ["2026-11-24T03:00:00", "2026-11-24 03:00", "2026-11-24T03:00:00.5"])
def test_naive_times_are_refused_with_the_same_time_made_explicit(text):
    message = _refusal(text)
    assert "no UTC offset" in message
    assert f"{text.strip()}Z" in message  # the accepted form of what they typed


@pytest.mark.parametrize("text", ["2026-11-24", "2026-11-24Z", "2026-11-24+01:00"])
def test_date_only_is_refused_naming_both_ends_of_the_day(text):
    message = _refusal(text)
    assert "date without a time" in message
    assert "2026-11-24T00:00:00Z" in message and "2026-11-24T23:59:59Z" in message


@pytest.mark.parametrize("text", [
    "", "   ", "yesterday", "24/11/2026 03:00Z", "2026-11-24T3:00Z", "2026-11-24T03Z",
    "2026-11-24T03:00:00+0100", "2026-11-24T03:00:00 UTC", "2026-11-24T03:00:00+01", "20261124T030000Z",
    "2026-11-24T03:00:00ZZ", "1764000000",
])
def test_malformed_is_refused_with_an_accepted_example(text):
    assert EXAMPLE in _refusal(text)


@pytest.mark.parametrize("text", ["2026-13-01T00:00Z", "2026-02-30T00:00Z", "2026-11-24T24:00Z",
                                  "2026-11-24T03:60Z", "2026-11-24T03:00+24:00"])
def test_impossible_values_are_refused_with_an_example(text):
    message = _refusal(text)
    assert "not a valid time" in message and EXAMPLE in message


def test_future_is_refused_naming_now():
    message = _refusal("2026-11-24T12:00:01Z")
    assert "in the future" in message and "now is 2026-11-24T12:00:00Z" in message
    # The comparison is made in UTC: 13:30+01:00 is 12:30Z, after now.
    message = _refusal("2026-11-24T13:30:00+01:00")
    assert "(2026-11-24T12:30:00Z)" in message


def test_naive_now_is_a_programming_error():
    with pytest.raises(ValueError):
        parse_at("2026-11-24T03:00Z", now=datetime(2026, 11, 24, 12, 0))


def test_stored_timestamps_round_trip():
    value = datetime(2026, 11, 24, 3, 0, 5, 250000, tzinfo=UTC)
    assert format_utc(value) == "2026-11-24T03:00:05.250000Z"
    assert format_utc(datetime(2026, 11, 24, 3, tzinfo=UTC)) == "2026-11-24T03:00:00Z"
    assert format_utc(datetime(2026, 11, 24, 4, tzinfo=timezone(timedelta(hours=1)))) == "2026-11-24T03:00:00Z"
    assert parse_utc(format_utc(value)) == value
    with pytest.raises(ValueError):
        parse_utc("2026-11-24T03:00:00")
    with pytest.raises(ValueError):
        format_utc(datetime(2026, 11, 24, 3))
