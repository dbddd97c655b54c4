"""API parameters on the wire: every value a string, per docs/PROTOCOL.md §1.

Objects and lists become one compact JSON text per top-level parameter (``jsonutil.dumps``, keys in model field
order, nulls omitted, non-ASCII kept): the text returned here is both the one that is signed and the one that is
sent. Pure: no clock, no I/O. The TOP client encodes with ``param_text`` too, so there is one wire form.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from pydantic import BaseModel

from .clock import format_platform_time
from .jsonutil import dumps

__all__ = ["encode_params", "param_text", "to_top_params"]


def param_text(name: str, value: Any) -> str | None:
    """The wire text of one top-level parameter value, or None for None."""
    if value is None:
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, bool):  # before int: bool is an int, and the platform wants true/false, not 1/0
        return "true" if value else "false"
    if isinstance(value, int):
        return str(int(value))  # int() so that an IntEnum gives its number, not its name
    if isinstance(value, datetime):
        return format_platform_time(value)
    if isinstance(value, dict | list | tuple):
        return dumps(value)  # ONE JSON text per top-level parameter, the same text signed and sent
    raise TypeError(f"parameter {name!r}: no TOP wire form for a {type(value).__name__}")


def encode_params(params: Mapping[str, Any]) -> dict[str, str]:
    """Every parameter with a value as its wire text. None and blank values are left out: the platform neither
    expects nor signs them, and an unsigned empty value is the classic ``25 Invalid signature``."""
    encoded: dict[str, str] = {}
    for name, value in params.items():
        text = param_text(name, value)
        if text is not None and text.strip():
            encoded[name] = text
    return encoded


def to_top_params(request: BaseModel) -> dict[str, str]:
    """One parameter per top-level field of ``request`` with a value, in field order. The JSON-mode dump
    applies the models' own serializers (Date text, exact ints) before encoding."""
    return encode_params(request.model_dump(mode="json", by_alias=True, exclude_none=True))
