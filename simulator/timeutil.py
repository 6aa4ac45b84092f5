"""Freshdesk's timestamp formats: UTC ``...Z`` with second precision out, several ISO forms in."""

from __future__ import annotations

import calendar
import re
import time
from datetime import UTC, datetime, timedelta
from typing import overload

_INPUT = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})"
    r"(?:T(\d{2}):(\d{2})(?::(\d{2}))?"
    r"(Z|[+-]\d{2}(?::?\d{2})?)?)?$"
)


@overload
def format_ts(epoch: int) -> str: ...
@overload
def format_ts(epoch: None) -> None: ...
@overload
def format_ts(epoch: int | None) -> str | None: ...
def format_ts(epoch: int | None) -> str | None:
    """``2024-05-01T12:00:00Z`` for an epoch second (``None`` stays ``None``)."""
    if epoch is None:
        return None
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch))


def parse_input_datetime(text: str) -> int | None:
    """Epoch seconds of a Freshdesk date input, or ``None`` when the format is not accepted.

    Accepted: ``YYYY-MM-DD``, ``YYYY-MM-DDTHH:MM[:SS]`` optionally followed by ``Z``, ``±hh``,
    ``±hhmm`` or ``±hh:mm``. A value without a zone is UTC.
    """
    match = _INPUT.match(text.strip())
    if not match:
        return None
    year, month, day, hour, minute, second, zone = match.groups()
    try:
        moment = datetime(
            int(year), int(month), int(day), int(hour or 0), int(minute or 0), int(second or 0), tzinfo=UTC
        )
    except ValueError:
        return None
    if zone and zone != "Z":
        sign = 1 if zone[0] == "+" else -1
        digits = zone[1:].replace(":", "")
        offset = timedelta(hours=int(digits[:2]), minutes=int(digits[2:] or 0))
        moment -= sign * offset
    return int(moment.timestamp())


def parse_day(text: str) -> int | None:
    """Epoch seconds of midnight UTC of a ``YYYY-MM-DD`` date, or ``None``."""
    if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", text):
        return None
    return parse_input_datetime(text)


def start_of_day(epoch: int) -> int:
    return epoch - epoch % 86400


def one_month_before(epoch: int) -> int:
    """The same UTC wall time one calendar month earlier (day clamped to the month's length)."""
    moment = datetime.fromtimestamp(epoch, UTC)
    year, month = (moment.year, moment.month - 1) if moment.month > 1 else (moment.year - 1, 12)
    day = min(moment.day, calendar.monthrange(year, month)[1])
    return int(moment.replace(year=year, month=month, day=day).timestamp())
