"""Intake end to end: HTTP calls to the local stack's intake routes, real moto DynamoDB behind them."""

from __future__ import annotations

import json
import random
from typing import Any

import httpx
import pytest

from bridge_local.__main__ import main as cli
from bridge_local.intake_client import IntakeClient, read_records
from taobao_bridge.intake import Intake, IntakeRejected
from taobao_bridge.jsonutil import dumps
from taobao_bridge.kinds import Kind
from taobao_bridge.outbox import OutboxStore

pytestmark = pytest.mark.integration


def order_ids(count: int = 1) -> int:
    """A random order-id base, so that tests sharing the session's table never meet each other's keys."""
    return random.randrange(10**15, 10**16 - count)


def writeoff(order_id: int, **changes: Any) -> dict[str, Any]:
    record: dict[str, Any] = {
        "biz_type": 2,
        "verify_time": "2026-03-01 12:00:00",
        "tb_store_id": 2343432,
        "service_status": 2,
        "service_id": 1111,
        "service_detail_id": 111223,
        "tb_biz_order_id": order_id,
        "verify_batch_no": "B1",
        "user_name": "张三",
    }
    record.update(changes)
    return record


def writeoff_id(order_id: int) -> str:
    return f"{order_id}-111223-bB1"


def risk(sub_order_id: int, **changes: Any) -> dict[str, Any]:
    record: dict[str, Any] = {
        "install_type": 1,
        "buyer_phone": "13012345678",
        "tc_order_id": 3882527336184474047,
        "tc_sub_order_id": sub_order_id,
        "buyer_name": "王五",
        "service_use_time": "2026-03-01 10:00:00",
    }
    record.update(changes)
    return record


def post(stack: Any, path: str, body: Any) -> httpx.Response:
    content = body if isinstance(body, bytes) else dumps(body).encode("utf-8")
    return httpx.post(
        f"{stack.url}/v1/{path}",
        content=content,
        headers={"content-type": "application/json;charset=utf-8"},
        timeout=60,
    )


def get(stack: Any, path: str, record_id: str) -> httpx.Response:
    return httpx.get(f"{stack.url}/v1/{path}/{record_id}", timeout=10)


def store(stack: Any) -> OutboxStore:
    return OutboxStore("OutboxTable", client=stack.dynamodb_client())


# --------------------------------------------------------------------------------------------------- POST
def test_one_writeoff_is_accepted_due(stack: Any) -> None:
    order_id = order_ids()
    response = post(stack, "writeoffs", writeoff(order_id))
    assert response.status_code == 202, response.text
    assert response.headers["content-type"].startswith("application/json")
    assert response.json() == {"records": [{"id": writeoff_id(order_id), "status": "accepted", "state": "due"}]}

    stored = store(stack).get(Kind.WRITEOFF, writeoff_id(order_id))
    assert stored is not None
    assert stored.payload["tb_biz_order_id"] == order_id  # 16 digits, exact
    assert (stored.state, stored.attempts) == ("due", 0)


def test_a_thousand_records_in_one_request(stack: Any) -> None:
    base = order_ids(1000)
    response = post(stack, "writeoffs", [writeoff(base + n) for n in range(1000)])
    assert response.status_code == 202, response.text
    records = response.json()["records"]
    assert len(records) == 1000
    assert {(r["status"], r["state"]) for r in records} == {("accepted", "due")}
    assert [r["id"] for r in records] == [writeoff_id(base + n) for n in range(1000)]


def test_more_than_a_thousand_is_refused_whole(stack: Any) -> None:
    base = order_ids(1001)
    response = post(stack, "writeoffs", [writeoff(base + n) for n in range(1001)])
    assert response.status_code == 413
    body = response.json()
    assert body["error"] == "too_many_records" and body["limit"] == 1000
    assert get(stack, "writeoffs", writeoff_id(base)).status_code == 404


def test_one_invalid_record_refuses_the_request_naming_index_and_field(stack: Any) -> None:
    base = order_ids(5)
    batch = [writeoff(base + n) for n in range(5)]
    del batch[3]["tb_store_id"]
    batch[4]["verify_time"] = "2026/03/01"
    response = post(stack, "writeoffs", batch)

    assert response.status_code == 400
    body = response.json()
    assert body["error"] == "invalid_records"
    assert body["problem_count"] == 2
    assert body["problems"][0] == {"index": 3, "field": "tb_store_id", "rule": "Field required"}
    assert (body["problems"][1]["index"], body["problems"][1]["field"]) == (4, "verify_time")
    assert "yyyy-MM-dd HH:mm:ss" in body["problems"][1]["rule"]
    for n in range(5):  # nothing stored, not even the valid ones
        assert get(stack, "writeoffs", writeoff_id(base + n)).status_code == 404


