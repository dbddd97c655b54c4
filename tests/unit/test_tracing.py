"""taobao_bridge.tracing: with tracing switched off the handlers' Tracer never loads the X-Ray SDK (a cold start
cost), and its decorators still pass results and exceptions through; with tracing on it is Powertools' own."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from bridge_local.template import PROJECT_ROOT
from taobao_bridge.tracing import tracing_disabled

# Runs in a fresh interpreter: whether a module is loaded is only meaningful there.
PROBE = """
import json, sys
from taobao_bridge.tracing import NoTracing, handler_tracer

tracer = handler_tracer(["botocore"])

@tracer.capture_method
def inner(value):
    if value < 0:
        raise ValueError("negative")
    return value * 2

@tracer.capture_lambda_handler
def handler(event, context):
    return {"doubled": inner(event["value"])}

answer = handler({"value": 21}, None)
try:
    handler({"value": -1}, None)
    raised = False
except ValueError:
    raised = True
print(json.dumps({
    "answer": answer,
    "raised": raised,
    "no_tracing": isinstance(tracer.provider, NoTracing),
    "xray_sdk_loaded": "aws_xray_sdk.core" in sys.modules,
}))
"""


def probe(trace_disabled: str) -> dict:
    env = {key: value for key, value in os.environ.items() if not key.startswith(("POWERTOOLS_", "_X_AMZN"))}
    env.update(
        POWERTOOLS_TRACE_DISABLED=trace_disabled,
        POWERTOOLS_SERVICE_NAME="taobao-bridge",
        AWS_LAMBDA_FUNCTION_NAME="probe",  # outside Lambda Powertools would switch tracing off by itself
        AWS_XRAY_CONTEXT_MISSING="IGNORE_ERROR",
        PYTHONPATH=os.pathsep.join([str(PROJECT_ROOT / "layers" / "shared"), env.get("PYTHONPATH", "")]),
    )
    done = subprocess.run(
        [sys.executable, "-c", PROBE], capture_output=True, text=True, env=env, timeout=120, check=True
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_tracing_off_never_loads_the_xray_sdk() -> None:
    found = probe("true")
    assert found == {"answer": {"doubled": 42}, "raised": True, "no_tracing": True, "xray_sdk_loaded": False}


def test_tracing_on_is_powertools_with_the_xray_recorder() -> None:
    found = probe("false")
    assert found == {"answer": {"doubled": 42}, "raised": True, "no_tracing": False, "xray_sdk_loaded": True}


@pytest.mark.parametrize(
    ("value", "disabled"),
    [("true", True), ("TRUE", True), ("1", True), ("yes", True), ("on", True), ("false", False), ("0", False),
     ("", False), (None, False)],
)  # fmt: skip
def test_the_switch_reads_as_powertools_reads_it(value: str | None, disabled: bool) -> None:
    environ = {} if value is None else {"POWERTOOLS_TRACE_DISABLED": value}
    assert tracing_disabled(environ) is disabled
