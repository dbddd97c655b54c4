"""Every sample event in events/ drives the function it is for, on the local stack, with the expected answer."""

from __future__ import annotations

import json
from typing import Any

import pytest

from bridge_local.apigw import lambda_context
from bridge_local.stack import PROJECT_ROOT
from bridge_local.template import load_handler

pytestmark = pytest.mark.integration
EVENTS = PROJECT_ROOT / "events"


def invoke_route(stack: Any, file_name: str) -> dict[str, Any]:
    event = json.loads((EVENTS / file_name).read_text(encoding="utf-8"))
    (route,) = [r for r in stack.routes if r.route_key == event["routeKey"]]
    handler = load_handler(PROJECT_ROOT, route.code_uri, route.handler)
    result: dict[str, Any] = handler(event, lambda_context(route.function_id, route.timeout_s))
    return result


def test_every_event_file_is_covered() -> None:
    names = {p.name for p in EVENTS.glob("*.json")}
    assert names == set(EXPECTED) | {"sync_scheduled.json"}


EXPECTED = {
    "qimen_fulfillment_create.json": (200, {"success": True, "biz_result": "success"}),
    "qimen_bad_signature.json": (200, {"success": "false", "biz_error_code": "sign-check-failure"}),
    "qimen_malformed_json.json": (200, {"biz_error_code": "INVALID_JSON"}),
    "intake_writeoffs.json": (202, {}),
    "intake_risk_records.json": (202, {}),
    "intake_external_orders.json": (202, {}),
    "intake_get_record.json": (200, {"kind": "writeoff", "id": "353454543-111223-b54fdfds343"}),
}


@pytest.mark.parametrize("file_name", list(EXPECTED))
def test_sample_event(stack: Any, file_name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # The committed Qimen events carry a fixed timestamp; the window check has its own tests.
    monkeypatch.setenv("QIMEN_TIMESTAMP_WINDOW_S", "0")
    if file_name == "intake_get_record.json":
        invoke_route(stack, "intake_writeoffs.json")
    result = invoke_route(stack, file_name)
    status, fields = EXPECTED[file_name]
    assert result["statusCode"] == status, result
    body = json.loads(result["body"])
    assert {k: body.get(k) for k in fields} == fields


def test_scheduled_event_runs_each_sync_function(stack: Any) -> None:
    event = json.loads((EVENTS / "sync_scheduled.json").read_text(encoding="utf-8"))
    assert len(stack.schedules) == 3
    for schedule in stack.schedules:
        handler = load_handler(PROJECT_ROOT, schedule.code_uri, schedule.handler)
        report = handler(event, lambda_context(schedule.function_id, schedule.timeout_s))
        assert report["status"] == "done", report
