"""Qimen callback: POST /qimen. Verifies, validates and stores via taobao_bridge; always HTTP 200 + JSON."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response
from aws_lambda_powertools.utilities.typing import LambdaContext

from taobao_bridge.callback import build_qimen_dispatcher, raw_body
from taobao_bridge.jsonutil import dumps
from taobao_bridge.qimen import QimenAnswerCode, answer
from taobao_bridge.settings import metrics_namespace

logger = Logger()
metrics = Metrics(namespace=metrics_namespace())
tracer = Tracer()
app = APIGatewayHttpResolver()

CONTENT_TYPE = "application/json;charset=utf-8"


def _json(body: dict[str, Any]) -> Response:
    return Response(status_code=200, content_type=CONTENT_TYPE, body=dumps(body))


@app.post("/qimen")
@tracer.capture_method
def qimen() -> Response:
    event = app.current_event
    result = build_qimen_dispatcher().dispatch(event.raw_query_string, event.headers, raw_body(event.raw_event))
    return _json(result)


@app.exception_handler(Exception)
def unexpected(exc: Exception) -> Response:
    # The platform only understands HTTP 200 with the documented JSON: never let a 5xx or HTML through.
    logger.exception("unexpected failure in the Qimen callback")
    return _json(answer(code=QimenAnswerCode.SYSTEM_ERROR, message="internal error; retrying is safe"))


@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics
@tracer.capture_lambda_handler
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)
