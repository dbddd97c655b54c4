"""Inbound Qimen calls: verify, check the clock, route on ``method``, validate the body, answer as documented.

Callers hand over the raw query string, headers and body bytes exactly as received. A method is registered with
its request model; its handler only ever sees a verified call and a validated model, and returns a typed result
(:class:`Handled`, :class:`StoredAnswer`, :class:`Failed`) or raises :class:`QimenRejection`. The dispatcher turns
that into the answer. Every outcome is a flat JSON answer with HTTP 200 (the platform cannot use anything else).

:meth:`QimenDispatcher.dispatch` returns a :class:`DispatchResult`: the answer and an outcome naming what happened
(a :class:`QimenOutcome`, or the handler's own ``StrEnum`` member), so the Lambda handler can count it. This
module emits no metrics itself.

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
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any, TypeVar
from urllib.parse import parse_qsl

from aws_lambda_powertools import Logger
from pydantic import BaseModel, ValidationError

from .clock import Clock, parse_platform_time, system_clock
from .jsonutil import JSONRefused, loads_strict
from .models.common import field_path
from .privacy import mask_personal_data
from .signing import qimen_canonical_text, verify_qimen_signature

__all__ = [
    "SIGN_CHECK_FAILURE",
    "DispatchResult",
    "Failed",
    "Handled",
    "HandlerResult",
    "MethodHandler",
    "QimenAnswerCode",
    "QimenCall",
    "QimenDispatcher",
    "QimenOutcome",
    "QimenRejection",
    "StoredAnswer",
    "answer",
    "describe_validation_error",
    "parse_json_object",
]

logger = Logger(child=True)

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


class QimenOutcome(StrEnum):
    """What the dispatcher itself decided. Method handlers name their own outcomes in a ``StrEnum`` of their own,
    so this module stays free of any one method's vocabulary."""

    SIGNATURE_REJECTED = "signature_rejected"
    """Signature missing or wrong: answered ``sign-check-failure``."""
    INVALID = "invalid"
    """The body is not a JSON object or fails the method's model: INVALID_JSON / INVALID_PARAMETER."""
    REJECTED = "rejected"
    """Any other refusal: body too large, stale timestamp, unknown method, or a handler's rejection that names
    no outcome of its own."""


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
    """Raised by a method handler to answer a documented failure instead of a result. ``outcome`` says what to
    count it as; without one it is a plain :attr:`QimenOutcome.REJECTED`."""

    def __init__(self, code: QimenAnswerCode, message: str, outcome: StrEnum = QimenOutcome.REJECTED) -> None:
        self.code = code
        self.message = message
        self.outcome = outcome
        super().__init__(f"{code.value}: {message}")

    def to_answer(self) -> dict[str, Any]:
        return answer(code=self.code, message=self.message)


@dataclass(frozen=True)
class Handled:
    """The call was processed: answered success with our order id."""

    partner_order_id: str
    outcome: StrEnum

    def to_answer(self) -> dict[str, Any]:
        return answer(partner_order_id=self.partner_order_id)


@dataclass(frozen=True)
class StoredAnswer:
    """A repeated call: the answer given the first time, returned exactly as it was stored (JSON text)."""

    answer_json: str
    outcome: StrEnum

    def to_answer(self) -> dict[str, Any]:
        stored: dict[str, Any] = loads_strict(self.answer_json)
        return stored


@dataclass(frozen=True)
class Failed:
    """Our side failed (e.g. storage unavailable) and nothing was written: answered SYSTEM_ERROR, which tells the
    platform a retry is safe. The handler has already logged why; the dispatcher adds no rejection log."""

    message: str
    outcome: StrEnum

    def to_answer(self) -> dict[str, Any]:
        return answer(code=QimenAnswerCode.SYSTEM_ERROR, message=self.message)


HandlerResult = Handled | StoredAnswer | Failed


@dataclass(frozen=True)
class DispatchResult:
    """What :meth:`QimenDispatcher.dispatch` decided: the answer to send and the outcome to count."""

    answer: dict[str, Any]
    outcome: StrEnum


