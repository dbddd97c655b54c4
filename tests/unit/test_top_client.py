"""The TOP client against the local TOP sandbox over real HTTP: signing, layout, parsing, classification, retries.

Delays are recorded instead of slept (``rand=1.0`` makes them exact: 0.2, 0.4, 0.8, ...), except where a test is
about elapsed time.
"""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from bridge_local.top_sandbox import EXTERNAL_ORDER_METHOD, RISK_METHOD, WRITEOFF_METHOD, TopSandbox, order_id_for
from taobao_bridge.clock import PLATFORM_TZ, parse_platform_time
from taobao_bridge.errors import (
    ConfigurationError,
    TopClockError,
    TopPermanentError,
    TopRateLimited,
    TopSessionExpired,
    TopTransientError,
    TopTransportError,
    UnknownOutcome,
    UnreadableAnswer,
)
from taobao_bridge.settings import Settings
from taobao_bridge.signing import SignMethod
from taobao_bridge.top_client import TopClient, TopResponse, encode_api_params, shared_http_client

APP_KEY = "k"
# Distinctive values, so that "not in str(error)" cannot pass or fail by accident.
SECRET = "APP-SECRET-9f8e7d6c5b4a"
SESSION = "SESSION-KEY-0a1b2c3d4e5f"
PHONE = "13012345678"


def writeoff(n: int = 1) -> dict[str, Any]:
    return {
        "biz_type": 2,
        "service_sku_name": "洗车",
        "verify_time": "2020-11-11 12:00:00",
        "tb_store_id": 2343432,
        "service_status": 2,
        "service_id": 1111,
        "service_detail_id": 111223,
        "tb_biz_order_id": 353454543 + n,
    }


def risk(n: int = 1) -> dict[str, Any]:
    return {
        "install_type": 0,
        "buyer_phone": PHONE,
        "tc_order_id": 3882527336184474047,
        "tc_sub_order_id": 3882527336184474047 + n,
        "buyer_name": "王五",
    }


def external_order(idempotent_id: str = "YC_STORE-45678765") -> dict[str, Any]:
    return {
        "buyer_info": {"user_nick": "张三", "user_phone": "13912340000", "user_id": 23432},
        "order_info": {"biz_type": 200, "out_order_id": "ABC123432", "pay_time": "2022-05-01 12:30:50"},
        "source": "YC_STORE",
        "item_info": {"item_id": 1000, "item_title": "一个商品", "buy_amount": 2},
        "seller_info": {"user_nick": "李四", "user_id": 4567823},
        "idempotent_id": idempotent_id,
    }


PARAMS: dict[str, dict[str, Any]] = {
    WRITEOFF_METHOD: {"local_order_write_off_d_t_o_list": [writeoff(1), writeoff(2)]},
    RISK_METHOD: {"risk_info_sync_request": {"contents": [risk(1)]}},
    EXTERNAL_ORDER_METHOD: {"sync_single_order_req": external_order()},
}
WRITEOFF = PARAMS[WRITEOFF_METHOD]


class StepClock:
    """Real time (the sandbox checks the ±10 min skew) plus one second more on every reading."""

    def __init__(self, offset: timedelta = timedelta(0)) -> None:
        self.start = datetime.now(UTC) + offset
        self.readings = 0

    def __call__(self) -> datetime:
        self.readings += 1
        return self.start + timedelta(seconds=self.readings)


@pytest.fixture(scope="module")
def module_sandbox() -> Iterator[TopSandbox]:
    with TopSandbox(app_key=APP_KEY, app_secret=SECRET, session_key=SESSION, port=0) as sandbox:
        yield sandbox


@pytest.fixture
def sandbox(module_sandbox: TopSandbox) -> TopSandbox:
    module_sandbox.reset()
    module_sandbox.clear()
    return module_sandbox


@pytest.fixture
def sleeps() -> list[float]:
    return []


