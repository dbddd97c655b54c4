"""Field types and base classes shared by every platform model.

The seeds type fields as ``Number`` (a Java ``Long``), ``String``, ``Boolean`` or ``Date``
(``yyyy-MM-dd HH:mm:ss`` in UTC+8). ``Int64`` and ``PlatformDateTime`` carry the two that Python has no exact
built-in for.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Annotated, Any

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    PlainValidator,
    Strict,
    WithJsonSchema,
)

from ..clock import PLATFORM_TZ, format_platform_time, parse_platform_time

__all__ = [
    "INT64_MAX",
    "MAX_YEAR",
    "MIN_YEAR",
    "InboundModel",
    "Int64",
    "OutboundModel",
    "PlatformDateTime",
    "PositiveInt64",
    "field_path",
    "one_of",
]

INT64_MAX = 2**63 - 1
"""The largest Java ``Long``: the platform's ``Number`` fields cannot hold more."""

# strptime alone would also take "2020-1-1 1:2:3" or surrounding blanks: the platform format is zero-padded.
_PLATFORM_TIME_RE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2} [0-9]{2}:[0-9]{2}:[0-9]{2}")
_PLATFORM_TIME_FORMAT = "'yyyy-MM-dd HH:mm:ss' (UTC+8)"
MIN_YEAR = 1970  # the platform's Date is a Java Date counted from the epoch; earlier is a typo, not a writeoff
MAX_YEAR = 9999


def _platform_datetime(value: Any) -> datetime:
    if isinstance(value, datetime):
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError(f"naive datetime: give a timezone-aware datetime or text {_PLATFORM_TIME_FORMAT}")
        try:
            # The platform has whole seconds: keep in the model exactly what will be sent.
            moment = value.astimezone(PLATFORM_TZ).replace(microsecond=0)
        except OverflowError:
            raise ValueError(f"year must be {MIN_YEAR} to {MAX_YEAR} in UTC+8") from None
    elif isinstance(value, str):
        if _PLATFORM_TIME_RE.fullmatch(value) is None:
            raise ValueError(f"expected {_PLATFORM_TIME_FORMAT}, got {value[:40]!r}")
        moment = parse_platform_time(value)  # also refuses impossible dates such as 2021-02-30
    else:
        raise ValueError(f"expected {_PLATFORM_TIME_FORMAT} or an aware datetime, got {type(value).__name__}")
    if not MIN_YEAR <= moment.year <= MAX_YEAR:
        raise ValueError(f"year must be {MIN_YEAR} to {MAX_YEAR}, got {moment.year}")
    return moment


PlatformDateTime = Annotated[
    datetime,
    PlainValidator(_platform_datetime),
    PlainSerializer(format_platform_time, return_type=str),
    WithJsonSchema({"type": "string", "pattern": f"^{_PLATFORM_TIME_RE.pattern}$", "description": "UTC+8"}),
]
"""The platform's ``Date``: text ``yyyy-MM-dd HH:mm:ss`` read as UTC+8, or an aware datetime (converted to UTC+8).
Naive datetimes are refused rather than guessed. Dumps, in python and json mode, to the platform text."""


def _int64_input(value: Any) -> Any:
    # Checked before pydantic's own int validation, which would take True as 1 and 2.0 as 2.
    if isinstance(value, bool):
        raise ValueError("expected an integer, got a boolean")
    if isinstance(value, float):
        raise ValueError("expected an integer, got a floating-point number (ids must stay exact)")
    if isinstance(value, str):
        if not (value.isascii() and value.isdigit()):
            raise ValueError(f"expected a decimal integer, got {value!r}")
        return int(value)
    return value


Int64 = Annotated[int, Strict(), Field(ge=0, le=INT64_MAX), BeforeValidator(_int64_input)]
"""The platform's ``Number`` (a Java ``Long``), never negative here: a JSON integer or a text of ASCII digits,
0 <= v <= 2**63-1. Floats and booleans are refused, so a 19-digit id is never rounded on its way through."""

PositiveInt64 = Annotated[int, Strict(), Field(ge=1, le=INT64_MAX), BeforeValidator(_int64_input)]
"""``Int64`` from 1 up (a count). Its own type: a ``Field(ge=1)`` on an ``Int64`` field would not override ge=0."""


def one_of(allowed: Mapping[int, str]) -> Callable[[int], int]:
    """An after-validator that accepts only the keys of ``allowed`` (code -> meaning) and names them when it refuses."""

    def check(value: int) -> int:
        if value not in allowed:
            choices = ", ".join(f"{code} ({meaning})" for code, meaning in allowed.items())
            raise ValueError(f"expected one of {choices}, got {value}")
        return value

    return check


class OutboundModel(BaseModel):
    """What we send to the platform. Unknown fields are refused, so a typo names the field instead of vanishing."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True, str_strip_whitespace=False)


class InboundModel(BaseModel):
    """What the platform sends or answers. Unknown fields are ignored (the platform adds fields without notice);
    a number arriving in a ``String`` field is kept as its exact decimal text."""

    model_config = ConfigDict(
        extra="ignore", populate_by_name=True, str_strip_whitespace=False, coerce_numbers_to_str=True
    )


def field_path(loc: Sequence[int | str]) -> str:
    """A pydantic error location as a readable path: ``("user_info", 0, "mobile")`` -> ``user_info[0].mobile``."""
    return ".".join(f"[{part}]" if isinstance(part, int) else str(part) for part in loc).replace(".[", "[")
