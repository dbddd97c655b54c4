"""Fulfillment orders for merchant systems: GET /v1/fulfillment-orders?after=<cursor>&limit=<n> (in received
order; pass the answer's ``next`` back) and GET /v1/fulfillment-orders/{fulfillment_order_no}. The customer's
personal data (user_info, address_info, memo) is in the answer only with ``include=personal``. The views, the
cursor and the settle lag live in taobao_bridge.fulfillment_orders (README.md, "Fulfillment orders")."""

from __future__ import annotations

import gc

gc.disable()  # until imports_done() at the end: taobao_bridge.coldstart says why

import os
from typing import Any
from urllib.parse import unquote

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from taobao_bridge import dynamo
from taobao_bridge.coldstart import imports_done
from taobao_bridge.errors import StorageError
from taobao_bridge.fulfillment_orders import (
    Cursor,
    FulfillmentOrders,
    InvalidParameter,
    OrderNotFound,
    parse_include,
    parse_limit,
    settle_lag_from_env,
)
from taobao_bridge.fulfillment_store import FulfillmentStore
from taobao_bridge.jsonutil import dumps
from taobao_bridge.settings import load_settings, metrics_namespace
from taobao_bridge.tracing import handler_tracer

logger = Logger()
metrics = Metrics(namespace=metrics_namespace())
tracer = handler_tracer(["botocore"])  # only what this function calls; no X-Ray SDK when tracing is off
app = APIGatewayHttpResolver()
CONTENT_TYPE = "application/json;charset=utf-8"


def _json(status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> Response:
    return Response(status_code=status, content_type=CONTENT_TYPE, body=dumps(body), headers=headers)


def _orders() -> FulfillmentOrders:
    # Cheap: settings and the views are built per request; the DynamoDB client is shared by the container.
    settings = load_settings()
    store = FulfillmentStore(settings.require("fulfillment_table"), "", client=dynamo.dynamodb_client())
    lag = settle_lag_from_env(os.environ)
    return FulfillmentOrders(store, settle_lag_s=lag, retention_days=settings.order_retention_days)


def _include_personal() -> bool:
    return parse_include(app.current_event.get_query_string_value("include"))


@app.get("/v1/fulfillment-orders")
@tracer.capture_method(capture_response=False)  # pages may hold personal data
def list_orders() -> Response:
    query = app.current_event
    after = query.get_query_string_value("after")
    page = _orders().list(
        Cursor.decode(after) if after is not None else None,
        limit=parse_limit(query.get_query_string_value("limit")),
        include_personal=_include_personal(),
    )
    metrics.add_metric(name="FulfillmentOrdersListed", unit=MetricUnit.Count, value=len(page.orders))
    return _json(200, page.to_dict())


@app.get("/v1/fulfillment-orders/<order_no>")
@tracer.capture_method(capture_response=False)
def show_order(order_no: str) -> Response:
    view = _orders().get(unquote(order_no), include_personal=_include_personal())
    metrics.add_metric(name="FulfillmentOrderLookups", unit=MetricUnit.Count, value=1)
    return _json(200, view)


def _rejected(status: int, body: dict[str, Any]) -> Response:
    metrics.add_metric(name="FulfillmentOrderRequestsRejected", unit=MetricUnit.Count, value=1)
    return _json(status, body)


@app.exception_handler(InvalidParameter)
def invalid(exc: InvalidParameter) -> Response:
    return _rejected(400, {"error": "invalid_parameter", "message": str(exc), "field": exc.field})


@app.exception_handler(OrderNotFound)
def not_found(exc: OrderNotFound) -> Response:
    return _rejected(404, {"error": "not_found", "message": str(exc)})


@app.exception_handler(StorageError)
def storage_unavailable(exc: StorageError) -> Response:
    logger.exception("reading fulfillment orders failed")
    metrics.add_metric(name="StorageFailures", unit=MetricUnit.Count, value=1)
    message = "the orders table could not be read; retrying the same request is safe"
    return _json(503, {"error": "storage_unavailable", "message": message}, headers={"Retry-After": "1"})


# log_event=False: the event's query may ask for personal data, and answers hold it.
@logger.inject_lambda_context(clear_state=True, log_event=False)
@metrics.log_metrics
@tracer.capture_lambda_handler(capture_response=False)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)


imports_done()  # last: what the module built above is the container's for life
