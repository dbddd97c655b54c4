"""What the handlers need from an API Gateway (HTTP API v2) event, beyond what Powertools' resolver gives."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from typing import Any

__all__ = ["raw_body"]


def raw_body(event: Mapping[str, Any]) -> bytes:
    """The body bytes exactly as the caller sent them (API Gateway base64-encodes bodies it does not take for
    text). Powertools' ``decoded_body`` would decode them as UTF-8 and fail on anything else; callers decide.
    Raises ``ValueError`` for a body flagged base64 that is not."""
    body = event.get("body") or ""
    if event.get("isBase64Encoded"):
        try:
            return base64.b64decode(body, validate=True)
        except (binascii.Error, ValueError):
            raise ValueError("the body is flagged base64 but is not valid base64") from None
    return str(body).encode("utf-8", errors="surrogatepass")
