"""The Qimen dispatcher's pure logic, with a frozen clock and an in-process handler (no AWS)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from enum import StrEnum

from pydantic import BaseModel

from bridge_local.qimen_client import signed_query
from taobao_bridge.jsonutil import dumps
from taobao_bridge.qimen import (
    SIGN_CHECK_FAILURE,
    Handled,
    QimenAnswerCode,
    QimenCall,
    QimenDispatcher,
    QimenOutcome,
    QimenRejection,
    answer,
)

NOW = datetime(2026, 11, 23, 2, 0, 0, tzinfo=UTC)  # 10:00:00 UTC+8
METHOD = "qimen.taobao.life.fulfillment.create"


class Probe(BaseModel):
    """A tiny request model: everything optional, so only the dispatcher's own checks are exercised here."""

    a: int | None = None
    refuse: bool = False


class ProbeOutcome(StrEnum):
    DONE = "done"


def frozen() -> datetime:
    return NOW


def dispatcher(seen: list[QimenCall]) -> QimenDispatcher:
    d = QimenDispatcher("secret", timestamp_window_s=300, max_body_bytes=100, clock=frozen)

    def handler(call: QimenCall, probe: Probe) -> Handled:
        seen.append(call)
        if probe.refuse:
            raise QimenRejection(QimenAnswerCode.NO_INVENTORY, "none left")
        return Handled(partner_order_id="P1", outcome=ProbeOutcome.DONE)

    d.register(METHOD, Probe, handler)
    return d


def test_handler_sees_only_verified_calls() -> None:
    seen: list[QimenCall] = []
    body = b'{"a":1}'
    query = signed_query(body, "secret", clock=frozen)
    done = dispatcher(seen).dispatch(query, {}, body)
    assert done.answer == answer(partner_order_id="P1") and done.outcome is ProbeOutcome.DONE
    assert dispatcher(seen).dispatch(query, {}, b'{"a":2}').answer == SIGN_CHECK_FAILURE
    assert [c.body for c in seen] == [body]
    assert seen[0].method == METHOD
    assert seen[0].payload == {"a": 1}


def test_sign_check_failure_is_exact_text() -> None:
    assert dumps(SIGN_CHECK_FAILURE) == (
        '{"biz_error_msg":"Illegal request","success":"false","biz_error_code":"sign-check-failure"}'
    )
    body = b"{}"
    result = dispatcher([]).dispatch(signed_query(body, "not-the-secret", clock=frozen), {}, body)
    assert dumps(result.answer) == dumps(SIGN_CHECK_FAILURE)


def test_window_edges_and_switch_off() -> None:
    seen: list[QimenCall] = []
    body = b"{}"
    inside = signed_query(body, "secret", clock=lambda: NOW - timedelta(seconds=300))
    outside = signed_query(body, "secret", clock=lambda: NOW - timedelta(seconds=301))
    assert dispatcher(seen).dispatch(inside, {}, body).answer["biz_result"] == "success"
    refused = dispatcher(seen).dispatch(outside, {}, body)
    assert refused.answer["biz_error_code"] == "INVALID_TIMESTAMP" and "301 s" in refused.answer["biz_error_msg"]
    assert refused.outcome is QimenOutcome.REJECTED
    off = dispatcher(seen)
    off.timestamp_window_s = 0
    assert off.dispatch(outside, {}, body).answer["biz_result"] == "success"


def test_unparseable_timestamp() -> None:
    body = b"{}"
    query = signed_query(body, "secret", clock=frozen, extra={"timestamp": "2026/11/23 10:00"})
    result = dispatcher([]).dispatch(query, {}, body).answer
    assert result["biz_error_code"] == "INVALID_TIMESTAMP" and "yyyy-MM-dd HH:mm:ss" in result["biz_error_msg"]


def test_rejections_and_body_limit() -> None:
    body = b'{"refuse":true}'
    result = dispatcher([]).dispatch(signed_query(body, "secret", clock=frozen), {}, body)
    assert result.answer == {
        "success": True,
        "biz_result": "fail",
        "biz_error_code": "NO_INVENTORY",
        "biz_error_msg": "none left",
    }
    # A rejection that names no outcome of its own counts as a plain rejection.
    assert result.outcome is QimenOutcome.REJECTED
    big = b"{" + b" " * 100 + b"}"
    result = dispatcher([]).dispatch(signed_query(big, "secret", clock=frozen), {}, big)
    assert result.answer["biz_error_code"] == "BODY_TOO_LARGE" and "limit is 100" in result.answer["biz_error_msg"]
    assert result.outcome is QimenOutcome.REJECTED


def test_unknown_method_names_the_supported_ones() -> None:
    body = b"{}"
    query = signed_query(body, "secret", clock=frozen, method="qimen.taobao.life.fulfillment.cancel")
    result = dispatcher([]).dispatch(query, {}, body)
    assert result.answer["biz_error_code"] == "UNKNOWN_METHOD"
    assert "'qimen.taobao.life.fulfillment.cancel'" in result.answer["biz_error_msg"]
    assert METHOD in result.answer["biz_error_msg"]
    assert result.outcome is QimenOutcome.REJECTED


def test_json_body_must_be_an_object() -> None:
    for body, fragment in [(b"[1]", "must be a JSON object"), (b'{"a":1,"a":2}', "duplicate JSON key 'a'")]:
        result = dispatcher([]).dispatch(signed_query(body, "secret", clock=frozen), {}, body).answer
        assert result["biz_error_code"] == "INVALID_JSON" and fragment in result["biz_error_msg"]