def test_the_same_records_again_are_duplicates(stack: Any) -> None:
    base = order_ids(3)
    batch = [writeoff(base + n) for n in range(3)]
    assert post(stack, "writeoffs", batch).status_code == 202
    # The same content re-serialised with another key order and whitespace.
    pretty = json.dumps([dict(reversed(list(r.items()))) for r in batch], ensure_ascii=False, indent=2)
    again = post(stack, "writeoffs", pretty.encode("utf-8"))
    assert again.status_code == 202
    assert {(r["status"], r["state"]) for r in again.json()["records"]} == {("duplicate", "due")}


def test_same_key_with_other_content_is_a_409_and_the_rest_is_accepted(stack: Any) -> None:
    base = order_ids(3)
    assert post(stack, "writeoffs", writeoff(base)).status_code == 202
    response = post(stack, "writeoffs", [writeoff(base, service_status=3), writeoff(base + 1)])

    assert response.status_code == 409
    body = response.json()
    assert body["error"] == "conflict" and "different content" in body["message"]
    assert body["records"] == [
        {"id": writeoff_id(base), "status": "conflict", "state": None},
        {"id": writeoff_id(base + 1), "status": "accepted", "state": "due"},
    ]
    stored = store(stack).get(Kind.WRITEOFF, writeoff_id(base))
    assert stored is not None and stored.payload["service_status"] == 2  # the first content stays


@pytest.mark.parametrize(
    ("body", "words"),
    [
        (b'{"biz_type": 2,', "not valid JSON"),
        (b'{"biz_type": 2, "biz_type": 3}', "duplicate JSON key 'biz_type'"),
        (b"[]", "empty"),
        (b'"text"', "expected one record"),
        (b"", "empty"),
    ],
)
def test_malformed_bodies_are_400(stack: Any, body: bytes, words: str) -> None:
    response = post(stack, "writeoffs", body)
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_json"
    assert words in response.json()["message"]


def test_a_record_over_400_kb_is_413_and_nothing_is_stored(stack: Any) -> None:
    base = order_ids(2)
    batch = [writeoff(base), writeoff(base + 1, service_sku_name="x" * 400_000)]
    response = post(stack, "writeoffs", batch)
    assert response.status_code == 413
    body = response.json()
    assert body["error"] == "record_too_large" and body["id"] == writeoff_id(base + 1)
    assert body["size"] > body["limit"]
    assert get(stack, "writeoffs", writeoff_id(base)).status_code == 404


