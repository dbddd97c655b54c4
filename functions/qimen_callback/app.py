"""Qimen callback: POST /qimen, always HTTP 200 + JSON. taobao_bridge decides and logs; this handler counts.

One route needs no router: a plain function reads the HTTP API (v2) event. Powertools' event handler package
costs a cold start about 40 ms (it imports its AppSync, Bedrock and VPC Lattice resolvers and asyncio), and the
answers below keep the exact shape its HTTP API resolver gave.
"""

from __future__ import annotations

import gc

gc.disable()  # until imports_done() at the end: taobao_bridge.coldstart says why

import logging
from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from taobao_bridge.callback import build_qimen_dispatcher, dispatch_event, unexpected_failure
from taobao_bridge.coldstart import imports_done
from taobao_bridge.fulfillment_service import FulfillmentOutcome as Fulfillment
from taobao_bridge.jsonutil import dumps
from taobao_bridge.qimen import DispatchResult, QimenOutcome
from taobao_bridge.settings import metrics_namespace
from taobao_bridge.tracing import handler_tracer

logger = Logger()
metrics = Metrics(namespace=metrics_namespace())
tracer = handler_tracer(["botocore"])  # only what this function calls; no X-Ray SDK when tracing is off
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


ROUTE = ("POST", "/qimen")  # the one route template.yaml sends here


def respond(result: DispatchResult) -> dict[str, Any]:
    for name in METRICS[result.outcome]:
        metrics.add_metric(name=name, unit=MetricUnit.Count, value=1)
    # HTTP API payload format 2.0, as Powertools' resolver answered it.
    headers = {"Content-Type": CONTENT_TYPE}
    return {
        "statusCode": 200,
        "body": dumps(result.answer),
        "isBase64Encoded": False,
        "headers": headers,
        "cookies": [],
    }


def route_of(event: dict[str, Any]) -> tuple[str, str]:
    """Method and path as Powertools' HTTP API resolver matched them: a stage other than ``$default`` is cut
    from the front of the path (the template has none; API Gateway's own stage prefix)."""
    context = event.get("requestContext") or {}
    method = str((context.get("http") or {}).get("method") or "").upper()
    path, stage = str(event.get("rawPath") or ""), context.get("stage", "$default")
    return method, path if stage == "$default" else path[len(f"/{stage}") :]


@tracer.capture_method(capture_response=False)  # answers may quote the caller's input
def qimen(event: dict[str, Any]) -> dict[str, Any]:
    # build_qimen_dispatcher is looked up here, at call time, so tests can put their own in its place.
    return respond(dispatch_event(event, build_qimen_dispatcher))


# log_event=False whatever POWERTOOLS_LOGGER_LOG_EVENT says: the event holds the order, personal data included.
@logger.inject_lambda_context(clear_state=True, log_event=False)
@metrics.log_metrics
@tracer.capture_lambda_handler(capture_response=False)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    # The platform only understands HTTP 200 with the documented JSON: never let a 5xx or HTML through.
    try:
        method, path = route_of(event)
        if (method, path) != ROUTE:
            # API Gateway routes nothing else here; answered (and counted) as the resolver's 404 was.
            logger.error("the Qimen callback does not serve this request", extra={"method": method})
            return respond(unexpected_failure())
        return qimen(event)
    except Exception:
        logger.exception("unexpected failure in the Qimen callback")
        return respond(unexpected_failure())


imports_done()  # last: what the module built above is the container's for life
