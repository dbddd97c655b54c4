"""Fulfillment order events: DynamoDB stream records of new orders (INSERT only, filtered by the event source) to
one FulfillmentOrderReceived event each on the bridge's EventBridge bus. taobao_bridge.fulfillment_events
publishes and says what failed; this handler counts and answers Lambda with the records to retry."""

from __future__ import annotations

import gc

gc.disable()  # until imports_done() at the end: taobao_bridge.coldstart says why

import os
from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from taobao_bridge.coldstart import imports_done
from taobao_bridge.fulfillment_events import EVENT_BUS_ENV, STAGE_ENV, publish_new_orders
from taobao_bridge.settings import metrics_namespace
from taobao_bridge.tracing import handler_tracer

logger = Logger()
metrics = Metrics(namespace=metrics_namespace())
tracer = handler_tracer(["botocore"])  # only what this function calls; no X-Ray SDK when tracing is off


# log_event=False: a stream record's new image is the whole order, personal data included.
@logger.inject_lambda_context(clear_state=True, log_event=False)
@metrics.log_metrics
@tracer.capture_lambda_handler(capture_response=False)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    report = publish_new_orders(
        event.get("Records") or [],
        bus_name=os.environ.get(EVENT_BUS_ENV, ""),
        stage=os.environ.get(STAGE_ENV, ""),
    )
    metrics.add_metric(name="FulfillmentEventsPublished", unit=MetricUnit.Count, value=report.published)
    metrics.add_metric(name="FulfillmentEventsFailed", unit=MetricUnit.Count, value=len(report.failed))
    metrics.add_metric(name="FulfillmentEventsSkipped", unit=MetricUnit.Count, value=report.skipped)
    return report.batch_response()


imports_done()  # last: what the module built above is the container's for life
