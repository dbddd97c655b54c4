"""Scheduled (EventBridge): one sync run for risk — due outbox records to signed TOP calls."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.utilities.typing import LambdaContext

from taobao_bridge.kinds import Kind
from taobao_bridge.sync import run_scheduled

logger = Logger()
metrics = Metrics()
tracer = Tracer()


@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics
@tracer.capture_lambda_handler
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    metrics.add_dimension(name="kind", value=Kind.RISK.value)
    return run_scheduled(Kind.RISK, context.get_remaining_time_in_millis)