def test_storage_failure_is_503_and_retrying_is_safe(stack: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    order_id = order_ids()
    monkeypatch.setenv("OUTBOX_TABLE", "NoSuchTable")
    response = post(stack, "writeoffs", writeoff(order_id))
    assert response.status_code == 503
    body = response.json()
    assert body["error"] == "storage_unavailable" and "again is safe" in body["message"]
    # DynamoDB refused the write (no such table): certainly not stored, although it could not be read back.
    assert [r["status"] for r in body["records"]] == ["not_stored"]
    monkeypatch.undo()
    assert post(stack, "writeoffs", writeoff(order_id)).json()["records"][0]["status"] == "accepted"


def test_risk_records_and_external_orders(stack: Any) -> None:
    sub_order = order_ids()
    response = post(stack, "risk-records", [risk(sub_order), risk(sub_order + 1)])
    assert response.status_code == 202, response.text
    assert [r["id"] for r in response.json()["records"]] == [
        f"{sub_order}-20260301100000",
        f"{sub_order + 1}-20260301100000",
    ]
    bad = post(stack, "risk-records", risk(sub_order + 2, install_type=5, buyer_phone=None))
    assert bad.status_code == 400
    assert {p["field"] for p in bad.json()["problems"]} == {"install_type", "buyer_phone"}

    idempotent_id = f"EO-{order_ids()}"
    order = {"idempotent_id": idempotent_id, "order_info": {"total_fee": 10000, "pay_time": "2026-03-01 09:00:00"}}
    response = post(stack, "external-orders", order)
    assert response.status_code == 202, response.text
    assert response.json()["records"] == [{"id": idempotent_id, "status": "accepted", "state": "due"}]
    shown = get(stack, "external-orders", idempotent_id).json()
    assert shown["kind"] == "external_order" and shown["platform_order_id"] is None
    odd_id = f"EO/{order_ids()} 订单"  # ids that need URL encoding in GET
    assert post(stack, "external-orders", {"idempotent_id": odd_id}).status_code == 202
    found = IntakeClient(stack.url).get("external-orders", odd_id)
    assert found is not None and found["id"] == odd_id
    nested = post(stack, "external-orders", {"idempotent_id": "EO-x", "order_info": {"total_fee": 1.5}})
    assert nested.status_code == 400 and nested.json()["problems"][0]["field"] == "order_info.total_fee"


# ---------------------------------------------------------------------------------------------------- GET
def test_get_shows_the_state_without_the_payload(stack: Any) -> None:
    order_id = order_ids()
    post(stack, "writeoffs", writeoff(order_id))
    response = get(stack, "writeoffs", writeoff_id(order_id))
    assert response.status_code == 200
    shown = response.json()
    assert shown["id"] == writeoff_id(order_id) and shown["kind"] == "writeoff"
    assert (shown["state"], shown["attempts"], shown["last_error"]) == ("due", 0, None)
    assert shown["next_attempt_at"].endswith("Z") and shown["accepted_at"].endswith("Z")
    assert "payload" not in shown and "张三" not in response.text


def test_get_unknown_record_or_kind_is_404(stack: Any) -> None:
    unknown = get(stack, "writeoffs", "no-such-record")
    assert unknown.status_code == 404 and unknown.json()["error"] == "not_found"
    assert get(stack, "fulfillments", "1").status_code == 404
    assert post(stack, "nothing", {}).status_code == 404  # no such route


# ------------------------------------------------------------------------------------- clients and CLI
def test_intake_from_python_without_http(stack: Any) -> None:
    intake = Intake(store(stack))
    sub_order = order_ids()
    (result,) = intake.submit(Kind.RISK, risk(sub_order))
    assert (result.status, result.state) == ("accepted", "due")
    assert intake.status(Kind.RISK, result.record_id)["state"] == "due"
    without_name = risk(sub_order + 1)
    del without_name["buyer_name"]
    with pytest.raises(IntakeRejected, match="record 0 field buyer_name: Field required"):
        intake.submit(Kind.RISK, [without_name])


def test_intake_client_with_a_jsonl_file(stack: Any, tmp_path: Any) -> None:
    base = order_ids(5)
    path = tmp_path / "writeoffs.jsonl"
    lines = [dumps(writeoff(base + n)) for n in range(5)]
    path.write_text("\n".join(lines[:3]) + "\n\n" + "\n".join(lines[3:]) + "\n", encoding="utf-8")

    records = read_records(path, "writeoffs")
    client = IntakeClient(stack.url)
    summary = client.submit("writeoffs", records, chunk_size=2, progress=False)
    assert (summary.total, summary.accepted, summary.duplicate, summary.ok) == (5, 5, 0, True)
    again = client.submit(Kind.WRITEOFF, records, progress=False)
    assert (again.accepted, again.duplicate, again.ok) == (0, 5, True)
    shown = client.get("writeoffs", writeoff_id(base + 4))
    assert shown is not None and shown["state"] == "due"
    assert client.get("writeoffs", "nothing-here") is None


def test_intake_client_reports_problems_with_their_global_index(stack: Any) -> None:
    base = order_ids(6)
    records = [writeoff(base + n) for n in range(6)]
    del records[4]["service_id"]
    summary = IntakeClient(stack.url).submit("writeoffs", records, chunk_size=3, progress=False)
    assert (summary.accepted, summary.invalid, summary.ok) == (3, 3, False)
    assert summary.problems == [{"index": 4, "field": "service_id", "rule": "Field required"}]
    assert "record 4 field service_id: Field required" in "\n".join(summary.lines())


def test_csv_cells_become_integers_by_the_dto_and_the_cli_exits_0(stack: Any, tmp_path: Any) -> None:
    base = order_ids(2)
    path = tmp_path / "writeoffs.csv"
    path.write_text(
        "biz_type,verify_time,tb_store_id,service_status,service_id,service_detail_id,tb_biz_order_id,"
        "verify_batch_no,port_no,user_name\n"
        f"2,2026-03-01 12:00:00,2343432,2,1111,111223,{base},B1,0042,张三\n"
        f"3,2026-03-01 12:00:00,2343432,3,1111,111223,{base + 1},B1,,\n",
        encoding="utf-8",
    )
    first, second = read_records(path, "writeoffs")
    assert first["tb_biz_order_id"] == base and isinstance(first["tb_store_id"], int)
    assert first["port_no"] == "0042"  # a String field stays text, leading zeros and all
    assert first["verify_time"] == "2026-03-01 12:00:00"
    assert "port_no" not in second and "user_name" not in second  # empty cells are left out

    assert cli(["intake", "writeoffs", str(path), "--url", stack.url]) == 0
    stored = store(stack).get(Kind.WRITEOFF, writeoff_id(base))
    assert stored is not None and stored.payload["tb_store_id"] == 2343432


def test_csv_of_external_orders_with_nested_fields(stack: Any, tmp_path: Any) -> None:
    idempotent_id = f"EO-{order_ids()}"
    path = tmp_path / "orders.csv"
    path.write_text(
        "idempotent_id,hide,order_info.total_fee,order_info.out_order_id,buyer_info.user_id\n"
        f"{idempotent_id},false,12345,0099,4356787654345678901\n",
        encoding="utf-8",
    )
    (record,) = read_records(path, "external-orders")
    assert record == {
        "idempotent_id": idempotent_id,
        "hide": False,
        "order_info": {"total_fee": 12345, "out_order_id": "0099"},
        "buyer_info": {"user_id": 4356787654345678901},
    }
    assert cli(["intake", "external-orders", str(path), "--url", stack.url]) == 0
    stored = store(stack).get(Kind.EXTERNAL_ORDER, idempotent_id)
    assert stored is not None and stored.payload["buyer_info"]["user_id"] == 4356787654345678901


def test_cli_exits_1_when_anything_is_not_stored(stack: Any, tmp_path: Any, capsys: Any) -> None:
    base = order_ids(2)
    path = tmp_path / "mixed.jsonl"
    bad = writeoff(base + 1)
    del bad["biz_type"]
    path.write_text(dumps(writeoff(base)) + "\n" + dumps(bad) + "\n", encoding="utf-8")
    assert cli(["intake", "writeoffs", str(path), "--url", stack.url]) == 1
    assert "record 1 field biz_type: Field required" in capsys.readouterr().out

    (tmp_path / "empty.jsonl").write_text("\n", encoding="utf-8")
    assert cli(["intake", "writeoffs", str(tmp_path / "empty.jsonl"), "--url", stack.url]) == 1
    (tmp_path / "broken.jsonl").write_text('{"a": 1}\n{"a":\n', encoding="utf-8")
    assert cli(["intake", "writeoffs", str(tmp_path / "broken.jsonl"), "--url", stack.url]) == 1
    assert "broken.jsonl:2" in capsys.readouterr().err


# ------------------------------------------------------------------------------------------- bad input
@pytest.mark.parametrize(
    ("body", "words"),
    [
        (b"[" * 10_000 + b"]" * 10_000, "nested deeper than 32"),
        (b'{"biz_type": 2, "user_name": "\\ud800"}', "lone surrogate"),
        ('{"biz_type": 2}'.encode("utf-16"), "not UTF-8"),
        ('{"biz_type": 2}'.encode("utf-32"), "not UTF-8"),
        (b"\xef\xbb\xbf{}", "byte order mark"),
        (b'{"biz_type": 2, "biz_type": 3}', "duplicate JSON key"),
    ],
    ids=["deep", "surrogate", "utf-16", "utf-32", "bom", "duplicate"],
)
def test_bodies_that_can_never_succeed_are_400_naming_the_problem(stack: Any, body: bytes, words: str) -> None:
    response = post(stack, "writeoffs", body)
    assert response.status_code == 400, response.text
    assert response.json()["error"] == "invalid_json" and words in response.json()["message"]


@pytest.mark.parametrize("verify_time", ["0001-01-01 00:00:00", "1969-12-31 23:59:59", "10000-01-01 00:00:00"])
def test_a_writeoff_time_outside_the_platforms_years_is_refused(stack: Any, verify_time: str) -> None:
    response = post(stack, "writeoffs", writeoff(order_ids(), verify_time=verify_time))
    assert response.status_code == 400, response.text
    (problem,) = response.json()["problems"]
    assert problem["field"] == "verify_time"


def test_a_batch_number_never_collides_with_a_batchless_writeoff(stack: Any) -> None:
    order_id = order_ids()
    batchless = writeoff(order_id, verify_time="2026-11-23 10:00:00")
    del batchless["verify_batch_no"]
    lookalike = writeoff(order_id, verify_batch_no="t20261123100000", verify_time="2026-11-24 10:00:00")
    response = post(stack, "writeoffs", [batchless, lookalike])
    assert response.status_code == 202, response.text
    ids = [r["id"] for r in response.json()["records"]]
    assert ids == [f"{order_id}-111223-t20261123100000", f"{order_id}-111223-bt20261123100000"]
