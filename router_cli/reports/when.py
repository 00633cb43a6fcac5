"""The window a report covers: ``--since``/``--until`` read, checked, and cut into days.

    since = parse_when("7d")                 # aware, UTC
    for start, end, day in days(since, until, utc=False): ...
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone

from ..errors import UsageError

_RELATIVE = re.compile(r"^\s*(\d+)\s*([mhdw])\s*$")
_UNITS = {"m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
ACCEPTED_FORMS = "7d, 24h, 30m, 2w, YYYY-MM-DD or an ISO timestamp such as 2026-11-01T09:00"
# Past this, reports cover only the days that hold calls (not thousands of empty ones).
MAX_CHART_WINDOW = timedelta(days=400)


def parse_when(text: str, *, now: datetime | None = None, utc: bool = False, option: str = "--since") -> datetime:
    """A point in time (aware, UTC) from a relative age or a date/timestamp.

    Dates and timestamps without a zone are read in the local zone, or UTC with ``utc``.
    """
    now = now or datetime.now(timezone.utc)
    try:
        match = _RELATIVE.match(text)
        if match:
            return now - timedelta(**{_UNITS[match.group(2)]: int(match.group(1))})
        value = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
        if value.tzinfo is None:
            value = value.replace(tzinfo=timezone.utc) if utc else value.astimezone()
        return value.astimezone(timezone.utc)
    except (ValueError, OverflowError):
        raise UsageError(f"{option}: cannot read {text!r}; use {ACCEPTED_FORMS}") from None


def iso(moment: datetime) -> str:
    """``2026-11-01T09:00:00.000Z``: how reports show a moment (as the ledger stores it)."""
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def checked_window(since: datetime, until: datetime | None) -> tuple[datetime, datetime]:
    """The window, its end no later than now (nothing is recorded in the future)."""
    now = datetime.now(timezone.utc)
    until = min(until or now, now)
    if until <= since:
        raise UsageError(f"--until ({iso(until)}) is not after --since ({iso(since)})")
    return since, until


def previous_since(since: datetime, until: datetime) -> datetime:
    """The start of the window of equal length just before [since, until)."""
    try:
        return since - (until - since)
    except OverflowError:
        return datetime.min.replace(tzinfo=timezone.utc)


def days(since: datetime, until: datetime, utc: bool):
    """(start, end, local date) for each calendar day the window touches."""
    start = since
    while start < until:
        local = start.astimezone(timezone.utc) if utc else start.astimezone()
        day = local.date()
        midnight = datetime.combine(day + timedelta(days=1), datetime.min.time())
        # A naive datetime's astimezone() reads it in the local zone, DST included.
        next_midnight = midnight.replace(tzinfo=timezone.utc) if utc else midnight.astimezone()
        # Where DST skips midnight (Santiago, Cairo...), that time reads as the hour
        # before: step on by hours until the date really changes.
        while next_midnight <= start or (not utc and next_midnight.astimezone().date() == day):
            next_midnight += timedelta(hours=1)
        end = min(until, next_midnight)
        yield start, end, day
        start = end


def period_of(day) -> dict[str, str]:
    """The ``day`` and ``week`` keys of a local date: ``2026-11-01`` and ``2026-W44`` (ISO weeks)."""
    return {"day": day.isoformat(), "week": "{}-W{:02d}".format(*day.isocalendar()[:2])}