@pytest.fixture
def make_client(sandbox: TopSandbox, sleeps: list[float]) -> Callable[..., TopClient]:
    def make(**kw: Any) -> TopClient:
        options: dict[str, Any] = {
            "gateway_url": sandbox.url,
            "app_key": APP_KEY,
            "app_secret": SECRET,
            "clock": StepClock(),
            "sleep": sleeps.append,
            "rand": lambda: 1.0,
        }
        options.update(kw)
        return TopClient(**options)

    return make


def assert_no_secrets(error: BaseException) -> None:
    texts = [str(error), repr(error), *getattr(error, "__notes__", [])]
    for text in texts:
        assert SECRET not in text and SESSION not in text, text


# ---- success ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("method", [WRITEOFF_METHOD, RISK_METHOD, EXTERNAL_ORDER_METHOD])
def test_each_api_succeeds(sandbox: TopSandbox, make_client: Callable[..., TopClient], method: str) -> None:
    response = make_client().call(method, PARAMS[method], session=SESSION if method == RISK_METHOD else None)
    (call,) = sandbox.calls(method)
    assert call.outcome == "ok"
    assert response.method == method and response.attempts == 1 and response.latency_ms > 0
    assert response.request_id == call.request_id and response.body["request_id"] == call.request_id
    if method == WRITEOFF_METHOD:
        assert response.body["result"] == {"success": True, "data": True}
        assert [r["tb_biz_order_id"] for r in sandbox.accepted_records(method)] == [353454544, 353454545]
    elif method == RISK_METHOD:
        assert set(response.body) == {"request_id"}
        assert sandbox.accepted_records(method) == [risk(1)]
    else:
        assert response.body["result"]["success"] is True


def test_nineteen_digit_order_id_comes_back_exact(make_client: Callable[..., TopClient]) -> None:
    idempotent_id = "YC_STORE-1"
    expected = order_id_for(idempotent_id)
    assert len(str(expected)) == 19 and int(float(expected)) != expected  # a float on the way would change it
    response = make_client().call(EXTERNAL_ORDER_METHOD, {"sync_single_order_req": external_order(idempotent_id)})
    got = response.body["result"]["data"]["order_id"]
    assert type(got) is int and got == expected


@pytest.mark.parametrize("sign_method", list(SignMethod))
def test_every_sign_method_is_accepted(
    sandbox: TopSandbox, make_client: Callable[..., TopClient], sign_method: SignMethod
) -> None:
    make_client(sign_method=sign_method.value).call(WRITEOFF_METHOD, WRITEOFF)
    (call,) = sandbox.calls()
    assert (call.outcome, call.sign_method) == ("ok", sign_method.value)


def test_empty_values_are_neither_sent_nor_signed(sandbox: TopSandbox, make_client: Callable[..., TopClient]) -> None:
    # The sandbox recomputes the sign over everything received: an empty value sent would be answered 25.
    params = dict(WRITEOFF, partner_id="", target_app_key="   ", port_no=None)
    make_client().call(WRITEOFF_METHOD, params, session="")
    (call,) = sandbox.calls()
    assert call.outcome == "ok"
    assert not {"partner_id", "target_app_key", "port_no", "session"} & set(call.params)


def test_simplified_body_without_wrapper_is_accepted(make_client: Callable[..., TopClient]) -> None:
    response = make_client().call(WRITEOFF_METHOD, dict(WRITEOFF, simplify=True))
    assert response.body["result"] == {"success": True, "data": True}
    assert response.request_id


def test_business_refusal_in_a_success_envelope_is_returned_not_judged(
    sandbox: TopSandbox, make_client: Callable[..., TopClient]
) -> None:
    sandbox.set_faults(refuse={WRITEOFF_METHOD: [353454544]}, refuse_style="result")
    response = make_client().call(WRITEOFF_METHOD, WRITEOFF)
    assert response.body["result"]["success"] is False
    assert response.body["result"]["error_code"] == "isv.invalid-parameter"


