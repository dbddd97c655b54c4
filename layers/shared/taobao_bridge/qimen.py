"""Inbound Qimen calls: verify, check the clock, route on ``method``, answer in the documented shape.

Callers hand over the raw query string, headers and body bytes exactly as received; a handler only ever sees
the verified bytes. Every outcome is a flat JSON answer with HTTP 200 (the platform cannot use anything else).

Answer codes (``biz_error_code``); ``success`` is false when the request could not be processed at all:

| code | success | retry helps | when |
|---|---|---|---|
| ``sign-check-failure`` | "false" | no | signature missing or wrong (exact answer the Qimen console expects) |
| ``INVALID_TIMESTAMP`` | false | no | ``timestamp`` missing, unparseable or outside the allowed window |
| ``UNKNOWN_METHOD`` | false | no | ``method`` is not one we serve |
| ``BODY_TOO_LARGE`` | false | no | body over the configured limit |
| ``INVALID_JSON`` | false | no | body is not a JSON object (or repeats a key) |
| ``INVALID_PARAMETER`` | false | no | a field is missing or breaks a rule; the message names it |
| ``ORDER_CONFLICT`` | true | no | the order number was already used with a different payload |
| ``NO_INVENTORY`` | true | later | no capacity left for the store and item |
| ``SYSTEM_ERROR`` | false | yes | storage unavailable; nothing was written |
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any
from urllib.parse import parse_qsl

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit
from pydantic import ValidationError

from .clock import Clock, parse_platform_time, system_clock
from .jsonutil import DuplicateKeyError, loads_strict
from .models.common import field_path
from .settings import metrics_namespace
from .signing import qimen_canonical_text, verify_qimen_signature

__all__ = [
    "SIGN_CHECK_FAILURE",
    "QimenAnswerCode",
    "QimenCall",
    "QimenDispatcher",
    "QimenRejection",
    "answer",
    "describe_validation_error",
    "parse_json_object",
]

logger = Logger(child=True)
metrics = Metrics(namespace=metrics_namespace())

# Exactly as the Qimen console checks it before publishing the API (seed 003, 验签示例): key order and the
# string "false" included.
SIGN_CHECK_FAILURE: dict[str, Any] = {
    "biz_error_msg": "Illegal request",
    "success": "false",
    "biz_error_code": "sign-check-failure",
}


class QimenAnswerCode(StrEnum):
    INVALID_TIMESTAMP = "INVALID_TIMESTAMP"
    UNKNOWN_METHOD = "UNKNOWN_METHOD"
    BODY_TOO_LARGE = "BODY_TOO_LARGE"
    INVALID_JSON = "INVALID_JSON"
    INVALID_PARAMETER = "INVALID_PARAMETER"
    ORDER_CONFLICT = "ORDER_CONFLICT"
    NO_INVENTORY = "NO_INVENTORY"
    SYSTEM_ERROR = "SYSTEM_ERROR"


# Whether the platform should consider the request received (``success``) for each failure code.
_RECEIVED = {QimenAnswerCode.ORDER_CONFLICT, QimenAnswerCode.NO_INVENTORY}


def answer(
    *,
    code: QimenAnswerCode | None = None,
    message: str | None = None,
    partner_order_id: str | None = None,
) -> dict[str, Any]:
    """A documented answer: success with a partner order id, or a failure with code and message."""
    if code is None:
        return {"success": True, "biz_result": "success", "partner_order_id": partner_order_id}
    return {
        "success": code in _RECEIVED,
        "biz_result": "fail",
        "biz_error_code": code.value,
        "biz_error_msg": message or code.value,
    }


class QimenRejection(Exception):
    """Raised by a method handler to answer a documented failure instead of a result."""

    def __init__(self, code: QimenAnswerCode, message: str) -> None:
        self.code = code
        self.message = message
        super().__init__(f"{code.value}: {message}")


@dataclass(frozen=True)
class QimenCall:
    """A verified call: the query parameters and the exact body bytes that were signed."""

    params: Mapping[str, str]
    body: bytes
    headers: Mapping[str, str] = field(default_factory=dict)

    @property
    def method(self) -> str:
        return self.params.get("method", "")


MethodHandler = Callable[[QimenCall], dict[str, Any]]


class QimenDispatcher:
    """Verifies a raw call and hands it to the handler registered for its ``method``."""

    def __init__(
        self,
        secret: str,
        *,
        timestamp_window_s: int = 300,
        max_body_bytes: int = 256 * 1024,
        clock: Clock = system_clock,
    ) -> None:
        self._secret = secret
        self.timestamp_window_s = timestamp_window_s
        self.max_body_bytes = max_body_bytes
        self.clock = clock
        self._handlers: dict[str, MethodHandler] = {}

    def register(self, method: str, handler: MethodHandler) -> None:
        self._handlers[method] = handler

    def dispatch(self, raw_query: str, headers: Mapping[str, str], body: bytes) -> dict[str, Any]:
        result = self._dispatch(raw_query, headers, body)
        if result.get("biz_result") != "success":
            code = str(result.get("biz_error_code"))
            name = "QimenSignatureRejected" if code == SIGN_CHECK_FAILURE["biz_error_code"] else "QimenCallRejected"
            metrics.add_metric(name=name, unit=MetricUnit.Count, value=1)
        return result

    def _dispatch(self, raw_query: str, headers: Mapping[str, str], body: bytes) -> dict[str, Any]:
        if len(body) > self.max_body_bytes:
            return answer(
                code=QimenAnswerCode.BODY_TOO_LARGE,
                message=f"body is {len(body)} bytes; the limit is {self.max_body_bytes}",
            )
        ok, remote_sign, local_sign = verify_qimen_signature(raw_query, body, self._secret, headers)
        if not ok:
            logger.warning(
                "Qimen signature check failed",
                extra={
                    "remote_sign": remote_sign,
                    "local_sign": local_sign,
                    # The signed parameter text without the body; the body only as a hash.
                    "canonical_params": qimen_canonical_text(raw_query, b"", headers).decode("utf-8", "replace"),
                    "body_sha256": hashlib.sha256(body).hexdigest(),
                    "body_bytes": len(body),
                },
            )
            return dict(SIGN_CHECK_FAILURE)
        params = dict(parse_qsl(raw_query, keep_blank_values=True))
        stale = self._timestamp_problem(params.get("timestamp", ""))
        if stale:
            logger.warning("Qimen call refused: %s", stale)
            return answer(code=QimenAnswerCode.INVALID_TIMESTAMP, message=stale)
        call = QimenCall(params=params, body=body, headers=headers)
        handler = self._handlers.get(call.method)
        if handler is None:
            supported = ", ".join(sorted(self._handlers)) or "none"
            return answer(
                code=QimenAnswerCode.UNKNOWN_METHOD,
                message=f"method {call.method!r} is not supported; supported: {supported}",
            )
        try:
            return handler(call)
        except QimenRejection as rejection:
            logger.info("Qimen call rejected", extra={"code": rejection.code.value, "reason": rejection.message})
            return answer(code=rejection.code, message=rejection.message)

    def _timestamp_problem(self, text: str) -> str | None:
        if not text:
            return "timestamp is missing"
        try:
            sent = parse_platform_time(text)
        except ValueError as exc:
            return f"timestamp: {exc}"
        if self.timestamp_window_s <= 0:  # 0 switches the check off (documented)
            return None
        skew = abs((self.clock() - sent).total_seconds())
        if skew > self.timestamp_window_s:
            return (
                f"timestamp {text!r} (UTC+8) is {int(skew)} s away from now; "
                f"the allowed window is {self.timestamp_window_s} s"
            )
        return None


def parse_json_object(body: bytes) -> dict[str, Any]:
    """The verified body as a JSON object, or ``QimenRejection(INVALID_JSON)`` saying what is wrong."""
    try:
        data = loads_strict(body)
    except DuplicateKeyError as exc:
        raise QimenRejection(QimenAnswerCode.INVALID_JSON, f"body: {exc}") from None
    except (UnicodeDecodeError, ValueError) as exc:
        raise QimenRejection(QimenAnswerCode.INVALID_JSON, f"body is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise QimenRejection(QimenAnswerCode.INVALID_JSON, "body must be a JSON object")
    return data


def describe_validation_error(error: ValidationError, limit: int = 3) -> str:
    """``field.path: rule`` for the first few problems, e.g. ``trade_info.quantity: Field required``."""
    parts = []
    for problem in error.errors()[:limit]:
        parts.append(f"{field_path(problem['loc']) or 'body'}: {problem['msg']}")
    more = len(error.errors()) - limit
    if more > 0:
        parts.append(f"and {more} more")
    return "; ".join(parts)
