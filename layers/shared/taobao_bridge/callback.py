"""Assembly of the Qimen callback: the dispatcher with every Qimen method we serve (each with its request model and
the fields it allows in logs), from settings; and the one entry point the Lambda handler calls, which turns every
failure of our own into a documented SYSTEM_ERROR answer with an outcome the handler counts."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from aws_lambda_powertools import Logger

from .apigw import raw_body
from .clock import Clock, system_clock
from .errors import ConfigurationError
from .fulfillment_service import FulfillmentCreate
from .fulfillment_store import FulfillmentStore
from .models.fulfillment import LOG_FIELDS as FULFILLMENT_LOG_FIELDS
from .models.fulfillment import METHOD as FULFILLMENT_CREATE
from .models.fulfillment import FulfillmentCreateRequest
from .qimen import DispatchResult, QimenAnswerCode, QimenDispatcher, QimenOutcome, answer
from .settings import SecretUnavailable, Settings, load_settings

__all__ = ["build_qimen_dispatcher", "dispatch_event", "raw_body", "unexpected_failure"]

logger = Logger(child=True)


def build_qimen_dispatcher(settings: Settings | None = None, clock: Clock = system_clock) -> QimenDispatcher:
    """A dispatcher for every Qimen method this deployment serves. Cheap: build one per invocation so a
    rotated secret (cached by Powertools parameters for its max age) is picked up without a cold start.
    Raises ``ConfigurationError`` (``SecretUnavailable`` when the secret cannot be read)."""
    settings = settings or load_settings()
    dispatcher = QimenDispatcher(
        settings.require("qimen_app_secret"),
        timestamp_window_s=settings.qimen_timestamp_window_s,
        max_body_bytes=settings.qimen_max_body_bytes,
        clock=clock,
    )
    store = FulfillmentStore(
        settings.require("fulfillment_table"),
        settings.require("inventory_table"),
        retention_days=settings.order_retention_days,
    )
    dispatcher.register(
        FULFILLMENT_CREATE,
        FulfillmentCreateRequest,
        FulfillmentCreate(store, clock),
        log_fields=FULFILLMENT_LOG_FIELDS,
    )
    return dispatcher


def dispatch_event(
    event: Mapping[str, Any], build: Callable[[], QimenDispatcher] = build_qimen_dispatcher
) -> DispatchResult:
    """The answer to one API Gateway (HTTP API v2) event. Never raises for a missing or unreadable secret or a
    body that cannot be read: those are answered (SYSTEM_ERROR, counted as ``CONFIGURATION_FAILED``; INVALID_JSON).
    Raises only what the dispatcher raises (a bug: answer :func:`unexpected_failure`)."""
    try:
        dispatcher = build()
    except ConfigurationError as exc:  # str() of our errors never holds a secret (errors.py)
        kind = "secret unavailable" if isinstance(exc, SecretUnavailable) else "misconfigured"
        logger.error("Qimen callback cannot run: %s", kind, extra={"problem": str(exc)})
        failure = answer(code=QimenAnswerCode.SYSTEM_ERROR, message="the service is not available; retrying is safe")
        return DispatchResult(failure, QimenOutcome.CONFIGURATION_FAILED)
    try:
        body = raw_body(event)
    except ValueError as exc:  # flagged base64 but not base64: the caller's bytes cannot be known
        refusal = answer(code=QimenAnswerCode.INVALID_JSON, message=f"body: {exc}")
        return DispatchResult(refusal, QimenOutcome.INVALID)
    headers = event.get("headers") or {}
    return dispatcher.dispatch(str(event.get("rawQueryString") or ""), headers, body)


def unexpected_failure() -> DispatchResult:
    """The answer to a failure nobody foresaw (the handler has logged it): SYSTEM_ERROR, since the request may
    well be fine and the order number makes a retry safe."""
    failure = answer(code=QimenAnswerCode.SYSTEM_ERROR, message="internal error; retrying is safe")
    return DispatchResult(failure, QimenOutcome.UNEXPECTED_FAILURE)