def test_sdk_layout_on_the_wire(sandbox: TopSandbox, make_client: Callable[..., TopClient]) -> None:
    sent: list[httpx.Request] = []
    with httpx.Client(event_hooks={"request": [sent.append]}) as http:
        make_client(http=http).call(RISK_METHOD, PARAMS[RISK_METHOD], session=SESSION)
    (request,) = sent
    assert request.method == "POST"
    assert request.headers["content-type"] == "application/x-www-form-urlencoded;charset=UTF-8"
    assert request.headers["accept-encoding"] == "gzip"
    query = dict(request.url.params)
    assert set(query) == {"method", "app_key", "timestamp", "v", "format", "sign_method", "session", "sign"}
    assert (query["v"], query["format"], query["sign_method"]) == ("2.0", "json", "hmac-sha256")
    body = dict(httpx.QueryParams(request.content.decode("ascii")))
    assert set(body) == {"risk_info_sync_request"}
    assert body["risk_info_sync_request"].startswith('{"contents":[{"install_type":0,')  # compact, one JSON text
    assert "王五" in body["risk_info_sync_request"]  # non-ASCII kept, as signed
    (call,) = sandbox.calls()
    assert call.outcome == "ok"


def test_timestamp_is_utc8(sandbox: TopSandbox, make_client: Callable[..., TopClient]) -> None:
    clock = StepClock()
    make_client(clock=clock).call(WRITEOFF_METHOD, WRITEOFF)
    (call,) = sandbox.calls()
    sent = parse_platform_time(call.params["timestamp"])
    assert sent == (clock.start + timedelta(seconds=1)).replace(microsecond=0)
    assert call.params["timestamp"] == (clock.start + timedelta(seconds=1)).astimezone(PLATFORM_TZ).strftime(
        "%Y-%m-%d %H:%M:%S"
    )


def test_default_http_client_is_one_shared_pool(make_client: Callable[..., TopClient]) -> None:
    assert shared_http_client() is shared_http_client()
    make_client().call(WRITEOFF_METHOD, WRITEOFF)
    assert not shared_http_client().is_closed


# ---- parameter encoding ------------------------------------------------------------------------------------------


def test_encode_api_params() -> None:
    moment = datetime(2024, 5, 20, 2, 30, tzinfo=UTC)
    encoded = encode_api_params(
        {
            "text": "洗车",
            "number": 12345678901234567890,
            "yes": True,
            "no": False,
            "zero": 0,
            "obj": {"a": 1, "b": "王", "big": 4012345678901234567},
            "items": [{"x": 1}],
            "when": moment,
            "none": None,
            "empty": "",
            "blank": " \t",
        }
    )
    assert encoded == {
        "text": "洗车",
        "number": "12345678901234567890",
        "yes": "true",
        "no": "false",
        "zero": "0",
        "obj": '{"a":1,"b":"王","big":4012345678901234567}',
        "items": '[{"x":1}]',
        "when": "2024-05-20 10:30:00",
    }


@pytest.mark.parametrize("name", ["method", "sign", "session", "timestamp", "app_key"])
def test_system_parameter_names_are_refused_before_any_io(name: str) -> None:
    with pytest.raises(ValueError, match=name):
        encode_api_params({name: "x"})


def test_unsupported_value_types_are_refused() -> None:
    with pytest.raises(TypeError, match="price"):
        encode_api_params({"price": 1.5})


# ---- retried failures --------------------------------------------------------------------------------------------


def test_fresh_timestamp_and_sign_on_every_attempt(
    sandbox: TopSandbox, make_client: Callable[..., TopClient], sleeps: list[float]
) -> None:
    sandbox.set_faults(isp_error_next=2)
    response = make_client().call(WRITEOFF_METHOD, WRITEOFF)
    calls = sandbox.calls()
    assert [c.outcome for c in calls] == ["15", "15", "ok"]
    assert response.attempts == 3 and response.request_id == calls[-1].request_id
    assert len({c.params["timestamp"] for c in calls}) == 3
    assert len({c.params["sign"] for c in calls}) == 3
    assert sleeps == [0.2, 0.4]
    assert len(sandbox.accepted_records(WRITEOFF_METHOD)) == 2  # processed once


