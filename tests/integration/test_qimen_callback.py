"""The Qimen callback end to end: signed HTTP calls to the local stack, real moto DynamoDB behind it."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from bridge_local.qimen_client import new_order_no, signed_query
from taobao_bridge.fulfillment_store import FulfillmentStore
from taobao_bridge.settings import ENV, LOCAL_DEFAULTS
from tests.conftest import with_order_no

pytestmark = pytest.mark.integration

SECRET = LOCAL_DEFAULTS[ENV.QIMEN_APP_SECRET]
SIGN_CHECK_FAILURE = '{"biz_error_msg":"Illegal request","success":"false","biz_error_code":"sign-check-failure"}'


def post(stack: Any, body: bytes, query: str | None = None, headers: dict[str, str] | None = None) -> httpx.Response:
    query = query if query is not None else signed_query(body, SECRET)
    response = httpx.post(
        f"{stack.url}/qimen?{query}",
        content=body,
        headers={"content-type": "application/json;charset=utf-8", **(headers or {})},
        timeout=10,
    )
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/json")
    return response


def store(stack: Any) -> FulfillmentStore:
    return FulfillmentStore("FulfillmentOrdersTable", "InventoryTable", client=stack.dynamodb_client())


def orders_with_prefix(stack: Any, prefix: str) -> list[dict]:
    items = stack.dynamodb_client().scan(TableName="FulfillmentOrdersTable")["Items"]
    return [i for i in items if i["fulfillment_order_no"]["S"].startswith(prefix)]


def test_seed_example_is_accepted_and_stored(stack: Any, seed_003_body: bytes) -> None:
    answer = post(stack, seed_003_body).json()
    assert answer["success"] is True
    assert answer["biz_result"] == "success"
    assert answer["partner_order_id"]
    stored = store(stack).get("1234567890123456789")
    assert stored is not None
    assert stored["partner_order_id"] == answer["partner_order_id"]
    assert stored["payload"] == seed_003_body.decode("utf-8")
    assert stored["store_id"] == "123456789" and stored["item_id"] == "123456789012"

    replay = post(stack, seed_003_body).json()
    assert replay == answer


def test_replay_returns_first_answer_without_second_order(stack: Any, seed_003_body: bytes) -> None:
    order_no = new_order_no()
    body = with_order_no(seed_003_body, order_no)
    first = post(stack, body).json()
    # A retry is signed anew (new timestamp), and may be re-serialised with other whitespace.
    pretty = json.dumps(json.loads(body), ensure_ascii=False, indent=2).encode("utf-8")
    second = post(stack, pretty).json()
    assert second == first
    assert len(orders_with_prefix(stack, order_no)) == 1


def test_same_number_different_payload_is_refused(stack: Any, seed_003_body: bytes) -> None:
    order_no = new_order_no()
    first = post(stack, with_order_no(seed_003_body, order_no)).json()
    other = with_order_no(seed_003_body, order_no, trade_info={"real_amount": 1})
    answer = post(stack, other).json()
    assert answer["biz_result"] == "fail"
    assert answer["biz_error_code"] == "ORDER_CONFLICT"
    assert order_no in answer["biz_error_msg"]
    assert "partner_order_id" not in answer
    stored = store(stack).get(order_no)
    assert stored is not None and stored["partner_order_id"] == first["partner_order_id"]


def test_sixteen_concurrent_duplicates_make_one_order(stack: Any, seed_003_body: bytes) -> None:
    order_no = new_order_no()
    body = with_order_no(seed_003_body, order_no)
    with ThreadPoolExecutor(max_workers=16) as pool:
        answers = [r.json() for r in pool.map(lambda _: post(stack, body), range(16))]
    ids = {a.get("partner_order_id") for a in answers}
    assert all(a["biz_result"] == "success" for a in answers), answers
    assert len(ids) == 1
    assert len(orders_with_prefix(stack, order_no)) == 1


def test_bad_signature_gets_the_exact_documented_answer(stack: Any, seed_003_body: bytes) -> None:
    query = signed_query(seed_003_body, "not-the-secret")
    response = post(stack, with_order_no(seed_003_body, new_order_no()), query=query)
    assert response.text == SIGN_CHECK_FAILURE


def test_missing_sign_is_a_bad_signature(stack: Any, seed_003_body: bytes) -> None:
    query = signed_query(seed_003_body, SECRET).rsplit("&sign=", 1)[0]
    assert post(stack, seed_003_body, query=query).text == SIGN_CHECK_FAILURE


def test_body_reserialised_after_signing_is_rejected(stack: Any, seed_003_body: bytes) -> None:
    order_no = new_order_no()
    body = with_order_no(seed_003_body, order_no)
    query = signed_query(body, SECRET)
    pretty = json.dumps(json.loads(body), ensure_ascii=False, indent=2).encode("utf-8")
    assert post(stack, pretty, query=query).text == SIGN_CHECK_FAILURE
    assert store(stack).get(order_no) is None


def test_tampered_amount_is_rejected(stack: Any, seed_003_body: bytes) -> None:
    body = with_order_no(seed_003_body, new_order_no())
    query = signed_query(body, SECRET)
    forged = body.replace(b'"real_amount":100', b'"real_amount":1')
    assert forged != body
    assert post(stack, forged, query=query).text == SIGN_CHECK_FAILURE


def test_signed_headers_take_part(stack: Any, seed_003_body: bytes) -> None:
    from taobao_bridge.signing import qimen_sign

    body = with_order_no(seed_003_body, new_order_no())
    unsigned = signed_query(body, SECRET).rsplit("&sign=", 1)[0]
    headers = {"top-sign-list": "x-qimen-trace", "x-qimen-trace": "abc"}
    query = f"{unsigned}&sign={qimen_sign(unsigned, body, SECRET, headers)}"
    assert post(stack, body, query=query, headers=headers).json()["biz_result"] == "success"
    changed = {**headers, "x-qimen-trace": "abd"}
    assert post(stack, body, query=query, headers=changed).text == SIGN_CHECK_FAILURE


@pytest.mark.parametrize("minutes", [-11, 11])
def test_timestamp_outside_window_is_refused(stack: Any, seed_003_body: bytes, minutes: int) -> None:
    order_no = new_order_no()
    body = with_order_no(seed_003_body, order_no)
    moment = datetime.now(UTC) + timedelta(minutes=minutes)
    answer = post(stack, body, query=signed_query(body, SECRET, clock=lambda: moment)).json()
    assert answer["success"] is False
    assert answer["biz_error_code"] == "INVALID_TIMESTAMP"
    assert "the allowed window is 600 s" in answer["biz_error_msg"]
    assert store(stack).get(order_no) is None


@pytest.mark.parametrize("minutes", [-9, 9])
def test_timestamp_inside_window_is_accepted(stack: Any, seed_003_body: bytes, minutes: int) -> None:
    body = with_order_no(seed_003_body, new_order_no())
    moment = datetime.now(UTC) + timedelta(minutes=minutes)
    assert post(stack, body, query=signed_query(body, SECRET, clock=lambda: moment)).json()["biz_result"] == "success"


def test_malformed_json_is_answered_not_crashed(stack: Any, seed_003_body: bytes) -> None:
    body = seed_003_body[:-10]
    answer = post(stack, body).json()
    assert answer == {
        "success": False,
        "biz_result": "fail",
        "biz_error_code": "INVALID_JSON",
        "biz_error_msg": answer["biz_error_msg"],
    }
    assert "not valid JSON" in answer["biz_error_msg"]


def test_duplicate_json_keys_are_refused(stack: Any, seed_003_body: bytes) -> None:
    body = b'{"trade_info":{},' + seed_003_body[1:]
    answer = post(stack, body).json()
    assert answer["biz_error_code"] == "INVALID_JSON"
    assert "trade_info" in answer["biz_error_msg"]


def test_missing_required_object_names_the_field(stack: Any, seed_003_body: bytes) -> None:
    payload = json.loads(with_order_no(seed_003_body, new_order_no()))
    del payload["trade_info"]
    body = json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    answer = post(stack, body).json()
    assert answer["success"] is False
    assert answer["biz_error_code"] == "INVALID_PARAMETER"
    assert answer["biz_error_msg"].startswith("trade_info: Field required")


def test_invalid_nested_field_names_its_path(stack: Any, seed_003_body: bytes) -> None:
    payload = json.loads(with_order_no(seed_003_body, new_order_no()))
    del payload["user_info"][0]["mobile"]
    body = json.dumps(payload, ensure_ascii=False).encode("utf-8")
    answer = post(stack, body).json()
    assert answer["biz_error_code"] == "INVALID_PARAMETER"
    assert "user_info[0].mobile" in answer["biz_error_msg"]


def test_unknown_method_is_named(stack: Any, seed_003_body: bytes) -> None:
    query = signed_query(seed_003_body, SECRET, method="qimen.taobao.life.fulfillment.cancel")
    answer = post(stack, seed_003_body, query=query).json()
    assert answer["biz_error_code"] == "UNKNOWN_METHOD"
    assert "qimen.taobao.life.fulfillment.cancel" in answer["biz_error_msg"]


def test_oversized_body_is_refused(stack: Any) -> None:
    body = b'{"x":"' + b"a" * (256 * 1024) + b'"}'
    answer = post(stack, body).json()
    assert answer["biz_error_code"] == "BODY_TOO_LARGE"


def test_no_inventory_takes_nothing(stack: Any, seed_003_body: bytes) -> None:
    store_id, item_id = f"S{new_order_no()}", "I1"
    store(stack).set_capacity(store_id, item_id, 1)

    def order(no: str) -> dict:
        body = with_order_no(seed_003_body, no, shop_info={"store_id": store_id}, item_info={"item_id": item_id})
        return post(stack, body).json()

    first, second = new_order_no(), new_order_no()
    assert order(first)["biz_result"] == "success"
    refused = order(second)
    assert refused["success"] is True and refused["biz_result"] == "fail"
    assert refused["biz_error_code"] == "NO_INVENTORY"
    assert store(stack).get(second) is None
    assert store(stack).get_capacity(store_id, item_id)["available"] == 0
    # A replay of the order that got the last unit is still answered as the first time.
    assert order(first)["biz_result"] == "success"
    assert store(stack).get_capacity(store_id, item_id)["available"] == 0


def test_item_without_capacity_record_is_accepted(stack: Any, seed_003_body: bytes) -> None:
    body = with_order_no(seed_003_body, new_order_no(), shop_info={"store_id": f"S{new_order_no()}"})
    assert post(stack, body).json()["biz_result"] == "success"


def test_storage_failure_is_retryable_and_writes_nothing(
    stack: Any, seed_003_body: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    order_no = new_order_no()
    body = with_order_no(seed_003_body, order_no)
    # The order table works, the inventory table does not: the transaction must leave no order behind.
    monkeypatch.setenv("INVENTORY_TABLE", "NoSuchTable")
    answer = post(stack, body).json()
    assert answer["success"] is False
    assert answer["biz_error_code"] == "SYSTEM_ERROR"
    assert "retry" in answer["biz_error_msg"]
    assert store(stack).get(order_no) is None
    monkeypatch.undo()
    assert post(stack, body).json()["biz_result"] == "success"


def test_unknown_route_is_json_404(stack: Any) -> None:
    response = httpx.get(f"{stack.url}/nothing-here", timeout=5)
    assert response.status_code == 404
    assert response.json() == {"message": "Not Found"}


def test_logs_carry_the_order_number_and_no_personal_data(stack: Any, seed_003_body: bytes) -> None:
    import io
    import logging

    # Powertools writes to the stdout it found at import; read its records through a handler of our own
    # that uses the same formatter, so the test sees exactly the JSON lines CloudWatch would get.
    # The local stack loads a function's handler on its first invocation: make sure this process has one.
    post(stack, with_order_no(seed_003_body, new_order_no()))
    powertools = logging.getLogger("taobao-bridge")
    assert powertools.handlers, "the callback's Powertools logger is not set up"
    # The local stack may have loaded several copies of the handler (one per concurrent invocation), each with
    # its own formatter: read through every one; the correlation id picks the lines of this call.
    sinks = [(io.StringIO(), existing.formatter) for existing in list(powertools.handlers)]
    handlers = []
    for sink, formatter in sinks:
        handler = logging.StreamHandler(sink)
        handler.setFormatter(formatter)
        powertools.addHandler(handler)
        handlers.append(handler)
    try:
        order_no = new_order_no()
        post(stack, with_order_no(seed_003_body, order_no))
    finally:
        for handler in handlers:
            powertools.removeHandler(handler)
    lines = [json.loads(line) for sink, _ in sinks for line in sink.getvalue().splitlines()]
    ours = [line for line in lines if line.get("correlation_id") == order_no]
    assert {line["message"] for line in ours} >= {"fulfillment order received", "fulfillment order created"}
    text = json.dumps(ours, ensure_ascii=False)
    for personal in ("123456678901", "张先生", "410881xxxxxxxxxxxxxx", "13911112222", "李先生", "xxxx街道", "杭州市"):
        assert personal not in text
    # By allow-list: ids in clear, personal fields as markers of their size.
    assert '"store_id": "123456789"' in text and '"mobile": "<12 chars>"' in text


# ---------------------------------------------------------------------- as the official verifier verifies
def official_call(stack: Any, request: Any, secret: str = SECRET) -> httpx.Response:
    """POST a call signed by the independent port of SpiUtils.checkSign (tests/unit/test_spi_checksign.py)."""
    from tests.unit.test_spi_checksign import signed

    call = signed(request, secret)
    return post(stack, call.body, query=call.query_string, headers={"content-type": call.content_type, **call.headers})


def fresh_query(**extra: str) -> str:
    from urllib.parse import quote

    from taobao_bridge.clock import format_platform_time

    params = {"method": "qimen.taobao.life.fulfillment.create", "app_key": "23456789", "sign_method": "md5"}
    params |= {"timestamp": format_platform_time(datetime.now(UTC)), "format": "json", "v": "2.0", **extra}
    return "&".join(f"{k}={quote(v, safe='')}" for k, v in params.items())


def test_a_form_encoded_call_is_stored(stack: Any, seed_003_body: bytes) -> None:
    from urllib.parse import quote

    from tests.unit.test_spi_checksign import ServletRequest

    order_no = new_order_no()
    payload = json.loads(with_order_no(seed_003_body, order_no))
    body = "&".join(f"{k}={quote(json.dumps(v, ensure_ascii=False), safe='')}" for k, v in payload.items())
    request = ServletRequest(fresh_query(), {}, "application/x-www-form-urlencoded;charset=UTF-8", body.encode())
    answer = official_call(stack, request).json()
    assert answer["biz_result"] == "success", answer
    stored = store(stack).get(order_no)
    assert stored is not None and json.loads(stored["payload"]) == payload


def test_an_md5_sign_under_sign_method_hmac_sha256_is_accepted(stack: Any, seed_003_body: bytes) -> None:
    from tests.unit.test_spi_checksign import ServletRequest, signed

    body = with_order_no(seed_003_body, new_order_no())
    request = ServletRequest(fresh_query(sign_method="hmac-sha256"), {}, "application/json;charset=utf-8", body)
    assert official_call(stack, request).json()["biz_result"] == "success"
    # The same sign over a forged body: the exact sign-failure answer.
    forged = body.replace(b'"quantity":2', b'"quantity":3')
    assert forged != body
    assert post(stack, forged, query=signed(request).query_string).text == SIGN_CHECK_FAILURE


def test_a_gbk_call_is_stored_as_text(stack: Any, seed_003_body: bytes) -> None:
    from tests.unit.test_spi_checksign import ServletRequest

    order_no = new_order_no()
    text = with_order_no(seed_003_body, order_no).decode("utf-8")
    request = ServletRequest(fresh_query(), {}, "application/json; charset=GBK", text.encode("gbk"))
    assert official_call(stack, request).json()["biz_result"] == "success"
    stored = store(stack).get(order_no)
    assert stored is not None and stored["payload"] == text


def test_a_repeated_system_parameter_is_refused(stack: Any, seed_003_body: bytes) -> None:
    body = with_order_no(seed_003_body, new_order_no())
    query = signed_query(body, SECRET)
    answer = post(stack, body, query="timestamp=2020-01-01+00%3A00%3A00&" + query).json()
    assert answer["biz_error_code"] == "INVALID_PARAMETER"
    assert answer["biz_error_msg"] == "system parameter 'timestamp' appears 2 times; send it once"


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"shop_info": {"store_id": ""}}, "shop_info.store_id"),
        ({"item_info": {"item_id": ""}}, "item_info.item_id"),
        ({"item_info": {"item_id": "a" * 1025}}, "item_info.item_id"),
        ({"shop_info": {"store_id": "中" * 683}}, "shop_info.store_id"),
    ],
)
def test_keys_dynamodb_refuses_are_invalid_parameters(
    stack: Any, seed_003_body: bytes, changes: dict[str, Any], field: str
) -> None:
    order_no = new_order_no()
    answer = post(stack, with_order_no(seed_003_body, order_no, **changes)).json()
    assert answer["biz_error_code"] == "INVALID_PARAMETER", answer
    assert answer["biz_error_msg"].startswith(field)
    assert store(stack).get(order_no) is None


def test_whitespace_order_number_is_an_invalid_parameter(stack: Any, seed_003_body: bytes) -> None:
    answer = post(stack, with_order_no(seed_003_body, "   ")).json()
    assert answer["biz_error_code"] == "INVALID_PARAMETER"
    assert answer["biz_error_msg"].startswith("fulfillment_info.fulfillment_order_no: must not be empty or blank")


@pytest.mark.parametrize(
    "body",
    [b"[" * 10_000 + b"]" * 10_000, '{"a":1}'.encode("utf-16"), '{"a":1}'.encode("utf-32-le"), b'{"a":"\\ud800"}'],
    ids=["deep", "utf-16", "utf-32", "surrogate"],
)
def test_unreadable_json_is_invalid_json(stack: Any, body: bytes) -> None:
    answer = post(stack, body).json()
    assert answer["biz_error_code"] == "INVALID_JSON", answer
