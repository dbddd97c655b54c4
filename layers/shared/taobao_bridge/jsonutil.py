"""The one JSON serializer used both to sign and to send, and a strict parser for inbound text."""

from __future__ import annotations

import json
from typing import Any

__all__ = ["DuplicateKeyError", "dumps", "loads_strict"]


def dumps(value: Any) -> str:
    """Compact JSON with non-ASCII kept: the exact text that is signed is the text that is sent."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


class DuplicateKeyError(ValueError):
    """Raised when a JSON object repeats a key (a parser would silently keep one of the values)."""


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    seen: dict[str, Any] = {}
    for key, value in pairs:
        if key in seen:
            raise DuplicateKeyError(f"duplicate JSON key {key!r}")
        seen[key] = value
    return seen


def loads_strict(text: str | bytes) -> Any:
    """Parse JSON, refusing duplicate keys: what was verified must be exactly what is used."""
    return json.loads(text, object_pairs_hook=_no_duplicates)