def test_service_unavailable_is_retried(
    sandbox: TopSandbox, make_client: Callable[..., TopClient], sleeps: list[float]
) -> None:
    sandbox.set_faults(service_unavailable_next=1)
    assert make_client().call(WRITEOFF_METHOD, WRITEOFF).attempts == 2
    assert [c.outcome for c in sandbox.calls()] == ["10", "ok"]
    assert sleeps == [0.2]


def test_http_502_is_retried(sandbox: TopSandbox, make_client: Callable[..., TopClient], sleeps: list[float]) -> None:
    sandbox.set_faults(http_500_next=2)
    assert make_client().call(WRITEOFF_METHOD, WRITEOFF).attempts == 3
    assert [c.outcome for c in sandbox.calls()] == ["http_502", "http_502", "ok"]
    assert sleeps == [0.2, 0.4]


def test_backoff_is_capped_and_jittered(
    sandbox: TopSandbox, make_client: Callable[..., TopClient], sleeps: list[float]
) -> None:
    sandbox.set_faults(isp_error_next=5)
    draws = iter([1.0, 0.5, 1.0, 0.25, 1.0])
    make_client(max_attempts=6, backoff_cap_s=0.5, rand=lambda: next(draws)).call(WRITEOFF_METHOD, WRITEOFF)
    assert sleeps == [0.2, 0.5 * 0.4, 0.5, 0.25 * 0.5, 0.5]


def test_transient_errors_stop_at_max_attempts(
    sandbox: TopSandbox, make_client: Callable[..., TopClient], sleeps: list[float]
) -> None:
    sandbox.set_faults(isp_error_next=10)
    with pytest.raises(TopTransientError) as raised:
        make_client(max_attempts=3).call(WRITEOFF_METHOD, WRITEOFF)
    assert raised.value.sub_code == "isp.remote-service-error"
    assert raised.value.request_id == sandbox.calls()[-1].request_id
    assert len(sandbox.calls()) == 3 and sleeps == [0.2, 0.4]
    assert any("3 attempts; max_attempts=3 reached" in note for note in raised.value.__notes__)
    assert_no_secrets(raised.value)


def test_http_5xx_exhausted_is_an_unknown_outcome(
    sandbox: TopSandbox, make_client: Callable[..., TopClient], sleeps: list[float]
) -> None:
    sandbox.set_faults(http_500_next=10)
    with pytest.raises(UnknownOutcome, match=r"HTTP 502 \(4 attempts; max_attempts=4 reached\); outcome unknown"):
        make_client().call(WRITEOFF_METHOD, WRITEOFF, session=SESSION)
    assert len(sandbox.calls()) == 4 and sleeps == [0.2, 0.4, 0.8]


def test_retries_stop_when_the_next_delay_would_exceed_the_budget(
    sandbox: TopSandbox, make_client: Callable[..., TopClient], sleeps: list[float]
) -> None:
    sandbox.set_faults(isp_error_next=10)
    with pytest.raises(TopTransientError) as raised:
        make_client(max_attempts=10, retry_budget_s=0.3).call(WRITEOFF_METHOD, WRITEOFF)
    assert len(sandbox.calls()) == 2 and sleeps == [0.2]  # 0.4 more would pass 0.3 s
    assert any("retry budget" in note for note in raised.value.__notes__)


def test_retry_budget_counts_the_time_spent_in_calls(
    sandbox: TopSandbox, make_client: Callable[..., TopClient], sleeps: list[float]
) -> None:
    # Every answer takes 0.3 s; delays are negligible: a 0.8 s budget allows a third attempt at ~0.6 s, not a fourth.
    sandbox.set_faults(isp_error_next=10, slow_ms=300)
    with pytest.raises(TopTransientError):
        make_client(max_attempts=10, retry_budget_s=0.8, backoff_base_s=0.001).call(WRITEOFF_METHOD, WRITEOFF)
    assert len(sandbox.calls()) == 3


