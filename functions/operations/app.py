"""Operations: operators list outbox records by state, make dead or unconfirmed ones due again, read every flow's
status, lift bans and pause or resume flows (README "Operating records"). The logic is taobao_bridge.operations."""

from __future__ import annotations

import gc

gc.disable()  # until imports_done() at the end: taobao_bridge.coldstart says why

from typing import Any
from urllib.parse import unquote

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from taobao_bridge.apigw import raw_body
from taobao_bridge.coldstart import imports_done
from taobao_bridge.errors import StorageError
from taobao_bridge.intake import NotFound
from taobao_bridge.jsonutil import dumps
from taobao_bridge.operations import InvalidParameter, Operations
from taobao_bridge.outbox import NotRetryable
from taobao_bridge.settings import load_settings, metrics_namespace
from taobao_bridge.tracing import handler_tracer

logger = Logger()
metrics = Metrics(namespace=metrics_namespace())
tracer = handler_tracer(["botocore"])  # only what this function calls; no X-Ray SDK when tracing is off
app = APIGatewayHttpResolver()

CONTENT_TYPE = "application/json;charset=utf-8"


def _json(status: int, body: dict[str, Any]) -> Response:
    return Response(status_code=status, content_type=CONTENT_TYPE, body=dumps(body))


def _operations() -> Operations:
    return Operations.from_settings(load_settings())


def _body() -> bytes:
    try:
        return raw_body(app.current_event.raw_event)
    except ValueError as exc:
        raise InvalidParameter("body", str(exc)) from None


# Literal /v1/ops routes first: the resolver takes the first route that matches.
@app.get("/v1/ops/status")
@tracer.capture_method(capture_response=False)
def status() -> Response:
    return _json(200, _operations().status())


@app.post("/v1/ops/bans/<scope>/lift")
@tracer.capture_method(capture_response=False)
def lift_ban(scope: str) -> Response:
    answer = _operations().lift_ban(scope)
    logger.info("ban lift asked", extra=answer)
    return _json(200, answer)


@app.post("/v1/ops/flows/<name>/pause")
@tracer.capture_method(capture_response=False)
def pause(name: str) -> Response:
    answer = _operations().pause_flow(name, _body())
    metrics.add_metric(name="FlowsPausedByOperator", unit=MetricUnit.Count, value=1)
    logger.info("flow paused by an operator", extra=answer)
    return _json(200, answer)


@app.post("/v1/ops/flows/<name>/resume")
@tracer.capture_method(capture_response=False)
def resume(name: str) -> Response:
    answer = _operations().resume_flow(name)
    logger.info("flow resume asked", extra=answer)
    return _json(200, answer)


@app.post("/v1/ops/flows/<name>/clear-session-pause")
@tracer.capture_method(capture_response=False)
def clear_session_pause(name: str) -> Response:
    answer = _operations().clear_session_pause(name)
    logger.info("session pause clear asked", extra=answer)
    return _json(200, answer)


@app.get("/v1/<segment>")
@tracer.capture_method(capture_response=False)
def list_records(segment: str) -> Response:
    return _json(200, _operations().list_records(segment, app.current_event.query_string_parameters))


@app.post("/v1/<segment>/retry")
@tracer.capture_method(capture_response=False)
def retry_records(segment: str) -> Response:
    answer = _operations().retry_records(segment, _body())
    metrics.add_metric(name="RecordsReplayed", unit=MetricUnit.Count, value=answer["retried"])
    logger.info("records retried", extra={k: answer[k] for k in ("state", "dry_run", "matched", "retried")})
    return _json(200, answer)


@app.post("/v1/<segment>/<record_id>/retry")
@tracer.capture_method(capture_response=False)
def retry_record(segment: str, record_id: str) -> Response:
    answer = _operations().retry_record(segment, unquote(record_id))
    metrics.add_metric(name="RecordsReplayed", unit=MetricUnit.Count, value=1)
    logger.info("record retried", extra={"id": answer["id"]})
    return _json(200, answer)


@app.exception_handler(InvalidParameter)
def invalid(exc: InvalidParameter) -> Response:
    return _json(400, {"error": "invalid_parameter", "parameter": exc.parameter, "message": str(exc)})


@app.exception_handler(NotFound)
def not_found(exc: NotFound) -> Response:
    return _json(404, {"error": "not_found", "message": str(exc)})


@app.exception_handler(NotRetryable)
def not_retryable(exc: NotRetryable) -> Response:
    return _json(409, {"error": "not_retryable", "state": exc.state, "message": str(exc)})


@app.exception_handler(StorageError)
def storage_unavailable(exc: StorageError) -> Response:
    logger.exception("outbox storage failed")
    metrics.add_metric(name="StorageFailures", unit=MetricUnit.Count, value=1)
    message = "the outbox could not be reached; retrying the same request is safe"
    return Response(
        status_code=503,
        content_type=CONTENT_TYPE,
        body=dumps({"error": "storage_unavailable", "message": message}),
        headers={"Retry-After": "1"},
    )


@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics
@tracer.capture_lambda_handler(capture_response=False)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    metrics.add_metric(name="OperatorRequests", unit=MetricUnit.Count, value=1)
    return app.resolve(event, context)


imports_done()  # last: what the module built above is the container's for life
