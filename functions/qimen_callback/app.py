"""Qimen callback: POST /qimen, always HTTP 200 + JSON. taobao_bridge decides and logs; this handler counts."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from taobao_bridge.callback import build_qimen_dispatcher, raw_body
from taobao_bridge.fulfillment_service import FulfillmentOutcome as Fulfillment
from taobao_bridge.jsonutil import dumps
from taobao_bridge.qimen import QimenAnswerCode, QimenOutcome, answer
from taobao_bridge.settings import metrics_namespace

logger = Logger()
metrics = Metrics(namespace=metrics_namespace())
tracer = Tracer()
app = APIGatewayHttpResolver()
CONTENT_TYPE = "application/json;charset=utf-8"

# Every outcome (a unit test checks it). QimenCallRejected: any answer but success and sign-check-failure.
METRICS: dict[str, tuple[str, ...]] = {
    QimenOutcome.SIGNATURE_REJECTED: ("QimenSignatureRejected",),
    QimenOutcome.INVALID: ("QimenCallRejected",),
    QimenOutcome.REJECTED: ("QimenCallRejected",),
    Fulfillment.CREATED: ("FulfillmentOrderCreated",),
    Fulfillment.REPLAYED: ("FulfillmentOrderReplayed",),
    Fulfillment.CONFLICT: ("FulfillmentOrderConflict", "QimenCallRejected"),
    Fulfillment.NO_INVENTORY: ("FulfillmentNoInventory", "QimenCallRejected"),
    Fulfillment.STORAGE_FAILED: ("FulfillmentStorageFailed", "QimenCallRejected"),
}


@app.post("/qimen")
@tracer.capture_method
def qimen() -> Response:
    event = app.current_event
    result = build_qimen_dispatcher().dispatch(event.raw_query_string, event.headers, raw_body(event.raw_event))
    for name in METRICS[result.outcome]:
        metrics.add_metric(name=name, unit=MetricUnit.Count, value=1)
    return Response(200, CONTENT_TYPE, dumps(result.answer))


@app.exception_handler(Exception)
def unexpected(exc: Exception) -> Response:
    # The platform only understands HTTP 200 with the documented JSON: never let a 5xx or HTML through.
    logger.exception("unexpected failure in the Qimen callback")
    failure = answer(code=QimenAnswerCode.SYSTEM_ERROR, message="internal error; retrying is safe")
    return Response(200, CONTENT_TYPE, dumps(failure))


@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics
@tracer.capture_lambda_handler
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)