def test_retries_stop_before_the_deadline(
    sandbox: TopSandbox, make_client: Callable[..., TopClient], sleeps: list[float]
) -> None:
    # Another attempt needs delay + timeout_s (1.0) before the deadline: 0.2 and 0.4 fit in 1.6 s, 0.8 does not.
    sandbox.set_faults(isp_error_next=10)
    with pytest.raises(TopTransientError) as raised:
        make_client(max_attempts=10, timeout_s=1.0).call(WRITEOFF_METHOD, WRITEOFF, deadline=time.monotonic() + 1.6)
    assert len(sandbox.calls()) == 3 and sleeps == [0.2, 0.4]
    assert any("deadline" in note for note in raised.value.__notes__)


def test_no_retry_when_the_deadline_is_close(
    sandbox: TopSandbox, make_client: Callable[..., TopClient], sleeps: list[float]
) -> None:
    sandbox.set_faults(http_500_next=10)
    with pytest.raises(UnknownOutcome, match="no time left before the deadline"):
        make_client(timeout_s=1.0).call(WRITEOFF_METHOD, WRITEOFF, deadline=time.monotonic() + 0.9)
    assert len(sandbox.calls()) == 1 and sleeps == []


@pytest.mark.parametrize("processes", [True, False])
def test_read_timeout_is_an_unknown_outcome(
    sandbox: TopSandbox, make_client: Callable[..., TopClient], sleeps: list[float], processes: bool
) -> None:
    sandbox.set_faults(timeout_next=10, timeout_sleep_s=1.0, timeout_processes=processes)
    with pytest.raises(UnknownOutcome) as raised:
        make_client(timeout_s=0.3, max_attempts=2).call(WRITEOFF_METHOD, WRITEOFF)
    message = str(raised.value)
    assert f"TOP call {WRITEOFF_METHOD} timed out after 0.3 s (2 attempts" in message
    assert "outcome unknown: retry later with the same business keys" in message
    assert isinstance(raised.value, TopTransportError)
    assert isinstance(raised.value.__cause__, httpx.ReadTimeout)
    assert len(sandbox.calls()) == 2 and sleeps == [0.2]
    # The platform did apply the first call although the client never saw the answer: hence "unknown".
    assert len(sandbox.accepted_records(WRITEOFF_METHOD)) == (4 if processes else 0)
    assert_no_secrets(raised.value)


def _closed_port_url() -> str:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}/router/rest"


def test_connection_refused_is_a_plain_transport_error(
    make_client: Callable[..., TopClient], sleeps: list[float]
) -> None:
    with pytest.raises(TopTransportError) as raised:
        make_client(gateway_url=_closed_port_url(), max_attempts=2).call(WRITEOFF_METHOD, WRITEOFF, session=SESSION)
    assert not isinstance(raised.value, UnknownOutcome)
    assert "the platform did not process the request: safe to retry later" in str(raised.value)
    assert "ConnectError" in str(raised.value) and sleeps == [0.2]
    assert_no_secrets(raised.value)


def test_outcome_stays_unknown_when_a_later_attempt_cannot_connect(sleeps: list[float]) -> None:
    # Attempt 1 times out after it was processed; the gateway is gone for attempt 2. The write may have happened.
    with (
        TopSandbox(app_key=APP_KEY, app_secret=SECRET, session_key=SESSION) as lonely,
        httpx.Client() as http,
    ):
        lonely.set_faults(timeout_next=1, timeout_sleep_s=1.0)

        def stop_gateway(delay: float) -> None:
            sleeps.append(delay)
            lonely.stop()

        client = TopClient(
            gateway_url=lonely.url,
            app_key=APP_KEY,
            app_secret=SECRET,
            http=http,
            timeout_s=0.3,
            max_attempts=2,
            sleep=stop_gateway,
            rand=lambda: 1.0,
        )
        with pytest.raises(UnknownOutcome, match="failed: ConnectError"):
            client.call(WRITEOFF_METHOD, WRITEOFF)
        assert len(lonely.accepted_records(WRITEOFF_METHOD)) == 2 and sleeps == [0.2]


def test_clock_error_is_retried_once_immediately(sandbox: TopSandbox, make_client: Callable[..., TopClient]) -> None:
    class OnceSkewed(StepClock):
        def __call__(self) -> datetime:
            reading = super().__call__()
            return reading - timedelta(minutes=30) if self.readings == 1 else reading

    sleeps: list[float] = []
    response = make_client(clock=OnceSkewed(), sleep=sleeps.append).call(WRITEOFF_METHOD, WRITEOFF)
    assert response.attempts == 2 and sleeps == []
    assert [c.outcome for c in sandbox.calls()] == ["31", "ok"]


