"""SigV4 signing of the exact request httpx sends (service ``execute-api``), by botocore's own signer.

The query is first rewritten in SigV4's canonical encoding (RFC 3986, ``%20`` for a space, upper-case hex), and
that rewritten URL is both signed and sent: botocore signs the raw query it is given, so a query httpx encodes
differently from what API Gateway recomputes (``+`` for a space, an unescaped ``:``) would otherwise fail the
signature check. Only ``host``, ``content-type`` and botocore's ``x-amz-*`` headers are signed: the others
(``user-agent``, ``connection``…) may be changed by proxies on the way.
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from urllib.parse import parse_qsl, quote

import httpx
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials, ReadOnlyCredentials

__all__ = ["SigV4", "canonical_query", "sign_request"]

SERVICE = "execute-api"
_SIGNED_HEADERS = ("content-type",)
_ADDED_HEADERS = ("Authorization", "X-Amz-Date", "X-Amz-Security-Token")


def canonical_query(raw: bytes | str) -> str:
    """``raw`` decoded and encoded again as SigV4 canonicalizes it; pair order kept (botocore sorts)."""
    text = raw.decode("ascii") if isinstance(raw, bytes) else raw
    pairs = parse_qsl(text, keep_blank_values=True, encoding="utf-8", errors="strict")
    return "&".join(f"{quote(key, safe='-_.~')}={quote(value, safe='-_.~')}" for key, value in pairs)


def sign_request(
    request: httpx.Request, credentials: Credentials | ReadOnlyCredentials, region: str, service: str = SERVICE
) -> httpx.Request:
    """Add ``Authorization``, ``X-Amz-Date`` (and ``X-Amz-Security-Token`` for temporary credentials) to
    ``request``, after putting its query in canonical form. The body must be read (``request.read()``)."""
    if request.url.query:
        request.url = request.url.copy_with(query=canonical_query(request.url.query).encode("ascii"))
    headers = {name: request.headers[name] for name in _SIGNED_HEADERS if name in request.headers}
    aws = AWSRequest(method=request.method, url=str(request.url), data=request.content, headers=headers)
    frozen = credentials.get_frozen_credentials() if isinstance(credentials, Credentials) else credentials
    SigV4Auth(frozen, service, region).add_auth(aws)
    for name in _ADDED_HEADERS:
        if name in aws.headers:
            request.headers[name] = aws.headers[name]
    return request


class SigV4(httpx.Auth):
    """An ``httpx.Auth`` signing each request with credentials fetched when it is sent (they may refresh)."""

    requires_request_body = True

    def __init__(self, credentials: Callable[[], Credentials], region: str, service: str = SERVICE) -> None:
        self._credentials = credentials
        self.region = region
        self.service = service

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        sign_request(request, self._credentials(), self.region, self.service)
        yield request
