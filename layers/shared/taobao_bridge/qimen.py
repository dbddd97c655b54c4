"""Inbound Qimen calls: verify, check the clock, route on ``method``, validate the body, answer as documented.

Callers hand over the raw query string, headers and body bytes exactly as received. The call is parsed and its
sign checked as the official verifier (SpiUtils.checkSign) does it (signing.py): query, ``top-sign-list`` headers,
form fields or the body, in the charset Content-Type declares. A method is registered with its request model and
the fields it allows in logs; its handler only ever sees a verified call and a validated model, and returns a
typed result (:class:`Handled`, :class:`StoredAnswer`, :class:`Failed`) or raises :class:`QimenRejection`. The
dispatcher turns that into the answer. Every outcome is a flat JSON answer with HTTP 200 (the platform cannot use
anything else).

A form call (``application/x-www-form-urlencoded``) carries each top-level request parameter as one form field,
objects and lists as JSON text, as TOP and Qimen form calls do (docs/PROTOCOL.md §1); system parameters are no
part of the payload.

:meth:`QimenDispatcher.dispatch` returns a :class:`DispatchResult`: the answer and an outcome naming what happened
(a :class:`QimenOutcome`, or the handler's own ``StrEnum`` member), so the Lambda handler can count it. This
module emits no metrics itself. Its logs carry parameter names, codes and field paths; payloads only through
``privacy.loggable``; never a sign it computed.

Answer codes (``biz_error_code``); ``success`` is false when the request could not be processed at all:

| code | success | retry helps | when |
|---|---|---|---|
| ``sign-check-failure`` | "false" | no | signature missing, wrong or uncheckable (the Qimen console's exact answer) |
| ``INVALID_TIMESTAMP`` | false | no | ``timestamp`` missing, unparseable or outside the allowed window |
| ``UNKNOWN_METHOD`` | false | no | ``method`` is not one we serve |
| ``BODY_TOO_LARGE`` | false | no | body over the configured limit, or an order too large to store |
| ``INVALID_JSON`` | false | no | body (or a form field) is not JSON in the declared charset, or not an object |
| ``INVALID_PARAMETER`` | false | no | a field breaks a rule; a repeated system parameter; an unsupported Content-Type |
| ``ORDER_CONFLICT`` | true | no | the order number was already used with a different payload |
| ``NO_INVENTORY`` | true | later | no capacity left for the store and item |
| ``SYSTEM_ERROR`` | false | yes | storage or a dependency (the secret) failed; never for a bad request |
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any, TypeVar

from aws_lambda_powertools import Logger
from pydantic import BaseModel, ValidationError

from .clock import Clock, parse_platform_time, system_clock
from .jsonutil import DuplicateKeyError, JSONRefused, dumps, loads_strict
from .models.common import field_path
from .privacy import LogSpec, loggable
from .signing import SYSTEM_PARAMETERS, SpiRequest, SpiRequestError, parse_spi_request, spi_signature_matches

__all__ = [
    "DEFAULT_TIMESTAMP_WINDOW_S",
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
    "parse_form_payload",
    "parse_json_object",
]

logger = Logger(child=True)

DEFAULT_TIMESTAMP_WINDOW_S = 600
"""Allowed distance of ``timestamp`` from now, both ways: the TOP gateway itself tolerates about ±10 minutes."""

# Exactly as the Qimen console checks it before publishing the API (seed 003, 验签示例): key order and the
# string "false" included.
SIGN_CHECK_FAILURE: dict[str, Any] = {
    "biz_error_msg": "Illegal request",
    "success": "false",
    "biz_error_code": "sign-check-failure",
}

# Parameters of the call itself, never part of a form call's payload.
_NOT_PAYLOAD = SYSTEM_PARAMETERS | {"v", "format", "target_app_key", "partner_id", "session", "simplify", "customerId"}


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
    """What the dispatcher (or the callback's assembly around it) decided. Method handlers name their own outcomes
    in a ``StrEnum`` of their own, so this module stays free of any one method's vocabulary."""

    SIGNATURE_REJECTED = "signature_rejected"
    """Signature missing, wrong or not checkable: answered ``sign-check-failure``."""
    INVALID = "invalid"
    """The body is not a JSON object or fails the method's model: INVALID_JSON / INVALID_PARAMETER."""
    REJECTED = "rejected"
    """Any other refusal: body too large, stale timestamp, unknown method, a repeated system parameter, an
    unsupported Content-Type, or a handler's rejection that names no outcome of its own."""
    CONFIGURATION_FAILED = "configuration_failed"
    """The secret (or another setting) could not be read: answered SYSTEM_ERROR before any check."""
    UNEXPECTED_FAILURE = "unexpected_failure"
    """A bug or an unforeseen failure escaped: answered SYSTEM_ERROR by the handler's last resort."""


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
    count it as; without one it is a plain :attr:`QimenOutcome.REJECTED`. The answer's ``message`` may quote the
    caller's input, so it is not logged: ``log_detail`` is, and must hold nothing personal."""

    def __init__(
        self,
        code: QimenAnswerCode,
        message: str,
        outcome: StrEnum = QimenOutcome.REJECTED,
        *,
        log_detail: str | None = None,
    ) -> None:
        self.code = code
        self.message = message
        self.outcome = outcome
        self.log_detail = log_detail
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
    """Our side failed (e.g. storage unavailable): answered SYSTEM_ERROR, which tells the platform a retry is
    safe. The handler has already logged why; the dispatcher adds no rejection log."""

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
    """A verified call: its query and form parameters and the exact body bytes that were signed, and (once the
    dispatcher has parsed it) the payload as a JSON object before validation and as text (``text``: the body
    decoded from its charset, or a form call's fields as one compact JSON object)."""

    params: Mapping[str, str]
    body: bytes
    headers: Mapping[str, str] = field(default_factory=dict)
    payload: Mapping[str, Any] = field(default_factory=dict)
    text: str = ""
    log_fields: LogSpec = field(default_factory=dict)

    @property
    def method(self) -> str:
        return self.params.get("method", "")

    def loggable_payload(self) -> Any:
        """The payload as it may be logged: the method's allowed fields in clear, every other value masked."""
        return loggable(self.payload, self.log_fields)


ModelT = TypeVar("ModelT", bound=BaseModel)
MethodHandler = Callable[[QimenCall, ModelT], HandlerResult]


@dataclass(frozen=True)
class _Route:
    model: type[BaseModel]
    handler: Callable[[QimenCall, Any], HandlerResult]
    log_fields: LogSpec


class QimenDispatcher:
    """Verifies a raw call, validates its payload with the model registered for its ``method`` and hands both to
    that method's handler."""

    def __init__(
        self,
        secret: str,
        *,
        timestamp_window_s: int = DEFAULT_TIMESTAMP_WINDOW_S,
        max_body_bytes: int = 256 * 1024,
        clock: Clock = system_clock,
    ) -> None:
        self._secret = secret
        self.timestamp_window_s = timestamp_window_s
        self.max_body_bytes = max_body_bytes
        self.clock = clock
        self._routes: dict[str, _Route] = {}

    def register(
        self, method: str, model: type[ModelT], handler: MethodHandler[ModelT], *, log_fields: LogSpec | None = None
    ) -> None:
        """Serve ``method``: its payload must validate as ``model``; ``handler`` gets the call and the model.
        ``log_fields`` (privacy.LogSpec) names the payload fields that may be logged in clear; none by default."""
        self._routes[method] = _Route(model, handler, log_fields or {})

    def dispatch(self, raw_query: str, headers: Mapping[str, str], body: bytes) -> DispatchResult:
        """The answer to one raw call and its outcome. Raises only what a handler raises besides
        :class:`QimenRejection` (a bug or an unexpected failure: the caller answers SYSTEM_ERROR)."""
        if len(body) > self.max_body_bytes:
            return _refused(
                QimenAnswerCode.BODY_TOO_LARGE, f"body is {len(body)} bytes; the limit is {self.max_body_bytes}"
            )
        try:
            request = parse_spi_request(raw_query, headers, body)
        except SpiRequestError as exc:  # its message may quote a header: only its log_detail is logged
            if exc.unverifiable:
                logger.warning("Qimen call not verifiable", extra={"reason": exc.log_detail, **_body_facts(body)})
                return DispatchResult(dict(SIGN_CHECK_FAILURE), QimenOutcome.SIGNATURE_REJECTED)
            logger.warning("Qimen call refused", extra={"reason": exc.log_detail})
            return _refused(QimenAnswerCode.INVALID_PARAMETER, str(exc))
        if request.ambiguity:
            logger.warning("Qimen call refused", extra={"reason": "repeated parameter", **request.log_facts()})
            return _refused(QimenAnswerCode.INVALID_PARAMETER, request.ambiguity)
        if not spi_signature_matches(request, self._secret):
            # What helps an operator, and nothing that helps a forger: no sign we computed, no parameter values.
            logger.warning("Qimen signature check failed", extra={**request.log_facts(), **_body_facts(body)})
            return DispatchResult(dict(SIGN_CHECK_FAILURE), QimenOutcome.SIGNATURE_REJECTED)
        stale = self._timestamp_problem(request.params.get("timestamp", ""))
        if stale:
            logger.warning("Qimen call refused", extra={"reason": stale})
            return _refused(QimenAnswerCode.INVALID_TIMESTAMP, stale)
        call = QimenCall(params=request.params, body=body, headers=headers)
        route = self._routes.get(call.method)
        if route is None:
            supported = ", ".join(sorted(self._routes)) or "none"
            return _refused(
                QimenAnswerCode.UNKNOWN_METHOD,
                f"method {call.method[:100]!r} is not supported; supported: {supported}",
            )
        call = replace(call, log_fields=route.log_fields)
        try:
            if request.is_form:
                payload = parse_form_payload(request)
                text = dumps(payload)
            else:
                text = _decode_body(request)
                payload = parse_json_object(text)
            call = replace(call, payload=payload, text=text)
            result = route.handler(call, _validate(route.model, call))
        except QimenRejection as rejection:
            logger.info("Qimen call rejected", extra={"code": rejection.code.value, "detail": rejection.log_detail})
            return DispatchResult(rejection.to_answer(), rejection.outcome)
        return DispatchResult(result.to_answer(), result.outcome)

    def _timestamp_problem(self, text: str) -> str | None:
        if not text:
            return "timestamp is missing"
        try:
            sent = parse_platform_time(text)
        except ValueError:
            return f"timestamp: expected 'yyyy-MM-dd HH:mm:ss' (UTC+8), got {text[:40]!r}"
        if self.timestamp_window_s <= 0:  # 0 switches the check off (documented: local sample events only)
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


def _body_facts(body: bytes) -> dict[str, Any]:
    return {"body_sha256": hashlib.sha256(body).hexdigest(), "body_bytes": len(body)}


def _validate(model: type[ModelT], call: QimenCall) -> ModelT:
    try:
        return model.model_validate(call.payload)
    except ValidationError as exc:
        # Field paths and rule types only: pydantic's messages (and ours) may quote the value.
        problems = [f"{field_path(p['loc'])[:100] or 'body'}: {p['type']}" for p in exc.errors()[:10]]
        logger.info(
            "Qimen call invalid",
            extra={"method": call.method, "problems": problems, "payload": call.loggable_payload()},
        )
        raise QimenRejection(
            QimenAnswerCode.INVALID_PARAMETER,
            describe_validation_error(exc),
            QimenOutcome.INVALID,
            log_detail="; ".join(problems),
        ) from None


def _decode_body(request: SpiRequest) -> str:
    try:
        return request.body.decode(request.charset)
    except UnicodeDecodeError as exc:
        raise QimenRejection(
            QimenAnswerCode.INVALID_JSON,
            f"body: not valid {request.charset_name} (byte {exc.start}); send JSON in the charset Content-Type "
            "declares (UTF-8 when it declares none)",
            QimenOutcome.INVALID,
            log_detail=f"body not valid {request.charset_name}",
        ) from None


def parse_json_object(body: bytes | str, where: str = "body") -> dict[str, Any]:
    """The verified body (or one form field) as a JSON object, or ``QimenRejection(INVALID_JSON)`` saying what is
    wrong."""
    data = _parse_json(body, where)
    if not isinstance(data, dict):
        raise QimenRejection(
            QimenAnswerCode.INVALID_JSON,
            f"{where} must be a JSON object",
            QimenOutcome.INVALID,
            log_detail="not an object",
        )
    return data


def _parse_json(text: bytes | str, where: str) -> Any:
    try:
        return loads_strict(text)
    except DuplicateKeyError as exc:  # the message names the key: answered, not logged
        raise QimenRejection(
            QimenAnswerCode.INVALID_JSON, f"{where}: {exc}", QimenOutcome.INVALID, log_detail="duplicate key"
        ) from None
    except JSONRefused as exc:  # not UTF-8, too deep, a lone surrogate: the message quotes nothing of the input
        raise QimenRejection(
            QimenAnswerCode.INVALID_JSON, f"{where}: {exc}", QimenOutcome.INVALID, log_detail=str(exc)
        ) from None
    except ValueError as exc:
        detail = f"{exc.msg} at char {exc.pos}" if hasattr(exc, "msg") and hasattr(exc, "pos") else type(exc).__name__
        raise QimenRejection(
            QimenAnswerCode.INVALID_JSON, f"{where} is not valid JSON: {exc}", QimenOutcome.INVALID, log_detail=detail
        ) from None


def parse_form_payload(request: SpiRequest) -> dict[str, Any]:
    """A form call's payload: each form field but the call's own parameters, a value that starts with ``{`` or
    ``[`` parsed as JSON (a top-level object or list), any other kept as text. Values are those that were
    signed (a blank one as "")."""
    payload: dict[str, Any] = {}
    for name in request.form_fields:
        if name in _NOT_PAYLOAD:
            continue
        value = request.params[name]
        where = f"form field {name[:40]!r}"
        payload[name] = _parse_json(value, where) if value.lstrip()[:1] in ("{", "[") else value
    return payload


def describe_validation_error(error: ValidationError, limit: int = 3) -> str:
    """``field.path: rule`` for the first few problems, e.g. ``trade_info.quantity: Field required``."""
    parts = []
    for problem in error.errors()[:limit]:
        parts.append(f"{field_path(problem['loc']) or 'body'}: {problem['msg']}")
    more = len(error.errors()) - limit
    if more > 0:
        parts.append(f"and {more} more")
    return "; ".join(parts)