def test_clock_error_twice_raises(
    sandbox: TopSandbox, make_client: Callable[..., TopClient], sleeps: list[float]
) -> None:
    with pytest.raises(TopClockError) as raised:
        make_client(clock=StepClock(offset=timedelta(minutes=-30))).call(WRITEOFF_METHOD, WRITEOFF)
    assert raised.value.sub_code == "isv.timestamp-limit-error"
    assert len(sandbox.calls()) == 2 and sleeps == []
    assert any("retried once already" in note for note in raised.value.__notes__)


# ---- failures raised at once -------------------------------------------------------------------------------------


def test_ban_is_raised_with_its_seconds_and_not_retried(
    sandbox: TopSandbox, make_client: Callable[..., TopClient], sleeps: list[float]
) -> None:
    sandbox.set_faults(rate_limit_next=1, ban_seconds=37)
    with pytest.raises(TopRateLimited) as raised:
        make_client().call(WRITEOFF_METHOD, WRITEOFF)
    error = raised.value
    assert (error.retry_after_s, error.daily_quota, error.code) == (37, False, 7)
    assert len(sandbox.calls()) == 1 and sleeps == []
    assert_no_secrets(error)


def test_daily_quota_is_flagged(
    sandbox: TopSandbox, make_client: Callable[..., TopClient], sleeps: list[float]
) -> None:
    sandbox.set_faults(daily_quota_exceeded=True)
    with pytest.raises(TopRateLimited) as raised:
        make_client().call(WRITEOFF_METHOD, WRITEOFF)
    error = raised.value
    assert error.daily_quota is True and error.sub_code == "accesscontrol.limited-by-app-access-count"
    local = datetime.now(PLATFORM_TZ)
    to_midnight = (datetime.combine(local.date() + timedelta(days=1), datetime.min.time(), PLATFORM_TZ) - local).seconds
    assert abs(error.retry_after_s - to_midnight) <= 2
    assert len(sandbox.calls()) == 1 and sleeps == []


def test_expired_session_is_raised_at_once(
    sandbox: TopSandbox, make_client: Callable[..., TopClient], sleeps: list[float]
) -> None:
    sandbox.set_faults(session_expired=True)
    with pytest.raises(TopSessionExpired) as raised:
        make_client().call(RISK_METHOD, PARAMS[RISK_METHOD], session=SESSION)
    assert (raised.value.code, raised.value.sub_code) == (27, "invalid-sessionkey")
    assert len(sandbox.calls()) == 1 and sleeps == []
    assert_no_secrets(raised.value)


def test_missing_session_is_a_session_error(sandbox: TopSandbox, make_client: Callable[..., TopClient]) -> None:
    with pytest.raises(TopSessionExpired) as raised:
        make_client().call(RISK_METHOD, PARAMS[RISK_METHOD])
    assert raised.value.code == 26 and len(sandbox.calls()) == 1


def test_refused_record_is_permanent_and_not_retried(
    sandbox: TopSandbox, make_client: Callable[..., TopClient], sleeps: list[float]
) -> None:
    sandbox.set_faults(refuse={WRITEOFF_METHOD: [353454545]})
    with pytest.raises(TopPermanentError) as raised:
        make_client().call(WRITEOFF_METHOD, WRITEOFF)
    assert (raised.value.code, raised.value.sub_code) == (15, "isv.invalid-parameter")
    assert "tb_biz_order_id=353454545" in (raised.value.sub_msg or "")
    assert len(sandbox.calls()) == 1 and sleeps == []
    assert sandbox.accepted_records(WRITEOFF_METHOD) == []


def test_wrong_secret_is_permanent(sandbox: TopSandbox, make_client: Callable[..., TopClient]) -> None:
    with pytest.raises(TopPermanentError) as raised:
        make_client(app_secret="not-the-secret").call(WRITEOFF_METHOD, WRITEOFF)
    assert raised.value.code == 25 and len(sandbox.calls()) == 1


