"""Personal data out of logs, by allow-list: a payload is logged only through :func:`loggable`, which keeps in clear
the fields a method declares non-personal (each with the shape its value must have) and replaces every other value,
known or unknown, by a marker that keeps only its type and size.

A deny-list of personal field names misses the field nobody listed (``buyer_mobile``, ``id_card_no``, an address
in a field added by the platform next month); an allow-list fails closed. The shapes are a second fence: a value in
an allowed field is logged only if it looks like what that field holds (an id, a small number, a code, a time), so
a phone number sent in ``quantity`` is still masked.

Not Powertools DataMasking: its ``erase`` parses each JSONPath with jsonpath_ng, which rebuilds its parser tables on
every parse (measured: ~23 ms per field, ~300 ms per Qimen call on this machine), too slow for the callback.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from enum import Enum
from typing import Any, TypeAlias

__all__ = ["MAX_LIST_ITEMS", "LogSpec", "Shape", "loggable", "marker"]


class Shape(Enum):
    """What an allowed value must look like to be logged in clear."""

    ID = "id"
    """An identifier (text of at most 64 letters, digits and ``_.:-``, or an integer): order, store, item numbers."""
    NUMBER = "number"
    """A JSON integer below 10^9 (amounts in fen, counts); longer numbers could be phone or ID numbers."""
    CODE = "code"
    """An enumeration value such as ``TO_SHOP`` or ``idCard`` (ASCII letters and ``_``, at most 32)."""
    TIME = "time"
    """A platform date or time (``yyyy-MM-dd``, ``yyyy-MM-dd HH:mm``, ``yyyy-MM-dd HH:mm:ss``)."""
    TEXT = "text"
    """Short catalogue text (an item or category name): at most 100 characters, no control characters."""
    MEDIA = "media"
    """A media type such as ``application/json``."""


_PATTERNS: dict[Shape, re.Pattern[str]] = {
    Shape.ID: re.compile(r"[A-Za-z0-9_.:-]{1,64}"),
    Shape.CODE: re.compile(r"[A-Za-z][A-Za-z_]{0,31}"),
    Shape.TIME: re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}( [0-9]{2}:[0-9]{2}(:[0-9]{2})?)?"),
    Shape.MEDIA: re.compile(r"[a-z0-9.+-]{1,40}/[a-z0-9.+-]{1,60}"),
    Shape.TEXT: re.compile(r"[^\x00-\x1f\x7f]{1,100}"),
}


LogSpec: TypeAlias = Mapping[str, "Shape | LogSpec"]
"""Field name -> its shape (logged in clear if it fits), or the spec of the object (or of each object of the
list) it holds. Fields not named are masked."""

MAX_LIST_ITEMS = 5
"""Lists are logged up to this many items, then a count of the rest (``user_info`` may hold 999)."""

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")
_NUMBER_LIMIT = 10**9


def marker(value: Any) -> Any:
    """What is logged instead of ``value``: its type and size, nothing of its content. ``None`` stays ``None``."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "<boolean>"
    if isinstance(value, int | float):
        return "<number>"
    if isinstance(value, str):
        return f"<{len(value)} chars>"
    if isinstance(value, Mapping):
        return f"<object, {len(value)} keys>"
    if isinstance(value, list | tuple):
        return f"<list, {len(value)} items>"
    return f"<{type(value).__name__}>"


def _fits(value: Any, shape: Shape) -> bool:
    if isinstance(value, bool):
        return False
    if shape is Shape.NUMBER:
        return isinstance(value, int) and -_NUMBER_LIMIT < value < _NUMBER_LIMIT
    if isinstance(value, int) and shape is Shape.ID:
        value = str(value)
    return isinstance(value, str) and _PATTERNS[shape].fullmatch(value) is not None


def loggable(data: Any, spec: LogSpec) -> Any:
    """A copy of ``data`` fit for logs under ``spec`` (see the module docstring); ``data`` is not changed.

    Unknown fields keep their name when it is a plain identifier (so an operator sees that ``buyer_mobile``
    arrived), never their value; other names are only counted, under ``"<other fields>"``."""
    if isinstance(data, list):
        kept: list[Any] = [loggable(item, spec) for item in data[:MAX_LIST_ITEMS]]
        if len(data) > MAX_LIST_ITEMS:
            kept.append(f"<{len(data) - MAX_LIST_ITEMS} more>")
        return kept
    if not isinstance(data, Mapping):
        return marker(data)
    out: dict[str, Any] = {}
    others = 0
    for key, value in data.items():
        rule = spec.get(key) if isinstance(key, str) else None
        if isinstance(rule, Shape):
            out[key] = value if _fits(value, rule) else marker(value)
        elif rule is not None and isinstance(value, Mapping | list):
            out[key] = loggable(value, rule)
        elif isinstance(key, str) and _IDENTIFIER.fullmatch(key):
            out[key] = marker(value)
        else:
            others += 1
    if others:
        out["<other fields>"] = others
    return out
