"""The one JSON serializer used both to sign and to send, and a strict parser for inbound text.

Inbound JSON is UTF-8 only (RFC 8259 §8.1 for JSON exchanged between systems); objects may not repeat a key,
nest deeper than ``MAX_DEPTH`` or hold a string with a lone surrogate (``"\\ud800"``), which could never be
stored or sent on. Every such refusal is a ``JSONRefused`` (a ``ValueError``) that says what is wrong.
"""

from __future__ import annotations

import json
from typing import Any

__all__ = ["MAX_DEPTH", "DuplicateKeyError", "JSONRefused", "dumps", "loads_strict"]

MAX_DEPTH = 32
"""Arrays and objects nested deeper than this are refused: the platform's payloads nest 4 levels at most."""


def dumps(value: Any) -> str:
    """Compact JSON with non-ASCII kept: the exact text that is signed is the text that is sent."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


class JSONRefused(ValueError):
    """Raised when inbound JSON is well-formed or not but cannot be accepted; the message says why."""


class DuplicateKeyError(JSONRefused):
    """Raised when a JSON object repeats a key (a parser would silently keep one of the values)."""


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    seen: dict[str, Any] = {}
    for key, value in pairs:
        if key in seen:
            raise DuplicateKeyError(f"duplicate JSON key {key[:80]!r}")
        seen[key] = value
    return seen


def loads_strict(text: str | bytes, *, max_depth: int = MAX_DEPTH) -> Any:
    """Parse JSON, refusing duplicate keys, bytes that are not UTF-8, nesting deeper than ``max_depth`` and lone
    surrogates: what was verified must be exactly what is used, and what is used must be storable.

    Raises ``JSONRefused`` for those, ``json.JSONDecodeError`` (a ``ValueError``) for text that is not JSON.
    """
    if isinstance(text, bytes | bytearray):
        try:
            text = bytes(text).decode("utf-8")  # json.loads would guess UTF-16/32 from the first bytes
        except UnicodeDecodeError as exc:
            raise JSONRefused(f"the body is not UTF-8 (byte {exc.start}); send JSON encoded as UTF-8") from None
    if text.startswith("\ufeff"):
        raise JSONRefused("the body starts with a byte order mark; send UTF-8 JSON without one")
    try:
        value = json.loads(text, object_pairs_hook=_no_duplicates)
    except RecursionError:
        raise JSONRefused(f"JSON nested deeper than {max_depth} levels") from None
    _check(value, max_depth)
    return value


def _check(value: Any, max_depth: int) -> None:
    """Depth and lone surrogates, without recursion (a hostile document must not exhaust the stack)."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            if depth > max_depth:
                raise JSONRefused(f"JSON nested deeper than {max_depth} levels")
            for key, child in item.items():
                _check_text(key)
                stack.append((child, depth + 1))
        elif isinstance(item, list):
            if depth > max_depth:
                raise JSONRefused(f"JSON nested deeper than {max_depth} levels")
            stack.extend((child, depth + 1) for child in item)
        elif isinstance(item, str):
            _check_text(item)


def _check_text(text: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise JSONRefused(
            f"a string holds a lone surrogate (\\u{ord(text[exc.start]):04x}), which is not text"
        ) from None