# ---- answers the sandbox cannot give (the transport shapes the answer; the client is real) -------------------------


def _answering(status: int, content: bytes) -> httpx.Client:
    return httpx.Client(transport=httpx.MockTransport(lambda request: httpx.Response(status, content=content)))


@pytest.mark.parametrize(
    "content",
    [b"<html>busy</html>", b'{"a_response":{"x":1},"a_response":{"x":2}}', b"[1,2]", b'{"x_response":[1]}'],
)
def test_unusable_200_answers_are_unreadable_and_never_resent(
    make_client: Callable[..., TopClient], sleeps: list[float], content: bytes
) -> None:
    # The gateway answered: the call may well have been applied, and another try could apply it twice.
    with _answering(200, content) as http, pytest.raises(UnreadableAnswer) as raised:
        make_client(http=http, max_attempts=3).call(WRITEOFF_METHOD, WRITEOFF)
    assert isinstance(raised.value, UnknownOutcome) and sleeps == []
    assert raised.value.answer == content.decode()


def test_an_unknown_outcome_is_not_resent_when_the_api_does_not_dedupe(
    sandbox: TopSandbox, make_client: Callable[..., TopClient], sleeps: list[float]
) -> None:
    sandbox.set_faults(timeout_next=10, timeout_sleep_s=1.0, timeout_processes=True)
    with pytest.raises(UnknownOutcome, match="does not dedupe"):
        make_client(timeout_s=0.3, max_attempts=3).call(WRITEOFF_METHOD, WRITEOFF, retry_unknown=False)
    assert len(sandbox.calls()) == 1 and sleeps == []


def test_a_never_sent_failure_is_still_retried_without_retry_unknown(
    sandbox: TopSandbox, make_client: Callable[..., TopClient], sleeps: list[float]
) -> None:
    sandbox.set_faults(service_unavailable_next=1)
    response = make_client().call(WRITEOFF_METHOD, WRITEOFF, retry_unknown=False)
    assert response.attempts == 2 and len(sleeps) == 1


def test_an_attempt_never_runs_past_the_deadline(sandbox: TopSandbox, make_client: Callable[..., TopClient]) -> None:
    sandbox.set_faults(timeout_next=1, timeout_sleep_s=2.0, timeout_processes=False)
    started = time.monotonic()
    with pytest.raises(UnknownOutcome):
        make_client(timeout_s=10.0, max_attempts=1).call(WRITEOFF_METHOD, WRITEOFF, deadline=started + 0.8)
    assert time.monotonic() - started < 1.5, "the 10 s timeout was cut to the 0.8 s left"


def test_no_attempt_starts_without_time_before_the_deadline(
    sandbox: TopSandbox, make_client: Callable[..., TopClient]
) -> None:
    with pytest.raises(TopTransportError, match="not started") as raised:
        make_client().call(WRITEOFF_METHOD, WRITEOFF, deadline=time.monotonic() + 0.1)
    assert not isinstance(raised.value, UnknownOutcome) and sandbox.calls() == []


def test_no_retry_starts_after_start_by(
    sandbox: TopSandbox, make_client: Callable[..., TopClient], sleeps: list[float]
) -> None:
    sandbox.set_faults(isp_error_next=10)
    with pytest.raises(TopTransientError) as raised:
        make_client(max_attempts=10).call(WRITEOFF_METHOD, WRITEOFF, start_by=time.monotonic() + 0.1)
    assert len(sandbox.calls()) == 1 and any("margin" in note for note in raised.value.__notes__)


def test_a_timeout_per_call_overrides_the_clients(sandbox: TopSandbox, make_client: Callable[..., TopClient]) -> None:
    sandbox.set_faults(timeout_next=1, timeout_sleep_s=0.6, timeout_processes=True)
    response = make_client(timeout_s=0.2).call(WRITEOFF_METHOD, WRITEOFF, timeout_s=2.0)
    assert response.attempts == 1


