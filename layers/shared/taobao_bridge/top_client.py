"""The outbound TOP client (docs/PROTOCOL.md §1–2): sign, POST, parse, classify, retry.

Layout of a call, as the official SDK sends it: system parameters and ``sign`` in the query string, API
parameters in an ``application/x-www-form-urlencoded;charset=UTF-8`` body; every attempt gets a fresh
``timestamp`` and ``sign``. What happens to a failed attempt is data: ``top_errors.RULES`` classifies an
``error_response`` and ``top_errors.RETRY_POLICY`` says what each class gets. Business results
(``result.success=false``) are not judged here: each API's caller does that.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import urlencode

import httpx
from aws_lambda_powertools import Logger

from .clock import Clock, format_platform_time, system_clock
from .errors import ConfigurationError, TopError, TopTransportError, UnknownOutcome, UnreadableAnswer
from .jsonutil import loads_strict
from .settings import Settings
from .signing import SignMethod, sign_top_request
from .top_errors import RETRY_POLICY, ErrorClass, RetryAction, classify, error_for
from .wire import encode_params

__all__ = [
    "RESERVED_PARAMS",
    "TopClient",
    "TopResponse",
    "encode_api_params",
    "shared_http_client",
]

logger = Logger(child=True)
# httpx logs each request URL at INFO, and the official layout puts `session` in the query string: keep the
# seller's session key out of the logs whatever level the function runs at.
logging.getLogger("httpx").setLevel(logging.WARNING)

API_VERSION = "2.0"
MIN_ATTEMPT_S = 0.5  # an attempt with less time than this before the deadline is not started
# Set by the client on every attempt; an API parameter of the same name would be ambiguous.
RESERVED_PARAMS = frozenset({"method", "app_key", "timestamp", "v", "format", "sign_method", "session", "sign"})
_HEADERS = {
    "Content-Type": "application/x-www-form-urlencoded;charset=UTF-8",
    "Accept-Encoding": "gzip",
}
# httpx errors raised before any byte of the request could reach the platform: retrying cannot duplicate a write.
_NEVER_SENT: tuple[type[Exception], ...] = (
    httpx.ConnectError,
    httpx.ConnectTimeout,
    httpx.PoolTimeout,
    httpx.ProxyError,
    httpx.UnsupportedProtocol,
    httpx.LocalProtocolError,
)

_shared_http: httpx.Client | None = None


def shared_http_client() -> httpx.Client:
    """The container's one pooled HTTP client, created on first use (connections survive warm invocations)."""
    global _shared_http
    if _shared_http is None or _shared_http.is_closed:
        _shared_http = httpx.Client(timeout=10.0, follow_redirects=False)
    return _shared_http


def encode_api_params(api_params: Mapping[str, Any]) -> dict[str, str]:
    """API parameters as the strings that are both signed and sent; None and blank values are dropped (an unsigned
    empty value is the classic ``25 Invalid signature``). Empty lists/dicts are sent as ``[]``/``{}`` like the
    official SDK does, so the platform names the problem."""
    reserved = RESERVED_PARAMS.intersection(api_params)
    if reserved:
        raise ValueError(f"API parameter {sorted(reserved)[0]!r} is a system parameter the client sets itself")
    return encode_params(api_params)


@dataclass(frozen=True)
class TopResponse:
    """A call the gateway accepted (no ``error_response``); the API's own verdict is inside ``body``."""

    method: str
    body: dict[str, Any]  # the inner object of "<...>_response" (wrapper removed); ints exact
    request_id: str | None
    latency_ms: float  # of the successful attempt
    attempts: int


@dataclass(frozen=True)
class _Failure:
    """One failed attempt."""

    error_class: ErrorClass
    detail: str  # what happened, for messages and logs; no parameters, no secrets
    error: TopError | None = None  # set for error_response answers
    may_have_reached: bool = False  # transport only: the platform may have processed the request
    cause: BaseException | None = None
    unreadable: str | None = None  # an HTTP 200 whose body is not a TOP answer: its start, kept for the record


