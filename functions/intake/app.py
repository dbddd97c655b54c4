"""Intake: POST /v1/{writeoffs,risk-records,external-orders} stores records in the outbox; GET /v1/{kind}/{id}
shows one record's sync state. Validation and storage live in taobao_bridge.intake and taobao_bridge.outbox."""

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
from taobao_bridge.intake import (
    Intake,
    IntakeRejected,
    MalformedBody,
    NotFound,
    TooManyRecords,
    accept_answer,
    incomplete_answer,
    parse_body,
    spec_for_path,
)
from taobao_bridge.jsonutil import dumps
from taobao_bridge.outbox import AcceptIncomplete, AcceptStatus, OutboxStore, RecordTooLarge
from taobao_bridge.settings import load_settings, metrics_namespace
from taobao_bridge.tracing import handler_tracer

logger = Logger()
metrics = Metrics(namespace=metrics_namespace())
tracer = handler_tracer(["botocore"])  # only what this function calls; no X-Ray SDK when tracing is off
app = APIGatewayHttpResolver()

CONTENT_TYPE = "application/json;charset=utf-8"
_METRIC_NAMES = {
    AcceptStatus.ACCEPTED: "RecordsAccepted",
    AcceptStatus.REPLACED: "RecordsReplaced",
    AcceptStatus.DUPLICATE: "RecordsDuplicate",
    AcceptStatus.CONFLICT: "RecordsConflict",
}


def _json(status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> Response:
    return Response(status_code=status, content_type=CONTENT_TYPE, body=dumps(body), headers=headers)


def _rejected(status: int, body: dict[str, Any]) -> Response:
    metrics.add_metric(name="RequestsRejected", unit=MetricUnit.Count, value=1)
    return _json(status, body)


def _body() -> bytes:
    try:
        return raw_body(app.current_event.raw_event)
    except ValueError as exc:
        raise MalformedBody(str(exc)) from None


def _intake() -> Intake:
    # Cheap: settings and the store are built per request; the DynamoDB client is shared by the container.
    return Intake(OutboxStore.from_settings(load_settings()))


@app.post("/v1/<segment>")
@tracer.capture_method(capture_response=False)
def submit(segment: str) -> Response:
    spec = spec_for_path(segment)
    results = _intake().submit(spec.kind, parse_body(_body()))
    for status, name in _METRIC_NAMES.items():
        metrics.add_metric(name=name, unit=MetricUnit.Count, value=sum(r.status == status for r in results))
    logger.info("records submitted", extra={"kind": spec.kind.value, "count": len(results)})
    status_code, body = accept_answer(results)
    return _json(status_code, body)


@app.get("/v1/<segment>/<record_id>")
@tracer.capture_method(capture_response=False)
def show(segment: str, record_id: str) -> Response:
    metrics.add_metric(name="RecordLookups", unit=MetricUnit.Count, value=1)
    return _json(200, _intake().status(spec_for_path(segment).kind, unquote(record_id)))


@app.exception_handler(IntakeRejected)
def invalid_records(exc: IntakeRejected) -> Response:
    problems = [problem.to_dict() for problem in exc.problems]
    return _rejected(400, {"error": "invalid_records", "problem_count": exc.total, "problems": problems})


@app.exception_handler(MalformedBody)
def malformed(exc: MalformedBody) -> Response:
    return _rejected(400, {"error": "invalid_json", "message": str(exc)})


@app.exception_handler(TooManyRecords)
def too_many(exc: TooManyRecords) -> Response:
    return _rejected(413, {"error": "too_many_records", "message": str(exc), "limit": exc.limit})


@app.exception_handler(RecordTooLarge)
def too_large(exc: RecordTooLarge) -> Response:
    body = {"error": "record_too_large", "message": str(exc), "id": exc.record_id, "size": exc.size}
    return _rejected(413, {**body, "limit": exc.limit})


@app.exception_handler(NotFound)
def not_found(exc: NotFound) -> Response:
    return _rejected(404, {"error": "not_found", "message": str(exc)})


@app.exception_handler(StorageError)
def storage_unavailable(exc: StorageError) -> Response:
    logger.exception("outbox storage failed")
    metrics.add_metric(name="StorageFailures", unit=MetricUnit.Count, value=1)
    if isinstance(exc, AcceptIncomplete):
        return _json(503, incomplete_answer(exc.results), headers={"Retry-After": "1"})
    message = "the outbox could not be reached; nothing was changed; retrying the same request is safe"
    return _json(503, {"error": "storage_unavailable", "message": message}, headers={"Retry-After": "1"})


@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics
@tracer.capture_lambda_handler(capture_response=False)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)


imports_done()  # last: what the module built above is the container's for life
