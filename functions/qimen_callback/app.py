"""Qimen callback: POST /qimen, always HTTP 200 + JSON. taobao_bridge decides and logs; this handler counts."""

from __future__ import annotations

import logging
from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from taobao_bridge.callback import build_qimen_dispatcher, dispatch_event, unexpected_failure
from taobao_bridge.fulfillment_service import FulfillmentOutcome as Fulfillment
from taobao_bridge.jsonutil import dumps
from taobao_bridge.qimen import DispatchResult, QimenOutcome
from taobao_bridge.settings import metrics_namespace

logger = Logger()
metrics = Metrics(namespace=metrics_namespace())
tracer = Tracer(patch_modules=["botocore"])  # only what this function calls: patching all imports them all
app = APIGatewayHttpResolver()
CONTENT_TYPE = "application/json;charset=utf-8"
# botocore logs whole requests at DEBUG, and a request here is an order with names and phone numbers.
logging.getLogger("botocore").setLevel(max(logging.INFO, logging.getLogger().getEffectiveLevel()))

# Every outcome (a unit test checks it). QimenCallRejected: any answer but success and sign-check-failure.
# QimenSystemError: every SYSTEM_ERROR answer (alarmed, as are QimenConfigurationError and FulfillmentStorageFailed).
METRICS: dict[str, tuple[str, ...]] = {
    QimenOutcome.SIGNATURE_REJECTED: ("QimenSignatureRejected",),
    QimenOutcome.INVALID: ("QimenCallRejected",),
    QimenOutcome.REJECTED: ("QimenCallRejected",),
    QimenOutcome.CONFIGURATION_FAILED: ("QimenConfigurationError", "QimenSystemError", "QimenCallRejected"),
    QimenOutcome.UNEXPECTED_FAILURE: ("QimenUnexpectedError", "QimenSystemError", "QimenCallRejected"),
    Fulfillment.CREATED: ("FulfillmentOrderCreated",),
    Fulfillment.REPLAYED: ("FulfillmentOrderReplayed",),
    Fulfillment.CONFLICT: ("FulfillmentOrderConflict", "QimenCallRejected"),
    Fulfillment.NO_INVENTORY: ("FulfillmentNoInventory", "QimenCallRejected"),
    Fulfillment.STORAGE_FAILED: ("FulfillmentStorageFailed", "QimenSystemError", "QimenCallRejected"),
}


def respond(result: DispatchResult) -> Response:
    for name in METRICS[result.outcome]:
        metrics.add_metric(name=name, unit=MetricUnit.Count, value=1)
    return Response(200, CONTENT_TYPE, dumps(result.answer))


@app.post("/qimen")
@tracer.capture_method(capture_response=False)  # answers may quote the caller's input
def qimen() -> Response:
    # build_qimen_dispatcher is looked up here, at call time, so tests can put their own in its place.
    return respond(dispatch_event(app.current_event.raw_event, build_qimen_dispatcher))


@app.exception_handler(Exception)
def unexpected(exc: Exception) -> Response:
    # The platform only understands HTTP 200 with the documented JSON: never let a 5xx or HTML through.
    logger.exception("unexpected failure in the Qimen callback")
    return respond(unexpected_failure())


# log_event=False whatever POWERTOOLS_LOGGER_LOG_EVENT says: the event holds the order, personal data included.
@logger.inject_lambda_context(clear_state=True, log_event=False)
@metrics.log_metrics
@tracer.capture_lambda_handler(capture_response=False)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)