class TopClient:
    """Calls TOP APIs with signing, classification and bounded retries. One instance per container is enough."""

    def __init__(
        self,
        *,
        gateway_url: str,
        app_key: str,
        app_secret: str,
        sign_method: SignMethod | str = SignMethod.HMAC_SHA256,
        http: httpx.Client | None = None,
        clock: Clock = system_clock,
        timeout_s: float = 10.0,
        max_attempts: int = 4,
        retry_budget_s: float = 20.0,
        backoff_base_s: float = 0.2,
        backoff_cap_s: float = 5.0,
        sleep: Callable[[float], None] = time.sleep,
        rand: Callable[[], float] = random.random,
    ) -> None:
        if not gateway_url.startswith(("https://", "http://")):
            raise ConfigurationError(f"TOP gateway URL must be http(s)://..., got {gateway_url!r}")
        if not app_key or not app_secret:
            raise ConfigurationError("TOP app key and app secret are required")
        if max_attempts < 1 or timeout_s <= 0:
            raise ValueError("max_attempts must be >= 1 and timeout_s > 0")
        self.gateway_url = gateway_url
        self.app_key = app_key
        self._app_secret = app_secret
        self.sign_method = SignMethod(sign_method)
        self._http = http
        self._clock = clock
        self.timeout_s = timeout_s
        self.max_attempts = max_attempts
        self.retry_budget_s = retry_budget_s
        self.backoff_base_s = backoff_base_s
        self.backoff_cap_s = backoff_cap_s
        self._sleep = sleep
        self._rand = rand

    def __repr__(self) -> str:  # never shows the secret
        return f"TopClient(gateway_url={self.gateway_url!r}, app_key={self.app_key!r}, sign_method={self.sign_method})"

    @classmethod
    def from_settings(cls, settings: Settings, **kw: Any) -> TopClient:
        """A client from resolved settings; ``ConfigurationError`` when the app key or secret is missing."""
        return cls(
            gateway_url=settings.top_gateway_url,
            app_key=settings.require("top_app_key"),
            app_secret=settings.require("top_app_secret"),
            sign_method=settings.top_sign_method,
            **{"timeout_s": float(settings.top_timeout_s), **kw},
        )

    # the call -----------------------------------------------------------------------------------------------------

    def call(
        self,
        method: str,
        api_params: Mapping[str, Any],
        *,
        session: str | None = None,
        deadline: float | None = None,
        start_by: float | None = None,
        retry_unknown: bool = True,
        timeout_s: float | None = None,
    ) -> TopResponse:
        """Call ``method``.

        Time, as ``time.monotonic()`` values: no attempt runs past ``deadline`` (its timeout is cut to fit, and
        an attempt that would get less than ``MIN_ATTEMPT_S`` is not started) and no retry starts after
        ``start_by``. ``timeout_s`` overrides the client's timeout for this call. ``retry_unknown=False`` (APIs
        the platform does not dedupe) never re-sends an attempt that may have been applied.

        Raises ``TopRateLimited``, ``TopSessionExpired``, ``TopPermanentError`` at once; ``UnreadableAnswer``
        at once (an HTTP 200 that is not a TOP answer); ``TopTransientError``, ``TopClockError``,
        ``UnknownOutcome`` or ``TopTransportError`` once retries are exhausted.
        """
        if not method or not method.strip():
            raise ValueError("TOP method name is required")
        form = encode_api_params(api_params)  # validated before any I/O
        timeout = self.timeout_s if timeout_s is None else timeout_s
        if timeout <= 0:
            raise ValueError("timeout_s must be > 0")
        started = time.monotonic()
        if deadline is not None and deadline - started < MIN_ATTEMPT_S:
            raise TopTransportError(f"TOP call {method} not started: no time left before the deadline (not sent)")
        backoffs = 0
        clock_retried = False
        reached = False  # some attempt may have been processed: the outcome stays unknown
        attempt = 0
        while True:
            attempt += 1
            left = None if deadline is None else deadline - time.monotonic()
            outcome = self._attempt(method, form, session or None, timeout if left is None else min(timeout, left))
            if isinstance(outcome, TopResponse):
                return replace(outcome, attempts=attempt)
            reached = reached or outcome.may_have_reached
            self._log_failure(method, attempt, outcome)
            if outcome.unreadable is not None:
                raise UnreadableAnswer(
                    f"TOP call {method} {outcome.detail} (attempt {attempt}); it may have been applied: "
                    "not re-sent, the records are left for an operator",
                    outcome.unreadable,
                )

            action = RETRY_POLICY[outcome.error_class]
            delay: float | None = None
            if action is RetryAction.BACKOFF:
                delay = self._rand() * min(self.backoff_cap_s, self.backoff_base_s * 2**backoffs)
                backoffs += 1
            elif action is RetryAction.ONCE_NOW and not clock_retried:
                delay, clock_retried = 0.0, True
            stop: str | None
            if delay is None:
                stop = "not retried" if action is RetryAction.RAISE else "retried once already"
            elif reached and not retry_unknown:
                stop = "not re-sent: the outcome is unknown and this API does not dedupe repeated calls"
            else:
                stop = self._stop_reason(attempt, started, delay, deadline, start_by, timeout)
            if stop is not None:
                raise self._final_error(method, attempt, outcome, reached, stop)
            if delay:
                self._sleep(delay)

    def _stop_reason(
        self,
        attempt: int,
        started: float,
        delay: float,
        deadline: float | None,
        start_by: float | None,
        timeout: float,
    ) -> str | None:
        """Why another attempt after ``delay`` is not allowed, or None. A retry needs its whole timeout before
        the deadline: one cut short would only add an unknown outcome."""
        now = time.monotonic()
        if attempt >= self.max_attempts:
            return f"max_attempts={self.max_attempts} reached"
        if now - started + delay > self.retry_budget_s:
            return f"retry budget of {self.retry_budget_s} s spent"
        if deadline is not None and now + delay + timeout >= deadline:
            return "no time left before the deadline"
        if start_by is not None and now + delay > start_by:
            return "no time left before the deadline margin"
        return None

    def _final_error(self, method: str, attempts: int, last: _Failure, reached: bool, stop: str) -> Exception:
        tried = f"{attempts} attempt{'s' if attempts != 1 else ''}; {stop}"
        if last.error is not None:
            last.error.add_note(f"TOP call {method}: {tried}")
            if reached:
                last.error.add_note("an earlier attempt got no answer and may have been applied")
            return last.error
        error: TopTransportError
        if reached:
            error = UnknownOutcome(
                f"TOP call {method} {last.detail} ({tried}); outcome unknown: retry later with the same business keys"
            )
        else:
            error = TopTransportError(
                f"TOP call {method} {last.detail} ({tried}); the platform did not process the request: "
                "safe to retry later"
            )
        error.__cause__ = last.cause
        return error

    # one attempt --------------------------------------------------------------------------------------------------

    def _attempt(
        self, method: str, form: dict[str, str], session: str | None, timeout: float
    ) -> TopResponse | _Failure:
        system = {
            "method": method,
            "app_key": self.app_key,
            "timestamp": format_platform_time(self._clock()),  # fresh on every attempt, as is the sign
            "v": API_VERSION,
            "format": "json",
            "sign_method": self.sign_method.value,
        }
        if session:
            system["session"] = session
        system["sign"] = sign_top_request({**system, **form}, self._app_secret, self.sign_method)
        http = self._http or shared_http_client()
        t0 = time.monotonic()
        try:
            response = http.post(
                self.gateway_url,
                params=system,
                content=urlencode(form).encode("ascii"),
                headers=_HEADERS,
                timeout=timeout,
            )
        except httpx.HTTPError as exc:
            return self._transport_failure(exc, timeout, secrets=(self._app_secret, session))
        latency_ms = (time.monotonic() - t0) * 1000.0
        if response.status_code != 200:
            # A 5xx may come from a proxy after the platform processed the call; a 4xx was refused before it.
            return _Failure(
                ErrorClass.TRANSPORT, f"answered HTTP {response.status_code}", may_have_reached=response.is_server_error
            )
        try:
            document = loads_strict(response.content)
        except ValueError as exc:  # not JSON, not UTF-8, or a repeated key
            return _Failure(
                ErrorClass.TRANSPORT,
                "answered HTTP 200 with a body that is not a JSON answer",
                may_have_reached=True,
                cause=exc,
                unreadable=_start_of(response.content),
            )
        return self._parse(method, document, latency_ms, response.content)

    def _transport_failure(self, exc: httpx.HTTPError, timeout: float, secrets: tuple[str | None, ...]) -> _Failure:
        if isinstance(exc, httpx.TimeoutException):
            what = f"timed out after {round(timeout, 3):g} s"
            what += " (connecting)" if isinstance(exc, (httpx.ConnectTimeout, httpx.PoolTimeout)) else ""
        else:
            what = f"failed: {type(exc).__name__}: {_redacted(str(exc), secrets)}"
        return _Failure(ErrorClass.TRANSPORT, what, may_have_reached=not isinstance(exc, _NEVER_SENT), cause=exc)

    def _parse(self, method: str, document: Any, latency_ms: float, raw: bytes) -> TopResponse | _Failure:
        if not isinstance(document, dict):
            return _Failure(
                ErrorClass.TRANSPORT,
                "answered with JSON that is not an object",
                may_have_reached=True,
                unreadable=_start_of(raw),
            )
        if "error_response" in document:
            err = document["error_response"]
            if not isinstance(err, dict):
                return _Failure(
                    ErrorClass.TRANSPORT,
                    "answered with a malformed error_response",
                    may_have_reached=True,
                    unreadable=_start_of(raw),
                )
            code, sub_code = err.get("code"), _text(err.get("sub_code"))
            error = error_for(
                code if isinstance(code, (int, str)) else None,
                _text(err.get("msg")),
                sub_code,
                _text(err.get("sub_msg")),
                _text(err.get("request_id")),
                now=self._clock(),
            )
            return _Failure(classify(error.code, sub_code), f"answered error code {code}", error=error)
        body: Any = document
        # The wrapper is "<method, dots as underscores, leading 'taobao.' dropped>_response"; with simplify=true
        # there is none. Only a one-key document is unwrapped, so a simplified body is never mistaken for one.
        if len(document) == 1:
            ((key, inner),) = document.items()
            if key.endswith("_response"):
                body = inner
        if not isinstance(body, dict):
            return _Failure(
                ErrorClass.TRANSPORT,
                "answered with a response body that is not an object",
                may_have_reached=True,
                unreadable=_start_of(raw),
            )
        return TopResponse(method, body, _text(body.get("request_id")), latency_ms, 1)

    def _log_failure(self, method: str, attempt: int, failure: _Failure) -> None:
        # Never the parameters (personal data) nor sub_msg (may quote them), never secrets.
        error = failure.error
        logger.warning(
            "TOP call attempt failed",
            extra={
                "top_method": method,
                "attempt": attempt,
                "max_attempts": self.max_attempts,
                "error_class": failure.error_class.value,
                "detail": failure.detail,
                "code": error.code if error else None,
                "sub_code": error.sub_code if error else None,
                "request_id": error.request_id if error else None,
            },
        )


def _start_of(raw: bytes, limit: int = 4096) -> str:
    """The start of an unreadable answer as text, for the record (decoded leniently: it may not be UTF-8)."""
    return raw[:limit].decode("utf-8", errors="replace")


def _redacted(text: str, secrets: tuple[str | None, ...]) -> str:
    # httpx messages are normally OS texts, but some quote the URL, whose query holds the session key.
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return text


def _text(value: Any) -> str | None:
    return None if value is None else str(value)
