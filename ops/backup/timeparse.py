"""Timestamps for ``--at``: strict ISO 8601 with an explicit offset, always aware UTC.

A restore target that is off by the operator's UTC offset restores the wrong data,
so nothing is guessed: no naive times (whose clock?), no bare dates (which end of the
day?), no "yesterday". Accepted::

    2026-11-24T03:00Z
    2026-11-24T03:00:00Z
    2026-11-24 03:00:00+01:00
    2026-11-24T03:00:00.123+01:00
    now                       (this moment: the newest data there is)

``parse_utc`` / ``format_utc`` read and write the timestamps stored in manifests.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone

from ops.errors import ConfigError

EXAMPLE = "2026-11-24T03:00:00Z"
EXAMPLES = "2026-11-24T03:00:00Z or 2026-11-24T04:00:00+01:00"

_DATE = r"(?P<y>\d{4})-(?P<mo>\d{2})-(?P<d>\d{2})"
_TIME = r"(?P<h>\d{2}):(?P<mi>\d{2})(?::(?P<s>\d{2})(?:[.,](?P<frac>\d{1,9}))?)?"
_OFFSET = r"(?P<tz>[Zz]|[+-]\d{2}:\d{2})"
_FULL = re.compile(rf"{_DATE}[T ]{_TIME}{_OFFSET}")
_NAIVE = re.compile(rf"{_DATE}[T ]{_TIME}")
_DATE_ONLY = re.compile(rf"{_DATE}(?:{_OFFSET})?")
_OFFSET_ONLY = re.compile(r"[+-](?P<oh>\d{2}):(?P<om>\d{2})")


def parse_at(text: str, *, now: datetime) -> datetime:
    """Parse an operator-given point in time; refuse anything ambiguous or in the future."""
    if now.tzinfo is None:
        raise ValueError("parse_at: now must be timezone-aware")
    raw = text
    text = (text or "").strip()
    if not text:
        raise ConfigError("no timestamp given", hint=f"give an ISO 8601 time with an offset, e.g. {EXAMPLES}")
    if text.lower() == "now":
        return as_utc(now)
    if _DATE_ONLY.fullmatch(text):
        date = text[:10]
        raise ConfigError(f"timestamp {raw!r} is a date without a time of day",
                          hint=f"say which moment, e.g. {date}T00:00:00Z or {date}T23:59:59Z")
    if _NAIVE.fullmatch(text):
        raise ConfigError(f"timestamp {raw!r} has no UTC offset (whose clock?)",
                          hint=f"add Z for UTC or the offset, e.g. {text}Z or {text}+01:00")
    m = _FULL.fullmatch(text)
    if not m:
        raise ConfigError(f"timestamp {raw!r} is not ISO 8601 with an offset",
                          hint=f"use e.g. {EXAMPLES}")
    try:
        value = _build(m)
    except ValueError as exc:
        raise ConfigError(f"timestamp {raw!r} is not a valid time: {exc}", hint=f"use e.g. {EXAMPLES}") from None
    if value > now:
        raise ConfigError(f"timestamp {raw!r} ({format_utc(value)}) is in the future (now is {format_utc(now)})",
                          hint="restore targets must be at or before now")
    return value


def parse_utc(text: str) -> datetime:
    """Read a stored timestamp (manifest fields): ISO 8601 with Z or an offset -> aware UTC."""
    if not isinstance(text, str):
        raise ValueError(f"expected an ISO 8601 string, got {type(text).__name__}")
    m = _FULL.fullmatch(text.strip())
    if not m:
        raise ValueError(f"{text!r} is not ISO 8601 with Z or an offset, e.g. {EXAMPLE}")
    return _build(m)


def format_utc(value: datetime) -> str:
    """``2026-11-24T03:00:00Z`` (microseconds kept when present)."""
    return as_utc(value).isoformat().replace("+00:00", "Z")


def as_utc(value: datetime) -> datetime:
    if value.tzinfo is None:
        raise ValueError(f"naive datetime {value!r}: dates must be timezone-aware")
    return value.astimezone(UTC)


def _build(m: re.Match) -> datetime:
    frac = (m["frac"] or "").ljust(6, "0")[:6]
    tz = m["tz"]
    if tz in ("Z", "z"):
        tzinfo = UTC
    else:
        o = _OFFSET_ONLY.fullmatch(tz)
        hours, minutes = int(o["oh"]), int(o["om"])
        if hours > 23 or minutes > 59:
            raise ValueError(f"offset {tz} out of range")
        delta = timedelta(hours=hours, minutes=minutes)
        tzinfo = timezone(-delta if tz.startswith("-") else delta)
    value = datetime(int(m["y"]), int(m["mo"]), int(m["d"]), int(m["h"]), int(m["mi"]),
                     int(m["s"] or 0), int(frac or 0), tzinfo=tzinfo)
    return value.astimezone(UTC)
