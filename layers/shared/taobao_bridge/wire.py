"""A request model as TOP API parameters: every value a string, per shared/protocol.md.

Objects and lists become one compact JSON text per top-level parameter (``jsonutil.dumps``, keys in model field
order, nulls omitted, non-ASCII kept): the text returned here is both the one that is signed and the one that is
sent. Pure: no clock, no I/O.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel

from .clock import format_platform_time
from .jsonutil import dumps

__all__ = ["to_top_params"]


def to_top_params(request: BaseModel) -> dict[str, str]:
    """One parameter per top-level field of ``request`` with a value, in field order.

    None and blank values are left out: the platform neither expects nor signs them, and an unsigned empty value
    is the classic ``25 Invalid signature``.
    """
    data = request.model_dump(mode="json", by_alias=True, exclude_none=True)
    params: dict[str, str] = {}
    for name, field in type(request).model_fields.items():
        value = getattr(request, name)
        if value is None:
            continue
        key = field.serialization_alias or field.alias or name
        text = _as_text(value, data.get(key))
        if text.strip():
            params[key] = text
    return params


def _as_text(value: Any, dumped: Any) -> str:
    # bool before int: bool is an int subclass, and the platform wants true/false, not 1/0.
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(int(value))  # int() so that an IntEnum gives its number, not its name
    if isinstance(value, str):
        return value
    if isinstance(value, datetime):
        return format_platform_time(value)
    if isinstance(value, (BaseModel, list, tuple, dict)):
        # The dumped form, not the object: the model's own serializers (Date text, exact ints) apply.
        return dumps(dumped)
    raise TypeError(f"no TOP wire form for a top-level {type(value).__name__}")
