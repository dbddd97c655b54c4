"""Field schemas of the API records and their checks, written independently of the project's models.

A schema maps a field name to a ``Field`` (kind, required, children for objects); ``object_problem`` names the
first thing wrong with one record. The per-API tables that use these live in ``apis.py``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from taobao_bridge.clock import parse_platform_time
from taobao_bridge.jsonutil import loads_strict

from .errors import invalid, missing

NUMBER, STRING, DATE, BOOLEAN, OBJECT = "Number", "String", "Date", "Boolean", "Object"

# The platform's one date format, also the format of the ``timestamp`` system parameter.
TIMESTAMP_RE = re.compile(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}", re.ASCII)
# A TOP Number is a Java long.
LONG_MIN, LONG_MAX = -(2**63), 2**63 - 1


@dataclass(frozen=True)
class Field:
    kind: str
    required: bool = False
    children: Mapping[str, Field] | None = None


def decode_param(params: Mapping[str, str], name: str) -> Any:
    """The JSON value of an API parameter, strictly decoded (duplicate keys refused); ``TopError`` 40 or 41."""
    text = params.get(name)
    if text is None or not text.strip():
        raise missing(name)
    try:
        return loads_strict(text)
    except ValueError as exc:  # JSONDecodeError and DuplicateKeyError
        raise invalid(f"parameter {name} is not a valid JSON text: {exc}") from None


def _value_problem(value: Any, spec: Field, path: str) -> str | None:
    """What is wrong with one non-null value, or None."""
    if spec.kind == NUMBER:
        if isinstance(value, bool) or not isinstance(value, int):
            return f"field {path} must be a JSON integer (Number), got {json.dumps(value, ensure_ascii=False)}"
        if not LONG_MIN <= value <= LONG_MAX:
            return f"field {path} is out of the 64-bit integer range"
        return None
    if spec.kind == STRING:
        if not isinstance(value, str):
            return f"field {path} must be a JSON string, got {json.dumps(value, ensure_ascii=False)}"
        if spec.required and not value.strip():
            return f"field {path} is required and must not be blank"
        return None
    if spec.kind == BOOLEAN:
        return None if isinstance(value, bool) else f"field {path} must be a JSON boolean"
    if spec.kind == DATE:
        if not isinstance(value, str) or not TIMESTAMP_RE.fullmatch(value):
            return f"field {path} must be a Date 'yyyy-MM-dd HH:mm:ss', got {json.dumps(value, ensure_ascii=False)}"
        try:
            parse_platform_time(value)
        except ValueError:
            return f"field {path} is not a valid date: {value!r}"
        return None
    assert spec.children is not None
    return object_problem(value, spec.children, path + ".")


def object_problem(obj: Any, schema: Mapping[str, Field], prefix: str = "") -> str | None:
    """The first problem of one record (unknown field, missing/null required field, wrong type), or None."""
    if not isinstance(obj, dict):
        return f"{prefix or 'record'} must be a JSON object"
    for key in obj:
        if key not in schema:
            # The real gateway would silently drop it; an unknown field here is almost always a nesting or naming
            # mistake in the client (e.g. order_info.source instead of source), so the sandbox refuses it.
            return f"field {prefix}{key} is not a field of this API"
    for key, spec in schema.items():
        value = obj.get(key)
        if value is None:
            if spec.required:
                return f"field {prefix}{key} is required (missing or null)"
            continue
        problem = _value_problem(value, spec, f"{prefix}{key}")
        if problem:
            return problem
    return None
