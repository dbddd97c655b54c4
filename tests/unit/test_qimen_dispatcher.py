"""The Qimen dispatcher's pure logic, with a frozen clock and an in-process handler (no AWS)."""

from __future__ import annotations

from datetime import UTC, datetime

from bridge_local.qimen_client import signed_query
from taobao_bridge.qimen import (
    SIGN_CHECK_FAILURE,
    QimenAnswerCode,
    QimenCall,
    QimenDispatcher,
    QimenRejection,
    answer,
    parse_json_object,
)

NOW = datetime(2026, 11, 23, 2, 0, 0, tzinfo=UTC)  # 10:00:00 UTC+8
METHOD = "qimen.taobao.life.fulfillment.create"


def frozen() -> datetime:
    return NOW


def dispatcher(seen: list[QimenCall]) -> QimenDispatcher:
    d = QimenDispatcher("secret", timestamp_window_s=300, max_body_bytes=100, clock=frozen)

    def handler(call: QimenCall) -> dict:
        seen.append(call)
        data = parse_json_object(call.body)
        if data.get("refuse"):
            raise QimenRejection(QimenAnswerCode.NO_INVENTORY, "none left")
        return answer(partner_order_id="P1")

    d.register(METHOD, handler)
    return d


def test_handler_sees_only_verified_calls() -> None:
    seen: list[QimenCall] = []
    body = b'{"a":1}'
    query = signed_query(body, "secret", clock=frozen)
    assert dispatcher(seen).dispatch(query, {}, body) == answer(partner_order_id="P1")
    assert dispatcher(seen).dispatch(query, {}, b'{"a":2}') == SIGN_CHECK_FAILURE
    assert [c.body for c in seen] == [body]
    assert seen[0].method == METHOD


def test_sign_check_failure_is_exact_text() -> None:
    from taobao_bridge.jsonutil import dumps

    assert dumps(SIGN_CHECK_FAILURE) == (
        '{"biz_error_msg":"Illegal request","success":"false","biz_error_code":"sign-check-failure"}'
    )


def test_window_edges_and_switch_off() -> None:
    seen: list[QimenCall] = []
    body = b"{}"
    from datetime import timedelta

    inside = signed_query(body, "secret", clock=lambda: NOW - timedelta(seconds=300))
    outside = signed_query(body, "secret", clock=lambda: NOW - timedelta(seconds=301))
    assert dispatcher(seen).dispatch(inside, {}, body)["biz_result"] == "success"
    refused = dispatcher(seen).dispatch(outside, {}, body)
    assert refused["biz_error_code"] == "INVALID_TIMESTAMP" and "301 s" in refused["biz_error_msg"]
    off = dispatcher(seen)
    off.timestamp_window_s = 0
    assert off.dispatch(outside, {}, body)["biz_result"] == "success"


def test_unparseable_timestamp() -> None:
    body = b"{}"
    query = signed_query(body, "secret", clock=frozen, extra={"timestamp": "2026/11/23 10:00"})
    result = dispatcher([]).dispatch(query, {}, body)
    assert result["biz_error_code"] == "INVALID_TIMESTAMP" and "yyyy-MM-dd HH:mm:ss" in result["biz_error_msg"]


def test_rejections_and_body_limit() -> None:
    body = b'{"refuse":true}'
    result = dispatcher([]).dispatch(signed_query(body, "secret", clock=frozen), {}, body)
    assert result == {
        "success": True,
        "biz_result": "fail",
        "biz_error_code": "NO_INVENTORY",
        "biz_error_msg": "none left",
    }
    big = b"{" + b" " * 100 + b"}"
    result = dispatcher([]).dispatch(signed_query(big, "secret", clock=frozen), {}, big)
    assert result["biz_error_code"] == "BODY_TOO_LARGE" and "limit is 100" in result["biz_error_msg"]


def test_json_body_must_be_an_object() -> None:
    for body, fragment in [(b"[1]", "must be a JSON object"), (b'{"a":1,"a":2}', "duplicate JSON key 'a'")]:
        result = dispatcher([]).dispatch(signed_query(body, "secret", clock=frozen), {}, body)
        assert result["biz_error_code"] == "INVALID_JSON" and fragment in result["biz_error_msg"]
