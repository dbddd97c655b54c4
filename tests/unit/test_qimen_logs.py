"""What the Qimen callback logs: never a sign an attacker could replay, never personal data.

Calls go through the real Lambda handler, assembled by ``callback.build_qimen_dispatcher`` from local settings
(so with the fulfillment method's real log allow-list), over an in-memory store. Every log record of every logger
(Powertools JSON and plain stdlib logging, extras and tracebacks included) and everything printed is captured and
searched.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
from collections.abc import Iterator
from datetime import UTC, datetime
from types import ModuleType
from typing import Any
from urllib.parse import quote

import pytest

from bridge_local.apigw import http_api_event, lambda_context
from taobao_bridge import callback
from taobao_bridge.jsonutil import dumps
from taobao_bridge.settings import ENV, LOCAL_DEFAULTS
from tests.unit.test_qimen_callback_metrics import handler_module  # noqa: F401 - the fixture
from tests.unit.test_qimen_outcomes import MemoryStore
from tests.unit.test_spi_checksign import OfficialSpiUtils, ServletRequest, official_text

SECRET = LOCAL_DEFAULTS[ENV.QIMEN_APP_SECRET]
METHOD = "qimen.taobao.life.fulfillment.create"

# Personal values of every kind, each unique enough that finding it anywhere in the logs means a leak.
PHONE, PHONE2, PHONE3 = "13912345678", "13887654321", "15011112222"
ID_NUMBER, ID_NUMBER2 = "110101199003071234", "44030419851231002X"
NAME, NAME2, NAME3 = "张三丰", "李小龙", "欧阳娜娜"
EMAIL = "zhang.sanfeng@example.com"
ADDRESS, ADDRESS2 = "北京市朝阳区建国路88号SOHO现代城", "上海市浦东新区世纪大道100号"
DISTRICT = "朝阳区"
MEMO = "请打电话13700001111给我太太"
PERSONAL = (PHONE, PHONE2, PHONE3, ID_NUMBER, ID_NUMBER2, NAME, NAME2, NAME3, EMAIL, ADDRESS, ADDRESS2, DISTRICT)
PERSONAL += (MEMO, "13700001111", "zhang.sanfeng", "建国路", "世纪大道")


def personal_order(seed_003_body: bytes, order_no: str = "1234567890123456789") -> dict[str, Any]:
    """Seed 003 with personal data in its known fields and in fields nobody declared."""
    payload: dict[str, Any] = json.loads(seed_003_body)
    payload["fulfillment_info"]["fulfillment_order_no"] = order_no
    user = payload["user_info"][0]
    user.update(mobile=PHONE, name=NAME, ext_info=dumps({"wechat": PHONE2, "email": EMAIL}))
    user["credentials"]["credential_no"] = ID_NUMBER
    user["email"] = EMAIL  # unknown
    user["id_card_no"] = ID_NUMBER2  # unknown
    address = payload["fulfillment_info"]["address_info"][0]
    address.update(address_detail=ADDRESS, contact_name=NAME2, contact_phone=PHONE3)
    address["district_list"][0]["district_name"] = DISTRICT
    payload["fulfillment_info"]["memo"] = MEMO
    payload["fulfillment_info"]["receiver_address"] = ADDRESS2  # unknown
    payload["buyer_mobile"] = PHONE2  # unknown
    payload["buyer"] = {"name": NAME3, "phone": PHONE3, "id_card_no": ID_NUMBER2}  # unknown
    payload["trade_info"]["buyer_phone"] = PHONE  # unknown, inside a known object
    payload["shop_info"]["owner_name"] = NAME3  # unknown
    return payload


# ---------------------------------------------------------------------------------------------- capturing
class Everything(logging.Handler):
    """Keeps every record with all it carries: message, extras, traceback, as text."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []
        self.texts: list[str] = []

    def filter(self, record: logging.LogRecord) -> bool:
        # Powertools adds a filter to the root's handlers (this one too) that drops its own records there.
        return True

    def emit(self, record: logging.LogRecord) -> None:
        if any(seen is record for seen in self.records):
            return  # met again on its way up to the root
        self.records.append(record)
        parts = [record.getMessage(), json.dumps(record.__dict__, default=repr, ensure_ascii=False)]
        if record.exc_info:
            parts.append(logging.Formatter().formatException(record.exc_info))
        for handler in logging.getLogger("taobao-bridge").handlers:  # Powertools' JSON, as CloudWatch gets it
            if handler is not self and handler.formatter is not None:
                parts.append(handler.formatter.format(record))
        self.texts.append("\n".join(parts))


