"""Scheduled (EventBridge Scheduler): one sync run of due outbox records to signed TOP calls.

One code folder, three entry points (one Lambda function each, see template.yaml): ``writeoffs``, ``risk``,
``external_orders``. The run itself is ``taobao_bridge.sync``.
"""

from __future__ import annotations

import gc

gc.disable()  # until imports_done() at the end: taobao_bridge.coldstart says why

from collections.abc import Callable
from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from taobao_bridge.coldstart import imports_done
from taobao_bridge.kinds import Kind
from taobao_bridge.settings import metrics_namespace
from taobao_bridge.sync import run_scheduled
from taobao_bridge.tracing import handler_tracer

logger = Logger()
metrics = Metrics(namespace=metrics_namespace())
tracer = handler_tracer(["botocore", "httpx"])  # only what this function calls; no X-Ray SDK when tracing is off

Handler = Callable[[dict[str, Any], LambdaContext], dict[str, Any]]


def _handler_for(kind: Kind) -> Handler:
    @logger.inject_lambda_context(clear_state=True)
    @metrics.log_metrics
    @tracer.capture_lambda_handler
    def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
        report = run_scheduled(kind, context.get_remaining_time_in_millis)
        # No per-kind metric dimension: the RecordsDead and TopSessionExpired alarms watch {service} alone,
        # and CloudWatch matches dimensions exactly. The run report in the log names the kind.
        for name, unit, value in report.metric_values():
            metrics.add_metric(name=name, unit=MetricUnit(unit), value=value)
        return report.as_dict()

    return handler


writeoffs = _handler_for(Kind.WRITEOFF)
risk = _handler_for(Kind.RISK)
external_orders = _handler_for(Kind.EXTERNAL_ORDER)


imports_done()  # last: what the module built above is the container's for life