@dataclass(frozen=True)
class QimenCall:
    """A verified call: the query parameters and the exact body bytes that were signed, and (once the dispatcher
    has parsed it) the body as a JSON object, before validation, e.g. for logging it masked."""

    params: Mapping[str, str]
    body: bytes
    headers: Mapping[str, str] = field(default_factory=dict)
    payload: Mapping[str, Any] = field(default_factory=dict)

    @property
    def method(self) -> str:
        return self.params.get("method", "")


ModelT = TypeVar("ModelT", bound=BaseModel)
MethodHandler = Callable[[QimenCall, ModelT], HandlerResult]


@dataclass(frozen=True)
class _Route:
    model: type[BaseModel]
    handler: Callable[[QimenCall, Any], HandlerResult]


class QimenDispatcher:
    """Verifies a raw call, validates its body with the model registered for its ``method`` and hands both to
    that method's handler."""

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
        self._routes: dict[str, _Route] = {}

    def register(self, method: str, model: type[ModelT], handler: MethodHandler[ModelT]) -> None:
        """Serve ``method``: its body must validate as ``model``; ``handler`` gets the call and the model."""
        self._routes[method] = _Route(model, handler)

    def dispatch(self, raw_query: str, headers: Mapping[str, str], body: bytes) -> DispatchResult:
        """The answer to one raw call and its outcome. Raises only what a handler raises besides
        :class:`QimenRejection` (a bug or an unexpected failure: the caller answers SYSTEM_ERROR)."""
        if len(body) > self.max_body_bytes:
            return _refused(
                QimenAnswerCode.BODY_TOO_LARGE, f"body is {len(body)} bytes; the limit is {self.max_body_bytes}"
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
            return DispatchResult(dict(SIGN_CHECK_FAILURE), QimenOutcome.SIGNATURE_REJECTED)
        params = dict(parse_qsl(raw_query, keep_blank_values=True))
        stale = self._timestamp_problem(params.get("timestamp", ""))
        if stale:
            logger.warning("Qimen call refused: %s", stale)
            return _refused(QimenAnswerCode.INVALID_TIMESTAMP, stale)
        call = QimenCall(params=params, body=body, headers=headers)
        route = self._routes.get(call.method)
        if route is None:
            supported = ", ".join(sorted(self._routes)) or "none"
            return _refused(
                QimenAnswerCode.UNKNOWN_METHOD, f"method {call.method!r} is not supported; supported: {supported}"
            )
        try:
            payload = parse_json_object(body)
            call = replace(call, payload=payload)
            result = route.handler(call, _validate(route.model, call))
        except QimenRejection as rejection:
            logger.info("Qimen call rejected", extra={"code": rejection.code.value, "reason": rejection.message})
            return DispatchResult(rejection.to_answer(), rejection.outcome)
        return DispatchResult(result.to_answer(), result.outcome)

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


def _refused(code: QimenAnswerCode, message: str) -> DispatchResult:
    return DispatchResult(answer(code=code, message=message), QimenOutcome.REJECTED)


def _validate(model: type[ModelT], call: QimenCall) -> ModelT:
    try:
        return model.model_validate(call.payload)
    except ValidationError as exc:
        # Masked: the payload carries names, phone numbers and addresses (privacy.PERSONAL_FIELDS).
        logger.info("Qimen call invalid", extra={"method": call.method, "payload": mask_personal_data(call.payload)})
        raise QimenRejection(
            QimenAnswerCode.INVALID_PARAMETER, describe_validation_error(exc), QimenOutcome.INVALID
        ) from None


def parse_json_object(body: bytes) -> dict[str, Any]:
    """The verified body as a JSON object, or ``QimenRejection(INVALID_JSON)`` saying what is wrong."""
    try:
        data = loads_strict(body)
    except JSONRefused as exc:  # not UTF-8, a repeated key, too deep, a lone surrogate
        raise QimenRejection(QimenAnswerCode.INVALID_JSON, f"body: {exc}", QimenOutcome.INVALID) from None
    except ValueError as exc:
        raise QimenRejection(
            QimenAnswerCode.INVALID_JSON, f"body is not valid JSON: {exc}", QimenOutcome.INVALID
        ) from None
    if not isinstance(data, dict):
        raise QimenRejection(QimenAnswerCode.INVALID_JSON, "body must be a JSON object", QimenOutcome.INVALID)
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
