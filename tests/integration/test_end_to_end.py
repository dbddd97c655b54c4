"""The whole outbound path on the local stack, through the deployed handlers: intake over HTTP, the scheduled
sync function invoked as EventBridge Scheduler would, the records' state read back over HTTP."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from bridge_local.intake_client import IntakeClient
from taobao_bridge.kinds import KINDS, Kind
from taobao_bridge.settings import ENV, LOCAL_DEFAULTS

pytestmark = pytest.mark.integration


def schedule(stack: Any, function_id: str) -> dict[str, Any]:
    (found,) = [s for s in stack.schedules if s.function_id == function_id]
    result = stack.run_schedule_once(found)
    assert result is not None, f"{function_id} raised"
    return result


def test_writeoffs_posted_to_intake_reach_the_platform_in_minimum_calls(stack: Any) -> None:
    schedule(stack, "SyncWriteoffsFunction")  # drain what other tests left due
    stack.sandbox.reset()
    stack.sandbox.clear()
    records = [
        {
            "biz_type": 2,
            "verify_time": "2026-11-23 10:00:00",
            "tb_store_id": 2343432,
            "service_status": 3,
            "service_id": 1111,
            "service_detail_id": n,
            "tb_biz_order_id": 5_000_000_000_000_000_000 + n,
        }
        for n in range(2500)
    ]
    summary = IntakeClient(stack.url).submit(Kind.WRITEOFF, records, progress=False)
    assert summary.accepted == 2500

    result = schedule(stack, "SyncWriteoffsFunction")
    assert (result["status"], result["calls"], result["synced"]) == ("done", 3, 2500)
    method = KINDS[Kind.WRITEOFF].method
    assert sorted(c.records for c in stack.sandbox.calls(method)) == [502, 999, 999]

    record_id = KINDS[Kind.WRITEOFF].record_id(records[1234])
    shown = httpx.get(f"{stack.url}/v1/writeoffs/{record_id}", timeout=5).json()
    assert (shown["state"], shown["attempts"]) == ("synced", 1)


def test_external_order_shows_the_platform_order_id(stack: Any) -> None:
    from bridge_local.top_sandbox import order_id_for

    schedule(stack, "SyncExternalOrdersFunction")
    order = {"order_info": {"out_order_id": "E2E-1", "total_fee": 100}, "idempotent_id": "E2E-idem-1"}
    response = httpx.post(f"{stack.url}/v1/external-orders", json=order, timeout=5)
    assert response.status_code == 202, response.text
    result = schedule(stack, "SyncExternalOrdersFunction")
    assert result["synced"] >= 1
    shown = httpx.get(f"{stack.url}/v1/external-orders/E2E-idem-1", timeout=5).json()
    assert shown["state"] == "synced"
    assert shown["platform_order_id"] == str(order_id_for("E2E-idem-1")), "text: JavaScript would round it"


def test_risk_sync_carries_the_session_through_the_handler(stack: Any) -> None:
    schedule(stack, "SyncRiskFunction")
    stack.sandbox.clear()
    record = {
        "install_type": 0,
        "buyer_phone": "13012345678",
        "tc_order_id": 3882527336184474047,
        "tc_sub_order_id": 3882527336184479999,
        "buyer_name": "王五",
    }
    assert httpx.post(f"{stack.url}/v1/risk-records", json=[record], timeout=5).status_code == 202
    result = schedule(stack, "SyncRiskFunction")
    assert (result["status"], result["synced"]) == ("done", 1)
    (call,) = stack.sandbox.calls(KINDS[Kind.RISK].method)
    assert call.session == LOCAL_DEFAULTS[ENV.TOP_SESSION_KEY]
