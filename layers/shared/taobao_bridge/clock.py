"""Platform time: every TOP and Qimen timestamp is ``yyyy-MM-dd HH:mm:ss`` in UTC+8.

Lambda runs in UTC, so host-local time is never used. China has no daylight saving time, so a fixed
offset is exact and needs no tz database in the Lambda image.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone

__all__ = ["PLATFORM_TZ", "TIMESTAMP_FORMAT", "Clock", "format_platform_time", "parse_platform_time", "system_clock"]

PLATFORM_TZ = timezone(timedelta(hours=8), "Asia/Shanghai")
TIMESTAMP_FORMAT = "%Y-%m-%d %H:%M:%S"

Clock = Callable[[], datetime]
"""A clock returns an aware datetime. Tests pass a frozen one; code never calls ``datetime.now()`` itself."""


def system_clock() -> datetime:
    return datetime.now(UTC)


def format_platform_time(moment: datetime) -> str:
    """``moment`` (aware) as platform text; naive datetimes are refused rather than guessed."""
    if moment.tzinfo is None:
        raise ValueError("naive datetime: give a timezone-aware value")
    local = moment.astimezone(PLATFORM_TZ)
    # Not strftime: %Y does not pad years below 1000 on every platform ("1-01-01"), and the format has 4 digits.
    return f"{local.year:04d}-{local.month:02d}-{local.day:02d} {local.hour:02d}:{local.minute:02d}:{local.second:02d}"


def parse_platform_time(text: str) -> datetime:
    """Platform text (UTC+8) as an aware datetime; raises ``ValueError`` naming the expected format."""
    try:
        return datetime.strptime(text, TIMESTAMP_FORMAT).replace(tzinfo=PLATFORM_TZ)
    except (TypeError, ValueError):
        raise ValueError(f"expected 'yyyy-MM-dd HH:mm:ss' (UTC+8), got {text!r}") from None