@pytest.fixture
def logs(capsys: pytest.CaptureFixture[str]) -> Iterator[Everything]:
    sink = Everything()
    # The root, the Powertools service logger (which does not propagate; created here if no handler has been
    # loaded yet), and any other logger that does not propagate.
    targets = [logging.getLogger(), logging.getLogger("taobao-bridge")] + [
        logger
        for name, logger in logging.Logger.manager.loggerDict.items()
        if isinstance(logger, logging.Logger) and not logger.propagate and name != "taobao-bridge"
    ]
    levels = {logger: logger.level for logger in targets}
    for logger in targets:
        logger.addHandler(sink)
        logger.setLevel(logging.DEBUG)
    try:
        yield sink
    finally:
        for logger in targets:
            logger.removeHandler(sink)
            logger.setLevel(levels[logger])
    printed = capsys.readouterr()
    sink.texts.append(printed.out + printed.err)


def all_text(sink: Everything, capsys: pytest.CaptureFixture[str]) -> str:
    printed = capsys.readouterr()
    return "\n".join([*sink.texts, printed.out, printed.err])


@pytest.fixture
def store(handler_module: ModuleType, monkeypatch: pytest.MonkeyPatch) -> MemoryStore:  # noqa: F811
    """The real assembly from local settings, with an in-memory store in place of DynamoDB."""
    memory = MemoryStore()
    monkeypatch.setenv(ENV.BRIDGE_ENV, "local")
    monkeypatch.delenv(ENV.BRIDGE_SECRET_ID, raising=False)
    monkeypatch.setattr(callback, "FulfillmentStore", lambda *args, **kwargs: memory)
    monkeypatch.setattr(handler_module, "build_qimen_dispatcher", callback.build_qimen_dispatcher)
    return memory


def now_query(**extra: str) -> str:
    moment = datetime.now(UTC).astimezone(__import__("taobao_bridge.clock").clock.PLATFORM_TZ)
    params = {
        "method": METHOD,
        "app_key": "23456789",
        "sign_method": "md5",
        "timestamp": moment.strftime("%Y-%m-%d %H:%M:%S"),
        "format": "json",
        "v": "2.0",
        "customerId": "c1716172200000",
        **extra,
    }
    return "&".join(f"{k}={quote(v, safe='')}" for k, v in params.items())


def official_sign(request: ServletRequest, secret: str = SECRET) -> str:
    probe = ServletRequest(f"{request.query_string}&sign=0", request.headers, request.content_type, request.body)
    return OfficialSpiUtils.check_sign(probe, secret)[1]


def call(
    handler_module: ModuleType,  # noqa: F811
    body: bytes,
    *,
    query: str | None = None,
    secret: str = SECRET,
    content_type: str = "application/json;charset=utf-8",
    sign: str | None = None,
) -> dict[str, Any]:
    query = query if query is not None else now_query()
    request = ServletRequest(query, {}, content_type, body)
    sign = sign if sign is not None else official_sign(request, secret)
    event = http_api_event(
        method="POST",
        path="/qimen",
        raw_query=f"{query}&sign={sign}",
        headers={"content-type": content_type},
        body=body,
        route_key="POST /qimen",
    )
    result = handler_module.lambda_handler(event, lambda_context("QimenCallbackFunction", 6))
    assert result["statusCode"] == 200
    answer: dict[str, Any] = json.loads(result["body"])
    return answer


# =========================================================================== 1. no signature oracle
def test_a_failed_signature_check_logs_no_valid_sign_and_no_signed_values(
    handler_module: ModuleType,  # noqa: F811
    store: MemoryStore,
    logs: Everything,
    capsys: pytest.CaptureFixture[str],
    seed_003_body: bytes,
) -> None:
    body = dumps(personal_order(seed_003_body)).encode()
    query = now_query(note="签名调试")
    request = ServletRequest(query, {}, "application/json;charset=utf-8", body)
    md5 = official_sign(request)  # the sign this exact request needs
    text = official_text(ServletRequest(f"{query}&sign=0", {}, request.content_type, body))
    hmacs = [hmac.new(SECRET.encode(), text, digest).hexdigest().upper() for digest in (hashlib.md5, hashlib.sha256)]
    remote = "0123456789ABCDEF0123456789ABCDEF"
    answer = call(handler_module, body, query=query, sign=remote)
    assert answer == {"biz_error_msg": "Illegal request", "success": "false", "biz_error_code": "sign-check-failure"}

    logged = all_text(logs, capsys)
    for oracle in (md5, *hmacs):
        assert oracle not in logged and oracle.lower() not in logged
    # No canonical text with values either: not the sorted key+value text, not a single signed value.
    param_text = text.decode()[: -len(body)]
    for fragment in (param_text, param_text[:40], "customerIdc1716172200000", "签名调试", "c1716172200000"):
        assert fragment not in logged, fragment
    # What helps an operator is there.
    (failure,) = [r for r in logs.records if r.getMessage() == "Qimen signature check failed"]
    facts = failure.__dict__
    assert facts["method"] == METHOD and facts["sign_method"] == "md5" and facts["remote_sign"] == remote
    assert facts["parameters"] == sorted(
        ["method", "app_key", "sign_method", "timestamp", "format", "v", "customerId", "note", "sign"]
    )
    assert (facts["body_sha256"], facts["body_bytes"]) == (hashlib.sha256(body).hexdigest(), len(body))


