"""The API Gateway HTTP API (payload format 2.0) contract, for serving Lambda handlers without AWS.

``http_api_event`` builds the event API Gateway gives Lambda, ``response_to_http`` reads a handler's result
the way API Gateway does, ``match_route`` picks a template route, ``lambda_context`` stands in for the
runtime's context object. The sample events in ``events/`` are built with the same function.
"""

from __future__ import annotations

import base64
import json
import os
import time
import uuid
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl, unquote

from bridge_local.template import Route

__all__ = [
    "LocalLambdaContext",
    "http_api_event",
    "is_text_body",
    "lambda_context",
    "match_route",
    "response_to_http",
]

ACCOUNT_ID = "123456789012"
API_ID = "local"

# %b is locale-dependent; API Gateway always writes English month abbreviations.
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def _request_time(moment: datetime) -> str:
    """``dd/MMM/yyyy:HH:mm:ss +0000`` in UTC, as in ``requestContext.time``."""
    utc = moment.astimezone(UTC)
    return f"{utc:%d}/{_MONTHS[utc.month - 1]}/{utc:%Y}:{utc:%H:%M:%S} +0000"


def _header_pairs(headers: Mapping[str, str] | Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    # ``http.client.HTTPMessage.items()`` lists a repeated header once per occurrence, which a dict cannot.
    items = headers.items() if isinstance(headers, Mapping) or hasattr(headers, "items") else headers
    return [(str(name), str(value)) for name, value in items]


def is_text_body(content_type: str | None, body: bytes) -> bool:
    """Whether API Gateway hands ``body`` to Lambda as text rather than base64.

    Text: JSON (``application/json``, ``+json``), ``text/*`` and form bodies that are valid UTF-8, and
    bodies without a content type that are valid UTF-8. Everything else, and any body that is not valid
    UTF-8, is base64 so that the handler gets the exact bytes.
    """
    try:
        body.decode("utf-8")
    except UnicodeDecodeError:
        return False
    if not content_type:
        return True
    media_type = content_type.split(";", 1)[0].strip().lower()
    return (
        media_type == "application/json"
        or media_type.endswith("+json")
        or media_type.startswith("text/")
        or media_type == "application/x-www-form-urlencoded"
    )


def http_api_event(
    *,
    method: str,
    path: str,
    raw_query: str,
    headers: Mapping[str, str] | Iterable[tuple[str, str]],
    body: bytes,
    route_key: str,
    path_parameters: dict[str, str] | None = None,
    source_ip: str = "127.0.0.1",
    stage: str = "$default",
    request_id: str | None = None,
    now: datetime | None = None,
    authorizer: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """An HTTP API payload format 2.0 event, shaped as API Gateway builds it.

    - ``rawQueryString`` is ``raw_query`` exactly as received (Qimen signatures are checked over it);
      ``queryStringParameters`` holds decoded values, repeated keys joined by ``,``.
    - Header names are lower-cased and repeated headers joined by ``,``; ``cookie`` headers move to
      ``cookies`` (one entry per cookie). API Gateway's own ``x-amzn-trace-id`` / ``x-forwarded-*``
      headers are not invented.
    - ``body`` is text when ``is_text_body`` says so, otherwise base64 with ``isBase64Encoded`` true;
      it is left out when empty. ``request_id`` and ``now`` make an event reproducible.
    """
    merged: dict[str, str] = {}
    cookies: list[str] = []
    for name, value in _header_pairs(headers):
        lowered = name.lower()
        if lowered == "cookie":
            cookies.extend(part.strip() for part in value.split(";") if part.strip())
            continue
        merged[lowered] = f"{merged[lowered]},{value}" if lowered in merged else value

    query: dict[str, str] = {}
    for key, value in parse_qsl(raw_query, keep_blank_values=True):
        query[key] = f"{query[key]},{value}" if key in query else value

    moment = now if now is not None else datetime.now(UTC)
    host = merged.get("host", "localhost")
    domain_name = host.rsplit(":", 1)[0] if not host.startswith("[") else host
    request_context: dict[str, Any] = {
        "accountId": ACCOUNT_ID,
        "apiId": API_ID,
    }
    if authorizer is not None:
        request_context["authorizer"] = authorizer
    request_context.update(
        {
            "domainName": domain_name,
            "domainPrefix": domain_name.split(".", 1)[0],
            "http": {
                "method": method.upper(),
                "path": path,
                "protocol": "HTTP/1.1",
                "sourceIp": source_ip,
                "userAgent": merged.get("user-agent", ""),
            },
            "requestId": request_id if request_id is not None else str(uuid.uuid4()),
            "routeKey": route_key,
            "stage": stage,
            "time": _request_time(moment),
            "timeEpoch": int(moment.timestamp() * 1000),
        }
    )

    event: dict[str, Any] = {
        "version": "2.0",
        "routeKey": route_key,
        "rawPath": path,
        "rawQueryString": raw_query,
    }
    if cookies:
        event["cookies"] = cookies
    event["headers"] = merged
    if query:
        event["queryStringParameters"] = query
    event["requestContext"] = request_context
    is_text = is_text_body(merged.get("content-type"), body)
    if body:
        event["body"] = body.decode("utf-8") if is_text else base64.b64encode(body).decode("ascii")
    if path_parameters:
        event["pathParameters"] = dict(path_parameters)
    event["isBase64Encoded"] = bool(body) and not is_text
    return event


# ---------------------------------------------------------------------------------------------------- context
class LocalLambdaContext:
    """The attributes of the Lambda runtime's context object that handlers and Powertools read."""

    def __init__(self, function_name: str, timeout_s: float, memory_mb: int = 512) -> None:
        region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"
        self.function_name = function_name
        self.function_version = "$LATEST"
        self.memory_limit_in_mb = memory_mb
        self.invoked_function_arn = f"arn:aws:lambda:{region}:{ACCOUNT_ID}:function:{function_name}"
        self.aws_request_id = str(uuid.uuid4())
        self.log_group_name = f"/aws/lambda/{function_name}"
        self.log_stream_name = f"local/{self.aws_request_id}"
        self.identity = None
        self.client_context = None
        self.tenant_id = None
        self._deadline = time.monotonic() + timeout_s

    def get_remaining_time_in_millis(self) -> int:
        """Milliseconds until the function's timeout, counted from when the context was created."""
        return max(0, int((self._deadline - time.monotonic()) * 1000))


def lambda_context(function_name: str, timeout_s: float, memory_mb: int = 512) -> LocalLambdaContext:
    """A fresh context for one invocation; its clock starts now."""
    return LocalLambdaContext(function_name, timeout_s, memory_mb)


# ----------------------------------------------------------------------------------------------------- routes
def _match_path(template_path: str, path: str) -> dict[str, str] | None:
    expected = template_path.strip("/").split("/") if template_path != "/" else []
    # Only the leading slash goes: "//qimen" has an empty first segment and matches nothing, as in API Gateway.
    actual = path[1:].split("/") if path != "/" else []
    if (path.endswith("/") and path != "/") or not path.startswith("/"):
        return None
    parameters: dict[str, str] = {}
    for index, segment in enumerate(expected):
        if segment.startswith("{") and segment.endswith("+}"):
            rest = actual[index:]
            if index != len(expected) - 1 or not rest or any(part == "" for part in rest):
                return None
            parameters[segment[1:-2]] = unquote("/".join(rest))
            return parameters
        if index >= len(actual):
            return None
        if segment.startswith("{") and segment.endswith("}"):
            if actual[index] == "":
                return None
            parameters[segment[1:-1]] = unquote(actual[index])
        elif segment != actual[index]:
            return None
    return parameters if len(actual) == len(expected) else None


def _specificity(route: Route) -> tuple[int, int, int]:
    """Sort key, most specific first: API Gateway prefers literal segments, then ``{name}``, then
    ``{proxy+}``, then ``$default``; and a named method over ``ANY``."""
    if route.path == "$default":
        return (3, 0, 1)
    segments = route.path.strip("/").split("/")
    greedy = 1 if segments and segments[-1].endswith("+}") else 0
    literals = sum(1 for segment in segments if not segment.startswith("{"))
    return (greedy, -literals, 1 if route.method == "ANY" else 0)


def match_route(routes: Sequence[Route], method: str, path: str) -> tuple[Route, dict[str, str]] | None:
    """The route API Gateway would choose for ``method path`` and its path parameters, or None (404)."""
    method = method.upper()
    candidates: list[tuple[tuple[int, int, int], Route, dict[str, str]]] = []
    for route in routes:
        if route.method not in ("ANY", method) and route.path != "$default":
            continue
        if route.path == "$default":
            candidates.append((_specificity(route), route, {}))
            continue
        parameters = _match_path(route.path, path)
        if parameters is not None:
            candidates.append((_specificity(route), route, parameters))
    if not candidates:
        return None
    _, route, parameters = min(candidates, key=lambda candidate: candidate[0])
    return route, parameters


# --------------------------------------------------------------------------------------------------- response
_INTERNAL_ERROR = (500, {"content-type": "application/json"}, b'{"message":"Internal Server Error"}')


def response_to_http(result: Any) -> tuple[int, dict[str, str], bytes]:
    """Turn a handler's result into (status, headers, body) the way an HTTP API (format 2.0) does.

    A dict with ``statusCode`` is a proxy response: ``headers`` and ``multiValueHeaders`` (values joined by
    ``,``), ``cookies`` (as ``set-cookie``; several are joined by ``\\n``, so a server must send one header
    line per part) and ``body`` (base64-decoded when ``isBase64Encoded``). Anything else that is valid JSON
    (a dict without ``statusCode``, a list, a string...) becomes a 200 ``application/json`` response whose
    body is that JSON. A malformed proxy response is a 500, as API Gateway answers it.
    """
    if not (isinstance(result, dict) and "statusCode" in result):
        try:
            # The python3.12+ runtimes serialise results with ensure_ascii=False.
            text = json.dumps(result, ensure_ascii=False)
        except (TypeError, ValueError):
            return _INTERNAL_ERROR
        return 200, {"content-type": "application/json"}, text.encode("utf-8")

    try:
        status = int(result["statusCode"])
    except (TypeError, ValueError):
        return _INTERNAL_ERROR
    if not 100 <= status <= 599:
        return _INTERNAL_ERROR

    headers: dict[str, str] = {}
    for name, values in (result.get("multiValueHeaders") or {}).items():
        headers[name.lower()] = ",".join(str(value) for value in values)
    for name, value in (result.get("headers") or {}).items():
        headers[name.lower()] = str(value).lower() if isinstance(value, bool) else str(value)
    cookies = result.get("cookies") or []
    if cookies:
        headers["set-cookie"] = "\n".join(str(cookie) for cookie in cookies)

    body = result.get("body")
    if body is None:
        payload = b""
    elif not isinstance(body, str):
        return _INTERNAL_ERROR
    elif result.get("isBase64Encoded"):
        try:
            payload = base64.b64decode(body, validate=True)
        except ValueError:
            return _INTERNAL_ERROR
    else:
        payload = body.encode("utf-8")
    return status, headers, payload
