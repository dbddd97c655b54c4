"""TOP request signing (outbound) and Qimen signature verification (inbound), per docs/PROTOCOL.md.

Pure functions of (parameters, body, secret): no clock, no I/O.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable, Mapping
from enum import StrEnum
from urllib.parse import parse_qsl

__all__ = [
    "SignMethod",
    "canonical_text",
    "digest",
    "qimen_canonical_text",
    "qimen_sign",
    "sign_top_request",
    "top_sign_params",
    "verify_qimen_signature",
]


class SignMethod(StrEnum):
    MD5 = "md5"
    HMAC = "hmac"
    HMAC_SHA256 = "hmac-sha256"


def canonical_text(params: Iterable[tuple[str, str]]) -> str:
    """key+value for each pair in code-point order of the keys, no separators."""
    return "".join(key + value for key, value in sorted(params, key=lambda pair: pair[0]))


def digest(text: str | bytes, secret: str, method: SignMethod | str) -> str:
    """Upper-case hex digest of ``text`` with ``secret`` under one of the three TOP sign methods."""
    method = SignMethod(method)
    data = text.encode("utf-8") if isinstance(text, str) else text
    key = secret.encode("utf-8")
    if method is SignMethod.MD5:
        # The platform mandates MD5 for this sign method; we only compute what it defines.
        return hashlib.md5(key + data + key).hexdigest().upper()  # noqa: S324
    if method is SignMethod.HMAC:
        return hmac.new(key, data, hashlib.md5).hexdigest().upper()
    return hmac.new(key, data, hashlib.sha256).hexdigest().upper()


def top_sign_params(params: Mapping[str, str | None]) -> dict[str, str]:
    """The parameters that are both sent and signed: ``sign`` dropped, and None/empty/blank values dropped.

    Sending an unsigned empty value is the classic ``25 Invalid signature``, so empty values go nowhere.
    """
    return {k: v for k, v in params.items() if k != "sign" and v is not None and v.strip() != ""}


def sign_top_request(params: Mapping[str, str | None], secret: str, method: SignMethod | str) -> str:
    """The ``sign`` of an outbound TOP call over every non-empty parameter except ``sign``."""
    return digest(canonical_text(top_sign_params(params).items()), secret, method)


def _parse_raw_query(raw_query: str) -> list[tuple[str, str]]:
    # keep_blank_values: Qimen signs empty values, unlike outbound TOP.
    return parse_qsl(raw_query, keep_blank_values=True)


def qimen_canonical_text(
    raw_query: str,
    body: bytes,
    headers: Mapping[str, str] | None = None,
) -> bytes:
    """The bytes Qimen signs: sorted query params (empty kept, ``sign`` excluded), the headers named in
    ``top-sign-list``, then the raw body exactly as received."""
    params = [(k, v) for k, v in _parse_raw_query(raw_query) if k != "sign"]
    lowered = {k.lower(): v for k, v in (headers or {}).items()}
    sign_list = lowered.get("top-sign-list", "")
    for name in (h.strip() for h in sign_list.split(",")):
        if name:
            params.append((name, lowered.get(name.lower(), "")))
    return canonical_text(params).encode("utf-8") + body


def qimen_sign(raw_query: str, body: bytes, secret: str, headers: Mapping[str, str] | None = None) -> str:
    """The sign a Qimen caller computes; the ``sign_method`` query parameter picks the digest (md5 default)."""
    method = dict(_parse_raw_query(raw_query)).get("sign_method") or SignMethod.MD5.value
    return digest(qimen_canonical_text(raw_query, body, headers), secret, method)


def verify_qimen_signature(
    raw_query: str, body: bytes, secret: str, headers: Mapping[str, str] | None = None
) -> tuple[bool, str, str]:
    """Check a Qimen call in constant time. Returns (ok, remote sign, local sign) so that a failure can be
    logged in a debuggable way. An unknown ``sign_method`` or a missing ``sign`` never verifies."""
    remote = dict(_parse_raw_query(raw_query)).get("sign", "")
    try:
        local = qimen_sign(raw_query, body, secret, headers)
    except ValueError:
        return False, remote, ""
    ok = bool(remote) and hmac.compare_digest(remote.upper().encode(), local.encode())
    return ok, remote, local