def test_http_4xx_is_retried_but_never_reached(make_client: Callable[..., TopClient], sleeps: list[float]) -> None:
    with _answering(403, b"forbidden") as http, pytest.raises(TopTransportError) as raised:
        make_client(http=http, max_attempts=2).call(WRITEOFF_METHOD, WRITEOFF)
    assert not isinstance(raised.value, UnknownOutcome) and "HTTP 403" in str(raised.value)


def test_error_code_as_string_and_unknown_code(make_client: Callable[..., TopClient], sleeps: list[float]) -> None:
    body = b'{"error_response":{"code":"77","msg":"New thing","request_id":"r1"}}'
    with _answering(200, body) as http, pytest.raises(TopPermanentError) as raised:
        make_client(http=http).call(WRITEOFF_METHOD, WRITEOFF)
    assert (raised.value.code, raised.value.request_id, sleeps) == ("77", "r1", [])


# ---- logging, secrets, settings ----------------------------------------------------------------------------------


def test_one_warning_per_failed_attempt_without_params_or_secrets(
    sandbox: TopSandbox, make_client: Callable[..., TopClient], caplog: pytest.LogCaptureFixture
) -> None:
    sandbox.set_faults(isp_error_next=2)
    with caplog.at_level(logging.WARNING):
        make_client().call(RISK_METHOD, PARAMS[RISK_METHOD], session=SESSION)
    failures = [r for r in caplog.records if r.getMessage() == "TOP call attempt failed"]
    assert [(r.levelno, r.__dict__["attempt"], r.__dict__["sub_code"]) for r in failures] == [
        (logging.WARNING, 1, "isp.remote-service-error"),
        (logging.WARNING, 2, "isp.remote-service-error"),
    ]
    assert failures[0].__dict__["error_class"] == "transient" and failures[0].__dict__["top_method"] == RISK_METHOD
    logged = " ".join(str(r.__dict__) for r in caplog.records)
    for forbidden in (SECRET, SESSION, PHONE, "王五"):
        assert forbidden not in logged


def test_repr_hides_the_secret(make_client: Callable[..., TopClient]) -> None:
    client = make_client()
    assert SECRET not in repr(client) and APP_KEY in repr(client)


def _settings(**changes: Any) -> Settings:
    base = Settings(
        is_local=False,
        qimen_app_secret="q",
        top_app_key=APP_KEY,
        top_app_secret=SECRET,
        top_session_key=SESSION,
        top_gateway_url="https://gw.example/router/rest",
        top_sign_method=SignMethod.MD5,
        fulfillment_table="t",
        inventory_table="i",
    )
    return replace(base, **changes)


def test_from_settings() -> None:
    client = TopClient.from_settings(_settings(), max_attempts=2)
    assert (client.gateway_url, client.app_key, client.sign_method, client.max_attempts) == (
        "https://gw.example/router/rest",
        APP_KEY,
        SignMethod.MD5,
        2,
    )
    with pytest.raises(ConfigurationError, match="TOP_APP_SECRET"):
        TopClient.from_settings(_settings(top_app_secret=""))
    with pytest.raises(ConfigurationError, match="TOP_APP_KEY"):
        TopClient.from_settings(_settings(top_app_key=""))


def test_response_is_frozen(make_client: Callable[..., TopClient]) -> None:
    response = make_client().call(WRITEOFF_METHOD, WRITEOFF)
    assert isinstance(response, TopResponse)
    with pytest.raises(AttributeError):
        response.attempts = 2  # type: ignore[misc]


def test_a_refusal_after_an_unanswered_attempt_says_it_may_have_been_applied(
    sandbox: TopSandbox, make_client: Callable[..., TopClient]
) -> None:
    sandbox.set_faults(timeout_next=1, timeout_sleep_s=1.0, refuse={WRITEOFF_METHOD: [353454545]})
    with pytest.raises(TopPermanentError) as raised:
        make_client(timeout_s=0.3).call(WRITEOFF_METHOD, WRITEOFF)
    assert len(sandbox.calls()) == 2
    assert any("may have been applied" in note for note in raised.value.__notes__)
