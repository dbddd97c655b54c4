"""No personal data from merchant records reaches a log: intake (accepted, invalid, malformed, storage failure),
record lookups and the sync runs that send them, with personal values in known and unknown fields."""

from __future__ import annotations

import json
import logging
import random
from typing import Any

import pytest

pytestmark = pytest.mark.integration

PHONE = "13987654321"
NAME = "欧阳娜娜"
ID_CARD = "110105199001011234"
EMAIL = "nana.ouyang@example.cn"
ADDRESS = "北京市朝阳区建国路88号"
PERSONAL = (PHONE, NAME, ID_CARD, EMAIL, ADDRESS)


def records(base: int) -> dict[str, list[dict[str, Any]]]:
    return {
        "writeoffs": [
            {
                "biz_type": 2,
                "verify_time": "2026-11-23 10:00:00",
                "tb_store_id": 1,
                "service_status": 3,
                "service_id": 1,
                "service_detail_id": 1,
                "tb_biz_order_id": base,
                "user_name": NAME,
                "tb_store_name": ADDRESS,
            }
        ],
        "risk-records": [
            {
                "install_type": 1,
                "buyer_phone": PHONE,
                "tc_order_id": base,
                "tc_sub_order_id": base + 1,
                "buyer_name": NAME,
                "car_license_num": ID_CARD,
            }
        ],
        "external-orders": [
            {
                "idempotent_id": f"LOGS-{base}",
                "buyer_info": {"user_nick": NAME, "user_phone": PHONE},
                "ext_info": json.dumps({"email": EMAIL, "address": ADDRESS}, ensure_ascii=False),
            }
        ],
    }


def post(stack: Any, path: str, body: Any) -> int:
    raw = body if isinstance(body, bytes) else json.dumps(body, ensure_ascii=False).encode("utf-8")
    status, _, _ = stack.invoke_http("POST", f"/v1/{path}", [("content-type", "application/json")], raw)
    return int(status)


def test_no_personal_value_reaches_any_log(
    stack: Any, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    base = random.randrange(10**15, 10**16)
    with caplog.at_level(logging.DEBUG):
        for path, batch in records(base).items():
            assert post(stack, path, batch) == 202
            assert post(stack, path, batch) == 202  # duplicates
            changed = [{**batch[0], "unknown_field": PHONE, "note": EMAIL}]
            assert post(stack, path, changed) == 400  # invalid: an unknown field, its value personal
            assert post(stack, path, json.dumps(batch, ensure_ascii=False).encode()[:-3]) == 400  # malformed
        for schedule in stack.schedules:
            stack.run_schedule_once(schedule)
    captured = capsys.readouterr()
    everything = "\n".join([caplog.text, captured.out, captured.err])
    assert "sync run finished" in everything or "records submitted" in everything, "the logs were captured"
    leaked = [value for value in PERSONAL if value in everything]
    assert leaked == [], f"personal data in the logs: {leaked}"