def test_a_wrong_secret_logs_neither_sign(
    handler_module: ModuleType,  # noqa: F811
    store: MemoryStore,
    logs: Everything,
    capsys: pytest.CaptureFixture[str],
    seed_003_body: bytes,
) -> None:
    body = dumps(personal_order(seed_003_body)).encode()
    query = now_query(sign_method="hmac-sha256")
    request = ServletRequest(query, {}, "application/json;charset=utf-8", body)
    right = official_sign(request)
    answer = call(handler_module, body, query=query, secret="not-the-secret")
    assert answer["biz_error_code"] == "sign-check-failure"
    assert right not in all_text(logs, capsys)


# ============================================================================ 2. no personal data
def form_body(payload: dict[str, Any]) -> bytes:
    return "&".join(f"{k}={quote(dumps(v), safe='')}" for k, v in payload.items()).encode()


def test_no_personal_data_reaches_any_log_whatever_the_outcome(
    handler_module: ModuleType,  # noqa: F811
    store: MemoryStore,
    logs: Everything,
    capsys: pytest.CaptureFixture[str],
    seed_003_body: bytes,
) -> None:
    def order(no: str, **changes: Any) -> dict[str, Any]:
        payload = personal_order(seed_003_body, no)
        for section, values in changes.items():
            payload[section].update(values)
        return payload

    def codes(body: bytes, **kwargs: Any) -> str:
        answer = call(handler_module, body, **kwargs)
        return str(answer.get("biz_error_code") or answer["biz_result"])

    outcomes = {
        "created": codes(dumps(order("1000000000000000001")).encode()),
        "replayed": codes(dumps(order("1000000000000000001")).encode()),
        "conflict": codes(dumps(order("1000000000000000001", trade_info={"real_amount": 1})).encode()),
        "missing field": codes(dumps(order("1000000000000000002", trade_info={"quantity": None})).encode()),
        "value quoted in the rule": codes(
            dumps(
                order("1000000000000000003", fulfillment_info={"time_option": {"start": PHONE, "type": "DAY"}})
            ).encode()
        ),
        "blank key": codes(dumps(order("1000000000000000004", shop_info={"store_id": " "})).encode()),
        "bad json": codes(dumps(order("1000000000000000005")).encode()[:-30]),
        "duplicate key": codes(b'{"buyer_mobile":"' + PHONE.encode() + b'",' + dumps(order("1")).encode()[1:]),
        "not utf-8": codes(dumps(order("1000000000000000006")).encode("gbk")),
        "bad signature": codes(dumps(order("1000000000000000007")).encode(), sign="0" * 32),
        "personal query value, bad signature": codes(
            dumps(order("1000000000000000008")).encode(), query=now_query(buyer_phone=PHONE, buyer=NAME), sign="0"
        ),
        "repeated system parameter": codes(
            dumps(order("1000000000000000009")).encode(), query=now_query() + "&method=" + quote(NAME)
        ),
        "form call": codes(
            form_body(order("1000000000000000010")), content_type="application/x-www-form-urlencoded; charset=utf-8"
        ),
        "gbk call": codes(
            dumps(order("1000000000000000011")).encode("gbk"), content_type="application/json; charset=gbk"
        ),
        "unsupported charset": codes(
            dumps(order("1")).encode("utf-16"), content_type="application/json;charset=utf-16"
        ),
    }
    store.capacity[("123456789", "123456789012")] = 0
    outcomes["no inventory"] = codes(dumps(order("1000000000000000012")).encode())
    store.broken = True
    outcomes["storage failed"] = codes(dumps(order("1000000000000000013")).encode())

    assert outcomes == {
        "created": "success",
        "replayed": "success",
        "conflict": "ORDER_CONFLICT",
        "missing field": "INVALID_PARAMETER",
        "value quoted in the rule": "INVALID_PARAMETER",
        "blank key": "INVALID_PARAMETER",
        "bad json": "INVALID_JSON",
        "duplicate key": "INVALID_JSON",
        "not utf-8": "INVALID_JSON",
        "bad signature": "sign-check-failure",
        "personal query value, bad signature": "sign-check-failure",
        "repeated system parameter": "INVALID_PARAMETER",
        "form call": "success",
        "gbk call": "success",
        "unsupported charset": "INVALID_PARAMETER",
        "no inventory": "NO_INVENTORY",
        "storage failed": "SYSTEM_ERROR",
    }
    logged = all_text(logs, capsys)
    assert "fulfillment order received" in logged and "Qimen call invalid" in logged  # the payloads were logged
    leaks = [value for value in PERSONAL if value in logged]
    assert leaks == []
    # ...by allow-list: the ids support needs are there, the personal fields as markers of their size.
    assert '"store_id": "123456789"' in logged or '"store_id":"123456789"' in logged
    assert "<11 chars>" in logged
