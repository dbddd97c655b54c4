"""The local TOP gateway, over real HTTP (httpx) against a sandbox on an ephemeral port."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from bridge_local.top_sandbox import (
    EXTERNAL_ORDER_METHOD,
    ODD_SHAPES,
    RISK_METHOD,
    WRITEOFF_METHOD,
    Faults,
    TopSandbox,
    order_id_for,
)
from taobao_bridge.clock import PLATFORM_TZ, format_platform_time
from taobao_bridge.jsonutil import dumps
from taobao_bridge.signing import sign_top_request

APP_KEY = "12345678"
SECRET = "0123456789abcdef0123456789abcdef"
SESSION = "session-abc"
ROOT = Path(__file__).resolve().parents[2]


def writeoff(n: int = 1, **overrides: Any) -> dict[str, Any]:
    record = {
        "biz_type": 2,
        "service_sku_name": "洗车",
        "verify_time": "2020-11-11 12:00:00",
        "tb_store_id": 2343432,
        "service_status": 2,
        "service_id": 1111,
        "service_detail_id": 111223,
        "tb_biz_order_id": 353454543 + n,
    }
    record.update(overrides)
    return {k: v for k, v in record.items() if v is not None}


def risk(n: int = 1, **overrides: Any) -> dict[str, Any]:
    record = {
        "service_code": "123,456,789",
        "install_type": 0,
        "buyer_phone": "13012345678",
        "tc_order_id": 3882527336184474047,
        "tc_sub_order_id": 3882527336184474047 + n,
        "service_use_time": "2000-01-01 00:00:00",
        "buyer_name": "王五",
    }
    record.update(overrides)
    return {k: v for k, v in record.items() if v is not None}


def external_order(idempotent_id: str = "YC_STORE-45678765") -> dict[str, Any]:
    return {
        "buyer_info": {"user_nick": "张三", "user_phone": "13912340000", "user_id": 23432},
        "hide": True,
        "order_info": {
            "biz_type": 200,
            "pay_time": "2022-05-01 12:30:50",
            "out_order_id": "ABC123432",
            "end_time": "2022-05-01 12:30:50",
            "gmt_create": "2022-05-01 12:30:50",
            "total_fee": 10000,
        },
        "source": "YC_STORE",
        "item_info": {"item_id": 1000, "item_title": "一个商品", "buy_amount": 2},
        "seller_info": {"user_nick": "李四", "user_id": 4567823},
        "pay_order_info": {"channel": "alipay", "pay_order_id": "2024091167897678768"},
        "idempotent_id": idempotent_id,
        "ext_info": "自定义json字符",
    }


API_PARAM = {
    WRITEOFF_METHOD: "local_order_write_off_d_t_o_list",
    RISK_METHOD: "risk_info_sync_request",
    EXTERNAL_ORDER_METHOD: "sync_single_order_req",
}


def good_payload(method: str) -> Any:
    if method == WRITEOFF_METHOD:
        return [writeoff(1), writeoff(2)]
    if method == RISK_METHOD:
        return {"contents": [risk(1)]}
    return external_order()


def call(
    sandbox: TopSandbox,
    method: str,
    payload: Any,
    *,
    session: str | None = None,
    sign_method: str = "hmac-sha256",
    now: datetime | None = None,
    extra: dict[str, str] | None = None,
    unsigned: dict[str, str] | None = None,
    secret: str = SECRET,
    timeout: float = 5.0,
    raw_payload: str | None = None,
) -> httpx.Response:
    """Signed like the official SDK: system params in the query, API params in the form body."""
    system = {
        "method": method,
        "app_key": APP_KEY,
        "timestamp": format_platform_time(now or datetime.now(UTC)),
        "format": "json",
        "v": "2.0",
        "sign_method": sign_method,
    }
    if session is not None:
        system["session"] = session
    system.update(extra or {})
    api = {API_PARAM[method]: raw_payload if raw_payload is not None else dumps(payload)}
    system["sign"] = sign_top_request({**system, **api}, secret, sign_method)
    body = {**{k: v for k, v in api.items() if v}, **(unsigned or {})}  # like the SDK: empty values not sent
    return httpx.post(sandbox.url, params=system, data=body, timeout=timeout)


def error_of(response: httpx.Response) -> dict[str, Any]:
    assert response.status_code == 200
    body = response.json()
    assert "error_response" in body, body
    err: dict[str, Any] = body["error_response"]
    assert err["request_id"]
    return err


@pytest.fixture(scope="module")
def shared_sandbox() -> Iterator[TopSandbox]:
    with TopSandbox(app_key=APP_KEY, app_secret=SECRET, session_key=SESSION) as sandbox:
        yield sandbox


@pytest.fixture
def sandbox(shared_sandbox: TopSandbox) -> TopSandbox:
    shared_sandbox.reset()
    shared_sandbox.clear()
    return shared_sandbox


# --- success envelopes -----------------------------------------------------------------------------------------


def test_writeoff_success_envelope_and_records(sandbox: TopSandbox) -> None:
    response = call(sandbox, WRITEOFF_METHOD, good_payload(WRITEOFF_METHOD))
    assert response.status_code == 200
    inner = response.json()["tmall_car_local_service_order_writeoff_sync_response"]
    assert inner["result"] == {"success": True, "data": True}
    assert inner["request_id"]
    assert sandbox.accepted_records(WRITEOFF_METHOD) == [writeoff(1), writeoff(2)]
    (recorded,) = sandbox.calls(WRITEOFF_METHOD)
    assert (recorded.outcome, recorded.records, recorded.sign_method) == ("ok", 2, "hmac-sha256")
    assert recorded.api_payload == [writeoff(1), writeoff(2)]


def test_risk_success_envelope_drops_taobao_prefix(sandbox: TopSandbox) -> None:
    response = call(sandbox, RISK_METHOD, good_payload(RISK_METHOD), session=SESSION)
    body = response.json()
    assert list(body) == ["aliauto_risk_info_tmall_yc_service_sync_response"]
    assert set(body["aliauto_risk_info_tmall_yc_service_sync_response"]) == {"request_id"}
    assert sandbox.accepted_records(RISK_METHOD) == [risk(1)]
    assert sandbox.calls(RISK_METHOD)[0].session == SESSION


def test_external_order_id_is_deterministic_and_exact(sandbox: TopSandbox) -> None:
    first = call(sandbox, EXTERNAL_ORDER_METHOD, external_order("YC-1"))
    again = call(sandbox, EXTERNAL_ORDER_METHOD, external_order("YC-1"))
    other = call(sandbox, EXTERNAL_ORDER_METHOD, external_order("YC-2"))
    key = "tmall_aliauto_trade_external_order_sycn_response"
    ids = [r.json()[key]["result"]["data"]["order_id"] for r in (first, again, other)]
    assert first.json()[key]["result"]["success"] is True
    assert ids[0] == ids[1] == order_id_for("YC-1") != ids[2]
    assert all(isinstance(i, int) and 16 <= len(str(i)) <= 19 for i in ids)
    # a JSON number in the raw text, exact beyond 2**53
    assert f'"order_id":{ids[0]}' in first.text
    records = sandbox.accepted_records(EXTERNAL_ORDER_METHOD)
    assert [r["_order_id"] for r in records] == ids
    assert [r.get("_duplicate", False) for r in records] == [False, True, False]
    assert records[0]["idempotent_id"] == "YC-1" and records[0]["source"] == "YC_STORE"


def test_simplify_drops_wrapper(sandbox: TopSandbox) -> None:
    response = call(sandbox, WRITEOFF_METHOD, [writeoff()], extra={"simplify": "true"})
    assert response.json()["result"] == {"success": True, "data": True}


def test_default_format_is_xml(sandbox: TopSandbox) -> None:
    params = {"method": RISK_METHOD, "app_key": APP_KEY, "v": "2.0", "sign_method": "md5", "session": SESSION}
    params["timestamp"] = format_platform_time(datetime.now(UTC))
    params[API_PARAM[RISK_METHOD]] = dumps(good_payload(RISK_METHOD))
    params["sign"] = sign_top_request(params, SECRET, "md5")
    response = httpx.post(sandbox.url, data=params)  # everything in the body, no format
    assert response.headers["content-type"].startswith("text/xml")
    assert "<aliauto_risk_info_tmall_yc_service_sync_response><request_id>" in response.text


@pytest.mark.parametrize("sign_method", ["md5", "hmac", "hmac-sha256"])
def test_each_sign_method_accepted(sandbox: TopSandbox, sign_method: str) -> None:
    response = call(sandbox, WRITEOFF_METHOD, [writeoff()], sign_method=sign_method)
    assert "tmall_car_local_service_order_writeoff_sync_response" in response.json()


# --- system parameter and signature errors ---------------------------------------------------------------------


def test_bad_signature(sandbox: TopSandbox) -> None:
    err = error_of(call(sandbox, WRITEOFF_METHOD, [writeoff()], secret="not-the-secret"))
    assert (err["code"], err["msg"]) == (25, "Invalid signature")
    assert sandbox.accepted_records(WRITEOFF_METHOD) == []
    assert sandbox.calls()[0].outcome == "25"


def test_unsigned_empty_param_is_invalid_signature(sandbox: TopSandbox) -> None:
    err = error_of(call(sandbox, WRITEOFF_METHOD, [writeoff()], unsigned={"partner_id": ""}))
    assert err["code"] == 25
    assert "partner_id" in err["sub_msg"]


def test_unknown_sign_method(sandbox: TopSandbox) -> None:
    response = call(sandbox, WRITEOFF_METHOD, [writeoff()], extra={"sign_method": "sha1"}, sign_method="md5")
    assert error_of(response)["code"] == 25


def test_stale_timestamp(sandbox: TopSandbox) -> None:
    stale = datetime.now(UTC) - timedelta(minutes=11)
    err = error_of(call(sandbox, WRITEOFF_METHOD, [writeoff()], now=stale))
    assert (err["code"], err["sub_code"]) == (31, "isv.timestamp-limit-error")


def test_system_param_errors(sandbox: TopSandbox) -> None:
    base = {"app_key": APP_KEY, "v": "2.0", "sign_method": "md5", "format": "json", "method": WRITEOFF_METHOD}
    base["timestamp"] = format_platform_time(datetime.now(UTC))

    def code_for(**changes: str | None) -> int:
        params = {k: v for k, v in {**base, **changes}.items() if v is not None}
        params["sign"] = sign_top_request(params, SECRET, params.get("sign_method", "md5"))
        return int(error_of(httpx.post(sandbox.url, data=params))["code"])

    assert code_for(method=None) == 21
    assert code_for(method="taobao.no.such.api") == 22
    assert code_for(format="yaml") == 23
    assert code_for(app_key=None) == 28
    assert code_for(app_key="999") == 29
    assert code_for(timestamp=None) == 30
    assert code_for(timestamp="2024/05/20 10:30:00") == 31
    assert code_for(v=None) == 32
    assert code_for(v="two") == 33
    assert code_for(v="1.0") == 34
    assert code_for() == 40  # all system params fine, the API parameter missing
    assert code_for(sign_method=None) == 40  # missing sign_method is md5
    unsigned = dict(base)  # no sign at all
    assert error_of(httpx.post(sandbox.url, data=unsigned))["code"] == 24


def test_risk_session_checks(sandbox: TopSandbox) -> None:
    assert error_of(call(sandbox, RISK_METHOD, good_payload(RISK_METHOD)))["code"] == 26
    err = error_of(call(sandbox, RISK_METHOD, good_payload(RISK_METHOD), session="someone-else"))
    assert (err["code"], err["sub_code"]) == (27, "invalid-sessionkey")
    sandbox.set_faults(session_expired=True)
    assert error_of(call(sandbox, RISK_METHOD, good_payload(RISK_METHOD), session=SESSION))["code"] == 27
    # other APIs ignore the session
    assert call(sandbox, WRITEOFF_METHOD, [writeoff()]).json()["tmall_car_local_service_order_writeoff_sync_response"]
    assert sandbox.accepted_records(RISK_METHOD) == []


# --- API parameter errors --------------------------------------------------------------------------------------


def test_writeoff_list_limit(sandbox: TopSandbox) -> None:
    assert "error_response" not in call(sandbox, WRITEOFF_METHOD, [writeoff(i) for i in range(999)]).json()
    err = error_of(call(sandbox, WRITEOFF_METHOD, [writeoff(i) for i in range(1000)]))
    assert (err["code"], err["sub_code"]) == (41, "isv.invalid-parameter")
    assert "999" in err["sub_msg"]
    assert len(sandbox.accepted_records(WRITEOFF_METHOD)) == 999


def test_risk_list_limit(sandbox: TopSandbox) -> None:
    for contents in ([], [risk(i) for i in range(101)]):
        err = error_of(call(sandbox, RISK_METHOD, {"contents": contents}, session=SESSION))
        assert err["code"] == 41 and "100" in err["sub_msg"]


def test_missing_required_field_names_record_and_field(sandbox: TopSandbox) -> None:
    err = error_of(call(sandbox, WRITEOFF_METHOD, [writeoff(1), writeoff(2, verify_time=None)]))
    assert (err["code"], err["sub_code"]) == (41, "isv.invalid-parameter")
    assert "record 1" in err["sub_msg"] and "verify_time" in err["sub_msg"]
    payload = {"contents": [risk(1, buyer_name=None)]}
    err = error_of(call(sandbox, RISK_METHOD, payload, session=SESSION))
    assert "record 0" in err["sub_msg"] and "buyer_name" in err["sub_msg"]
    order = external_order()
    del order["idempotent_id"]
    order["pay_order_info"]["idempotent_id"] = "nested-in-the-wrong-place"
    err = error_of(call(sandbox, EXTERNAL_ORDER_METHOD, order))
    assert err["code"] == 41 and "idempotent_id" in err["sub_msg"]
    assert sandbox.accepted_records(WRITEOFF_METHOD) == sandbox.accepted_records(EXTERNAL_ORDER_METHOD) == []


@pytest.mark.parametrize(
    ("payload", "fragment"),
    [
        ([writeoff(tb_biz_order_id="353454543")], "tb_biz_order_id"),  # Number as a string
        ([writeoff(biz_type=2.0)], "biz_type"),  # Number as a float
        ([writeoff(verify_time="2020-11-11T12:00:00")], "verify_time"),  # Date format
        ([writeoff(verify_time=1605067200000)], "verify_time"),  # Date as epoch millis
        ([writeoff(unknown_field=1)], "unknown_field"),
    ],
)
def test_field_type_errors(sandbox: TopSandbox, payload: Any, fragment: str) -> None:
    err = error_of(call(sandbox, WRITEOFF_METHOD, payload))
    assert err["code"] == 41 and fragment in err["sub_msg"]


def test_external_order_nested_date_checked(sandbox: TopSandbox) -> None:
    order = external_order()
    order["order_info"]["pay_time"] = "2022-05-01"
    err = error_of(call(sandbox, EXTERNAL_ORDER_METHOD, order))
    assert err["code"] == 41 and "order_info.pay_time" in err["sub_msg"]


def test_parameter_missing_or_not_json(sandbox: TopSandbox) -> None:
    err = error_of(call(sandbox, WRITEOFF_METHOD, None, raw_payload="[{not json"))
    assert err["code"] == 41 and "local_order_write_off_d_t_o_list" in err["sub_msg"]
    err = error_of(call(sandbox, EXTERNAL_ORDER_METHOD, None, raw_payload=""))  # not sent (empty: not signed)
    assert (err["code"], err["sub_code"]) == (40, "isv.missing-parameter:sync_single_order_req")


# --- faults ----------------------------------------------------------------------------------------------------


def test_ban_counts_down_then_lifts(sandbox: TopSandbox) -> None:
    sandbox.set_faults(rate_limit_next=1, ban_seconds=2)
    err = error_of(call(sandbox, WRITEOFF_METHOD, [writeoff()]))
    assert (err["code"], err["msg"]) == (7, "App Call Limited")
    assert err["sub_code"] == "accesscontrol.limited-by-api-access-count"
    assert err["sub_msg"] == "This ban will last for 2 more seconds"
    started = time.monotonic()
    err = error_of(call(sandbox, WRITEOFF_METHOD, [writeoff()]))
    assert err["code"] == 7 and err["sub_msg"] in {f"This ban will last for {n} more seconds" for n in (1, 2)}
    time.sleep(max(0.0, 2.1 - (time.monotonic() - started)))
    assert "error_response" not in call(sandbox, WRITEOFF_METHOD, [writeoff()]).json()
    assert len(sandbox.accepted_records(WRITEOFF_METHOD)) == 1


def test_daily_quota_until_midnight_utc8() -> None:
    frozen = datetime(2024, 5, 20, 23, 59, 0, 500000, tzinfo=PLATFORM_TZ)
    faults = Faults(daily_quota_exceeded=True)
    with TopSandbox(app_key=APP_KEY, app_secret=SECRET, session_key=SESSION, faults=faults, clock=lambda: frozen) as sb:
        err = error_of(call(sb, WRITEOFF_METHOD, [writeoff()], now=frozen))
    assert (err["code"], err["sub_code"]) == (7, "accesscontrol.limited-by-app-access-count")
    assert err["sub_msg"] == "This ban will last for 60 more seconds"


def test_isp_errors_then_success(sandbox: TopSandbox) -> None:
    sandbox.set_faults(isp_error_next=2)
    for _ in range(2):
        err = error_of(call(sandbox, WRITEOFF_METHOD, [writeoff()]))
        assert (err["code"], err["msg"], err["sub_code"]) == (15, "Remote service error", "isp.remote-service-error")
    assert "error_response" not in call(sandbox, WRITEOFF_METHOD, [writeoff()]).json()
    assert len(sandbox.accepted_records(WRITEOFF_METHOD)) == 1


def test_service_unavailable(sandbox: TopSandbox) -> None:
    sandbox.set_faults(service_unavailable_next=1)
    err = error_of(call(sandbox, RISK_METHOD, good_payload(RISK_METHOD), session=SESSION))
    assert (err["code"], err["sub_code"]) == (10, "isp.service-unavailable")
    assert sandbox.accepted_records(RISK_METHOD) == []


def test_http_502(sandbox: TopSandbox) -> None:
    sandbox.set_faults(http_500_next=1)
    response = call(sandbox, WRITEOFF_METHOD, [writeoff()])
    assert response.status_code == 502 and response.headers["content-type"].startswith("text/html")
    assert sandbox.accepted_records(WRITEOFF_METHOD) == []
    assert call(sandbox, WRITEOFF_METHOD, [writeoff()]).status_code == 200
    assert [c.outcome for c in sandbox.calls()] == ["http_502", "ok"]


def test_timeout_processes_then_sleeps(sandbox: TopSandbox) -> None:
    sandbox.set_faults(timeout_next=1, timeout_sleep_s=1.0, timeout_processes=True)
    with pytest.raises(httpx.ReadTimeout):
        call(sandbox, EXTERNAL_ORDER_METHOD, external_order("T-1"), timeout=0.5)
    assert [r["idempotent_id"] for r in sandbox.accepted_records(EXTERNAL_ORDER_METHOD)] == ["T-1"]
    # the client retries with the same key: same order id, marked duplicate
    retry = call(sandbox, EXTERNAL_ORDER_METHOD, external_order("T-1"))
    result = retry.json()["tmall_aliauto_trade_external_order_sycn_response"]["result"]
    assert result["data"]["order_id"] == order_id_for("T-1")
    assert sandbox.accepted_records(EXTERNAL_ORDER_METHOD)[1]["_duplicate"] is True


def test_timeout_without_processing(sandbox: TopSandbox) -> None:
    sandbox.set_faults(timeout_next=1, timeout_sleep_s=0.1, timeout_processes=False)
    err = error_of(call(sandbox, WRITEOFF_METHOD, [writeoff()]))
    assert err["sub_code"].startswith("isp.")
    assert sandbox.accepted_records(WRITEOFF_METHOD) == []


def test_refuse_error_response_style(sandbox: TopSandbox) -> None:
    refused = writeoff(2)["tb_biz_order_id"]
    sandbox.set_faults(refuse={WRITEOFF_METHOD: [refused]})
    err = error_of(call(sandbox, WRITEOFF_METHOD, [writeoff(1), writeoff(2), writeoff(3)]))
    assert (err["code"], err["sub_code"]) == (15, "isv.invalid-parameter")
    assert err["sub_msg"] == f"record 1 (tb_biz_order_id={refused}): refused by sandbox"
    assert sandbox.accepted_records(WRITEOFF_METHOD) == []  # refused whole
    assert "error_response" not in call(sandbox, WRITEOFF_METHOD, [writeoff(1), writeoff(3)]).json()
    assert len(sandbox.accepted_records(WRITEOFF_METHOD)) == 2


def test_refuse_where_refuses_by_content_and_a_corrected_record_passes(sandbox: TopSandbox) -> None:
    bad_store = {**writeoff(2), "tb_store_id": 1}
    sandbox.set_faults(refuse_where={WRITEOFF_METHOD: {"tb_store_id": [1]}})
    err = error_of(call(sandbox, WRITEOFF_METHOD, [writeoff(1), bad_store]))
    assert (err["code"], err["sub_code"]) == (15, "isv.invalid-parameter")
    assert err["sub_msg"] == "record 1 (tb_store_id=1): refused by sandbox"
    assert sandbox.accepted_records(WRITEOFF_METHOD) == []
    corrected = {**bad_store, "tb_store_id": writeoff(1)["tb_store_id"]}
    assert "error_response" not in call(sandbox, WRITEOFF_METHOD, [writeoff(1), corrected]).json()
    assert len(sandbox.accepted_records(WRITEOFF_METHOD)) == 2


def test_refuse_where_is_validated() -> None:
    with pytest.raises(ValueError, match="refuse_where"):
        Faults.from_dict({"refuse_where": {WRITEOFF_METHOD: ["tb_store_id"]}})


def test_refuse_result_style(sandbox: TopSandbox) -> None:
    sandbox.set_faults(refuse={WRITEOFF_METHOD: [writeoff(1)["tb_biz_order_id"]], EXTERNAL_ORDER_METHOD: ["BAD"]})
    sandbox.set_faults(refuse_style="result")
    result = call(sandbox, WRITEOFF_METHOD, [writeoff(1)]).json()[
        "tmall_car_local_service_order_writeoff_sync_response"
    ]
    assert result["result"]["success"] is False
    assert result["result"]["error_code"] == "isv.invalid-parameter" and "record 0" in result["result"]["error_msg"]
    key = "tmall_aliauto_trade_external_order_sycn_response"
    result = call(sandbox, EXTERNAL_ORDER_METHOD, external_order("BAD")).json()[key]["result"]
    assert (result["success"], result["msg_code"]) == (False, "INVALID_PARAM") and "BAD" in result["msg_info"]
    assert sandbox.accepted_records(WRITEOFF_METHOD) == sandbox.accepted_records(EXTERNAL_ORDER_METHOD) == []


def test_refuse_risk_is_always_error_response(sandbox: TopSandbox) -> None:
    sandbox.set_faults(refuse={RISK_METHOD: [str(risk(1)["tc_sub_order_id"])]}, refuse_style="result")
    err = error_of(call(sandbox, RISK_METHOD, good_payload(RISK_METHOD), session=SESSION))
    assert err["sub_code"] == "isv.invalid-parameter" and "tc_sub_order_id" in err["sub_msg"]


def test_bad_signature_does_not_consume_a_fault(sandbox: TopSandbox) -> None:
    sandbox.set_faults(isp_error_next=1)
    assert error_of(call(sandbox, WRITEOFF_METHOD, [writeoff()], secret="wrong"))["code"] == 25
    assert sandbox.faults_snapshot().isp_error_next == 1
    assert error_of(call(sandbox, WRITEOFF_METHOD, [writeoff()]))["code"] == 15
    assert sandbox.faults_snapshot().isp_error_next == 0


def test_slow_ms(sandbox: TopSandbox) -> None:
    sandbox.set_faults(slow_ms=200)
    started = time.monotonic()
    call(sandbox, WRITEOFF_METHOD, [writeoff()])
    assert time.monotonic() - started >= 0.2


def test_set_faults_rejects_unknown_names(sandbox: TopSandbox) -> None:
    with pytest.raises(ValueError, match="unknown fault"):
        sandbox.set_faults(no_such_fault=1)
    with pytest.raises(ValueError):
        sandbox.set_faults(isp_error_next="2")


# --- HTTP admin endpoints --------------------------------------------------------------------------------------


def test_faults_over_http(sandbox: TopSandbox) -> None:
    base = sandbox.url.removesuffix("/router/rest")
    response = httpx.post(f"{base}/_sandbox/faults", json={"isp_error_next": 1, "slow_ms": 0})
    assert response.status_code == 200 and response.json()["isp_error_next"] == 1
    assert httpx.get(f"{base}/_sandbox/faults").json() == Faults(isp_error_next=1).to_dict()
    assert error_of(call(sandbox, WRITEOFF_METHOD, [writeoff()]))["code"] == 15
    assert httpx.get(f"{base}/_sandbox/faults").json()["isp_error_next"] == 0
    assert httpx.post(f"{base}/_sandbox/faults", json={"bogus": 1}).status_code == 400


def test_admin_endpoints(sandbox: TopSandbox) -> None:
    base = sandbox.url.removesuffix("/router/rest")
    call(sandbox, WRITEOFF_METHOD, [writeoff()])
    call(sandbox, WRITEOFF_METHOD, [writeoff()], secret="wrong")
    assert httpx.get(f"{base}/healthz").json() == {"status": "ok"}
    calls = httpx.get(f"{base}/_sandbox/calls", params={"method": WRITEOFF_METHOD}).json()
    assert [c["outcome"] for c in calls] == ["ok", "25"]
    records = httpx.get(f"{base}/_sandbox/records", params={"method": WRITEOFF_METHOD}).json()
    assert records == [writeoff()]
    assert httpx.delete(f"{base}/_sandbox/calls").status_code == 200
    assert sandbox.calls() == [] and sandbox.accepted_records(WRITEOFF_METHOD) == []
    missing = httpx.get(f"{base}/nope")
    assert missing.status_code == 404 and missing.json()["error"] == "not found"


# --- command line ----------------------------------------------------------------------------------------------


def test_command_line_prints_url_loads_faults_and_stops_on_sigterm(tmp_path: Path) -> None:
    faults_file = tmp_path / "faults.json"
    faults_file.write_text(json.dumps({"isp_error_next": 3}))
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT / "layers" / "shared"), str(ROOT)]),
        "TOP_APP_KEY": APP_KEY,
        "TOP_APP_SECRET": SECRET,
        "TOP_SESSION_KEY": SESSION,
        "TOP_SANDBOX_FAULTS": str(faults_file),
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "bridge_local.top_sandbox", "--port", "0"],
        env=env,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        url = process.stdout.readline().strip()
        assert url.startswith("http://127.0.0.1:") and url.endswith("/router/rest")
        base = url.removesuffix("/router/rest")
        assert httpx.get(f"{base}/_sandbox/faults").json()["isp_error_next"] == 3
        process.terminate()
        assert process.wait(timeout=5) == 0
        assert process.stderr is not None
        assert SECRET not in process.stderr.read()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


# --- answers the seeds do not show (docs/PROTOCOL.md §2) -------------------------------------------------------

WRITEOFF_KEY = "tmall_car_local_service_order_writeoff_sync_response"
RISK_KEY = "aliauto_risk_info_tmall_yc_service_sync_response"
EXTERNAL_KEY = "tmall_aliauto_trade_external_order_sycn_response"


def inner_of(response: httpx.Response, key: str) -> Any:
    assert response.status_code == 200
    document = response.json()
    assert set(document) == {key}, document
    return document[key]


@pytest.mark.parametrize(
    ("shape", "check"),
    [
        ("data_object", lambda inner: inner["result"]["success"] is True and isinstance(inner["result"]["data"], dict)),
        ("no_result", lambda inner: "result" not in inner and inner["data"] is True and "piggyback" in inner),
        ("result_string", lambda inner: json.loads(inner["result"]) == {"success": True, "data": True}),
        ("empty", lambda inner: set(inner) == {"request_id"}),
        ("list", lambda inner: isinstance(inner, list) and inner[0]["result"] == {"success": True, "data": True}),
        ("success_text_true", lambda inner: inner["result"] == {"success": "true", "data": True}),
    ],
)
def test_odd_writeoff_answers_are_processed(sandbox: TopSandbox, shape: str, check: Any) -> None:
    sandbox.set_faults(odd_answer={WRITEOFF_METHOD: shape})
    inner = inner_of(call(sandbox, WRITEOFF_METHOD, [writeoff(1), writeoff(2)]), WRITEOFF_KEY)
    assert check(inner), inner
    assert len(sandbox.accepted_records(WRITEOFF_METHOD)) == 2, "applied, whatever the answer looks like"
    (recorded,) = sandbox.calls()
    assert (recorded.outcome, recorded.processed, recorded.faults) == ("ok", True, [f"odd_answer:{shape}"])


@pytest.mark.parametrize(
    ("shape", "expected"),
    [
        ("order_id_text", lambda order_id: "abc"),
        ("order_id_float", lambda order_id: float(order_id)),
        ("order_id_negative", lambda order_id: -order_id),
        ("order_id_object", lambda order_id: {"id": order_id}),
    ],
)
def test_odd_external_order_ids(sandbox: TopSandbox, shape: str, expected: Any) -> None:
    sandbox.set_faults(odd_answer={EXTERNAL_ORDER_METHOD: shape})
    inner = inner_of(call(sandbox, EXTERNAL_ORDER_METHOD, external_order("ODD-1")), EXTERNAL_KEY)
    assert inner["result"]["success"] is True
    assert inner["result"]["data"]["order_id"] == expected(order_id_for("ODD-1"))
    assert [r["idempotent_id"] for r in sandbox.accepted_records(EXTERNAL_ORDER_METHOD)] == ["ODD-1"]


def test_order_id_float_loses_digits_on_the_wire(sandbox: TopSandbox) -> None:
    sandbox.set_faults(odd_answer={EXTERNAL_ORDER_METHOD: "order_id_float"})
    response = call(sandbox, EXTERNAL_ORDER_METHOD, external_order("ODD-2"))
    text = response.text
    assert str(order_id_for("ODD-2")) not in text, "the exact id does not survive a double"
    assert isinstance(inner_of(response, EXTERNAL_KEY)["result"]["data"]["order_id"], float)


@pytest.mark.parametrize(
    ("method", "payload_id", "key", "fields"),
    [
        (WRITEOFF_METHOD, None, WRITEOFF_KEY, ("error_code", "error_msg", "isv.invalid-parameter")),
        (EXTERNAL_ORDER_METHOD, "ODD-3", EXTERNAL_KEY, ("msg_code", "msg_info", "INVALID_PARAM")),
    ],
)
def test_refusals_in_odd_shapes_are_not_processed(
    sandbox: TopSandbox, method: str, payload_id: str | None, key: str, fields: tuple[str, str, str]
) -> None:
    code_field, message_field, code = fields
    payload = external_order(payload_id) if payload_id else [writeoff(1)]
    sandbox.set_faults(odd_answer={method: "refusal_top_level"})
    inner = inner_of(call(sandbox, method, payload), key)
    assert "result" not in inner and inner["success"] is False
    assert inner[code_field] == code and inner[message_field]
    sandbox.set_faults(odd_answer={method: "success_text_false"})
    result = inner_of(call(sandbox, method, payload), key)["result"]
    assert (result["success"], result[code_field]) == ("false", code)
    assert sandbox.accepted_records(method) == []
    assert [(c.outcome, c.processed) for c in sandbox.calls()] == [(code, False), (code, False)]


def test_odd_risk_answer(sandbox: TopSandbox) -> None:
    sandbox.set_faults(odd_answer={RISK_METHOD: "list"})
    inner = inner_of(call(sandbox, RISK_METHOD, good_payload(RISK_METHOD), session=SESSION), RISK_KEY)
    assert inner == [{}], "the usual (empty) answer inside a list, with no place for request_id"
    assert len(sandbox.accepted_records(RISK_METHOD)) == 1


def test_odd_answer_next_cycles_through_the_apis_shapes_and_is_consumed(sandbox: TopSandbox) -> None:
    sandbox.set_faults(odd_answer_next=3)
    first = inner_of(call(sandbox, WRITEOFF_METHOD, [writeoff(1)]), WRITEOFF_KEY)
    second = inner_of(call(sandbox, WRITEOFF_METHOD, [writeoff(2)]), WRITEOFF_KEY)
    other = inner_of(call(sandbox, EXTERNAL_ORDER_METHOD, external_order("ODD-4")), EXTERNAL_KEY)
    normal = inner_of(call(sandbox, WRITEOFF_METHOD, [writeoff(3)]), WRITEOFF_KEY)
    assert isinstance(first["result"]["data"], dict)  # data_object, the writeoff API's first odd shape
    assert set(second) == {"request_id"}  # then empty
    assert other["result"]["data"]["order_id"] == "abc"  # each API starts its own rotation
    assert normal["result"] == {"success": True, "data": True}
    assert sandbox.faults_snapshot().odd_answer_next == 0
    assert [c.faults for c in sandbox.calls()] == [
        ["odd_answer:data_object"],
        ["odd_answer:empty"],
        ["odd_answer:order_id_text"],
        [],
    ]


def test_odd_answer_map_is_not_consumed_and_leaves_other_apis_alone(sandbox: TopSandbox) -> None:
    sandbox.set_faults(odd_answer={WRITEOFF_METHOD: "empty"}, odd_answer_next=1)
    for n in range(3):
        assert set(inner_of(call(sandbox, WRITEOFF_METHOD, [writeoff(n)]), WRITEOFF_KEY)) == {"request_id"}
    assert sandbox.faults_snapshot().odd_answer_next == 1, "the map wins without consuming the counter"
    inner = inner_of(call(sandbox, EXTERNAL_ORDER_METHOD, external_order("ODD-5")), EXTERNAL_KEY)
    assert inner["result"]["data"]["order_id"] == "abc"


def test_a_refusal_comes_before_the_answer_faults(sandbox: TopSandbox) -> None:
    sandbox.set_faults(refuse={WRITEOFF_METHOD: [writeoff(1)["tb_biz_order_id"]]}, odd_answer_next=1, not_json_next=1)
    assert error_of(call(sandbox, WRITEOFF_METHOD, [writeoff(1)]))["sub_code"] == "isv.invalid-parameter"
    snapshot = sandbox.faults_snapshot()
    assert (snapshot.odd_answer_next, snapshot.not_json_next) == (1, 1)


def test_not_json_with_http_200_after_processing(sandbox: TopSandbox) -> None:
    sandbox.set_faults(not_json_next=1, odd_answer_next=1)
    response = call(sandbox, WRITEOFF_METHOD, [writeoff(1)])
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/html")
    with pytest.raises(ValueError):
        json.loads(response.content)
    assert len(sandbox.accepted_records(WRITEOFF_METHOD)) == 1
    (recorded,) = sandbox.calls()
    assert (recorded.outcome, recorded.processed, recorded.faults) == ("ok", True, ["not_json"])
    assert sandbox.faults_snapshot().odd_answer_next == 1, "a bad body wins over an odd shape"


def test_truncated_json_body(sandbox: TopSandbox) -> None:
    sandbox.set_faults(truncated_next=1)
    response = call(sandbox, EXTERNAL_ORDER_METHOD, external_order("CUT-1"))
    assert response.status_code == 200
    with pytest.raises(ValueError):
        json.loads(response.content)
    assert response.text.startswith('{"' + EXTERNAL_KEY)
    assert [r["idempotent_id"] for r in sandbox.accepted_records(EXTERNAL_ORDER_METHOD)] == ["CUT-1"]
    assert "result" in call(sandbox, EXTERNAL_ORDER_METHOD, external_order("CUT-1")).json()[EXTERNAL_KEY]


def test_bad_bodies_without_processing(sandbox: TopSandbox) -> None:
    sandbox.set_faults(not_json_next=1, truncated_next=1, bad_body_processes=False)
    call(sandbox, WRITEOFF_METHOD, [writeoff(1)])
    call(sandbox, WRITEOFF_METHOD, [writeoff(1)])
    assert sandbox.accepted_records(WRITEOFF_METHOD) == []
    assert [(c.outcome, c.processed) for c in sandbox.calls()] == [("not_json", False), ("truncated", False)]


def test_timeout_is_recorded_on_the_call(sandbox: TopSandbox) -> None:
    sandbox.set_faults(timeout_next=1, timeout_sleep_s=0.05)
    call(sandbox, WRITEOFF_METHOD, [writeoff(1)])
    (recorded,) = sandbox.calls()
    assert (recorded.outcome, recorded.processed, recorded.faults) == ("ok", True, ["timeout"])


@pytest.mark.parametrize(
    "value",
    [{WRITEOFF_METHOD: "no_such_shape"}, {WRITEOFF_METHOD: 1}, ["empty"], "empty"],
)
def test_odd_answer_is_validated(sandbox: TopSandbox, value: Any) -> None:
    with pytest.raises(ValueError, match="odd_answer"):
        sandbox.set_faults(odd_answer=value)
    with pytest.raises(ValueError, match="odd_answer"):
        Faults.from_dict({"odd_answer": value})
    for name in ("odd_answer_next", "not_json_next", "truncated_next"):
        with pytest.raises(ValueError, match=name):
            sandbox.set_faults(**{name: -1})
    with pytest.raises(ValueError, match="bad_body_processes"):
        sandbox.set_faults(bad_body_processes="yes")


def test_every_odd_shape_is_answered(sandbox: TopSandbox) -> None:
    for n, shape in enumerate(ODD_SHAPES):
        sandbox.set_faults(odd_answer={EXTERNAL_ORDER_METHOD: shape})
        response = call(sandbox, EXTERNAL_ORDER_METHOD, external_order(f"ALL-{n}"))
        assert response.status_code == 200 and EXTERNAL_KEY in response.json(), shape
    assert [c.faults for c in sandbox.calls()] == [[f"odd_answer:{shape}"] for shape in ODD_SHAPES]


def test_calls_carry_the_tag_header_and_their_records(sandbox: TopSandbox) -> None:
    system = {"method": WRITEOFF_METHOD, "app_key": APP_KEY, "timestamp": format_platform_time(datetime.now(UTC))}
    system.update({"format": "json", "v": "2.0", "sign_method": "md5"})
    api = {API_PARAM[WRITEOFF_METHOD]: dumps([writeoff(1), writeoff(2)])}
    system["sign"] = sign_top_request({**system, **api}, SECRET, "md5")
    httpx.post(sandbox.url, params=system, data=api, headers={"X-Sandbox-Tag": "worker-7"}, timeout=5)
    call(sandbox, WRITEOFF_METHOD, [writeoff(3)])
    tagged, untagged = sandbox.calls()
    assert (tagged.tag, untagged.tag) == ("worker-7", None)
    assert tagged.sent_records() == [writeoff(1), writeoff(2)]
    assert httpx.get(sandbox.url.removesuffix("/router/rest") + "/_sandbox/calls").json()[0]["tag"] == "worker-7"


def test_a_new_session_key_replaces_the_old_one(sandbox: TopSandbox) -> None:
    try:
        sandbox.set_session_key("session-new")
        assert error_of(call(sandbox, RISK_METHOD, good_payload(RISK_METHOD), session=SESSION))["code"] == 27
        assert call(sandbox, RISK_METHOD, good_payload(RISK_METHOD), session="session-new").json() == {
            RISK_KEY: {"request_id": sandbox.calls()[-1].request_id}
        }
    finally:
        sandbox.set_session_key(SESSION)
