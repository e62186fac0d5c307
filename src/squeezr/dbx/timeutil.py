"""Times in dbx: how they are written, read back, and given on the command line.

Files store times as ISO 8601 UTC text with microseconds (``created``, ``start``, ``end``),
which sorts as text and reads in any language; log events store epoch seconds (``ts``),
which is cheaper to stamp. Reading is lenient in one place only, :func:`to_datetime`, so a
hand-edited or foreign time never becomes a traceback: an unreadable one is ``None`` (and
``dbx verify`` reports it).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

from squeezr.dbx.errors import UserError

__all__ = ["now_iso", "parse_since", "to_datetime"]

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def now_iso() -> str:
    """The current time as an ISO 8601 UTC string with microseconds (sorts as text)."""
    return datetime.now(UTC).isoformat()


def to_datetime(value: Any) -> datetime | None:
    """A timezone-aware datetime from an ISO string, epoch seconds or a datetime; ``None`` when
    the value is absent or unreadable. Naive times are taken as local time (one that has no
    equivalent within years 1-9999 in UTC, such as ``0001-01-01``, is unreadable)."""
    if isinstance(value, datetime):
        moment = value
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        try:
            return datetime.fromtimestamp(value, UTC)
        except (OverflowError, OSError, ValueError):
            return None
    elif isinstance(value, str):
        try:
            moment = datetime.fromisoformat(value)
        except ValueError:
            return None
    else:
        return None
    if moment.tzinfo:
        return moment
    try:
        return moment.astimezone()
    except (ValueError, OverflowError):
        return None


def parse_since(since: str | datetime, now: datetime | None = None) -> datetime:
    """``7d`` / ``12h`` / ``30m`` / ``90s`` / ``2w`` ago, or an ISO date/time or a datetime
    (local if naive), as a timezone-aware datetime; a UserError if it cannot be read."""
    if isinstance(since, str):
        match = _DURATION.match(since)
        if match:
            amount, unit = float(match.group(1)), match.group(2)
            try:
                return (now or datetime.now(UTC)) - timedelta(**{_UNITS[unit]: amount})
            except OverflowError:
                raise UserError(
                    f"--since {since!r} reaches back before year 1; give a shorter duration"
                ) from None
        moment = to_datetime(since.strip())
    else:
        moment = to_datetime(since)
    if moment is None:
        raise UserError(
            f"cannot read --since {str(since)!r}; give a duration such as 7d, 12h, 30m "
            "or an ISO date such as 2024-05-31 or 2024-05-31T14:00 (years 1 to 9999)"
        )
    return moment
