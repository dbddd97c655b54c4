"""Bad input is the caller's problem, answered INVALID_JSON or INVALID_PARAMETER (not retryable), never
SYSTEM_ERROR (retryable: the platform would send the same bytes again and again).

Through the dispatcher with the fulfillment.create handler over an in-memory store, and through the real Lambda
handler for what only the handler sees (a body flagged base64 that is not).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from types import ModuleType
from typing import Any

import pytest

from bridge_local.apigw import http_api_event, lambda_context
from bridge_local.qimen_client import signed_query
from taobao_bridge.jsonutil import dumps
from taobao_bridge.models.fulfillment import METHOD, FulfillmentCreateRequest
from taobao_bridge.qimen import DispatchResult, QimenDispatcher
from taobao_bridge.settings import ENV, LOCAL_DEFAULTS
from tests.unit.test_qimen_callback_metrics import handler_module, store  # noqa: F401 - fixtures
from tests.unit.test_qimen_outcomes import MemoryStore, import_fulfillment_service

SECRET = "secret"
NOW = datetime(2026, 11, 23, 2, 0, 0, tzinfo=UTC)


def frozen() -> datetime:
    return NOW


@pytest.fixture
def send(monkeypatch: pytest.MonkeyPatch) -> Callable[..., DispatchResult]:
    service = import_fulfillment_service()
    monkeypatch.setattr(service.logger, "set_correlation_id", lambda value: None)
    memory = MemoryStore()

    def dispatch(body: bytes, content_type: str = "application/json;charset=utf-8") -> DispatchResult:
        dispatcher = QimenDispatcher(SECRET, clock=frozen)
        dispatcher.register(METHOD, FulfillmentCreateRequest, service.FulfillmentCreate(memory, clock=frozen))
        headers = {"content-type": content_type}
        result = dispatcher.dispatch(signed_query(body, SECRET, clock=frozen), headers, body)
        assert result.answer["biz_error_code"] != "SYSTEM_ERROR", result.answer
        assert memory.orders == {}, "a refused order must not be stored"
        return result

    return dispatch


def code(result: DispatchResult) -> str:
    return str(result.answer.get("biz_error_code") or result.answer["biz_result"])


def with_fields(seed_003_body: bytes, **paths: Any) -> bytes:
    """The seed body with ``section__field=value`` changes (compact UTF-8 JSON)."""
    payload: dict[str, Any] = json.loads(seed_003_body)
    for path, value in paths.items():
        section, name = path.split("__")
        payload[section][name] = value
    return dumps(payload).encode("utf-8")


# ----------------------------------------------------------------------------------------------- INVALID_JSON
DEEP = [
    b"[" * 10_000 + b"]" * 10_000,
    b'{"a":' * 10_000 + b"1" + b"}" * 10_000,
    b'{"trade_info":' + b"[" * 10_000 + b"]" * 10_000 + b"}",
]


@pytest.mark.parametrize("body", DEEP, ids=["arrays", "objects", "inside-a-field"])
def test_json_nested_ten_thousand_deep(send: Callable[..., DispatchResult], body: bytes) -> None:
    result = send(body)
    assert code(result) == "INVALID_JSON"
    assert "nested deeper than 32" in result.answer["biz_error_msg"]


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-le", "utf-16-be", "utf-32", "utf-32-le", "utf-32-be"])
@pytest.mark.parametrize("content_type", ["application/json;charset=utf-8", "application/json", ""])
def test_utf16_and_utf32_bodies(
    send: Callable[..., DispatchResult], seed_003_body: bytes, encoding: str, content_type: str
) -> None:
    result = send(seed_003_body.decode().encode(encoding), content_type)
    assert code(result) == "INVALID_JSON", result.answer


def test_a_declared_utf16_charset_is_refused_as_unsupported(
    send: Callable[..., DispatchResult], seed_003_body: bytes
) -> None:
    result = send(seed_003_body.decode().encode("utf-16"), "application/json;charset=utf-16")
    assert code(result) == "INVALID_PARAMETER"
    assert "charset 'utf-16' is not supported" in result.answer["biz_error_msg"]


@pytest.mark.parametrize(
    "body",
    [
        b'{"trade_info":"\\ud800"}',
        b'{"\\udfff":1}',
        b'{"item_info":{"item_name":"a\\udbffb"}}',
        b"{}" + b"\xed\xa0\x80",  # a surrogate encoded as UTF-8 bytes
    ],
)
def test_lone_surrogates(send: Callable[..., DispatchResult], body: bytes) -> None:
    assert code(send(body)) == "INVALID_JSON"


def test_a_number_too_long_to_read(send: Callable[..., DispatchResult], seed_003_body: bytes) -> None:
    body = seed_003_body.replace(b'"real_amount":100', b'"real_amount":' + b"9" * 5000)
    assert code(send(body)) == "INVALID_JSON"


def test_a_bom(send: Callable[..., DispatchResult], seed_003_body: bytes) -> None:
    assert code(send(b"\xef\xbb\xbf" + seed_003_body)) == "INVALID_JSON"


# ------------------------------------------------------------------------------------------ INVALID_PARAMETER
KEY_CASES = {
    "empty store_id": ({"shop_info__store_id": ""}, "shop_info.store_id: must not be empty or blank"),
    "empty item_id": ({"item_info__item_id": ""}, "item_info.item_id: must not be empty or blank"),
    "blank item_id": ({"item_info__item_id": "\u3000"}, "item_info.item_id: must not be empty or blank"),
    "whitespace order no": (
        {"fulfillment_info__fulfillment_order_no": " \t\n "},
        "fulfillment_info.fulfillment_order_no: must not be empty or blank",
    ),
    "empty order no": (
        {"fulfillment_info__fulfillment_order_no": ""},
        "fulfillment_info.fulfillment_order_no: must not be empty or blank",
    ),
    "padded store_id": ({"shop_info__store_id": " 123456789"}, "must not start or end with whitespace"),
    "control in item_id": ({"item_info__item_id": "1234\x005"}, "must not contain control or format"),
    "invisible in order no": (
        {"fulfillment_info__fulfillment_order_no": "12345\u200b"},
        "must not contain control or format",
    ),
    # DynamoDB: 2048 bytes for a partition key (orders: fulfillment_order_no; inventory: store_id), 1024 for a
    # sort key (inventory: item_id). 683 x 3 bytes = 2049 bytes; 1025 ASCII bytes.
    "order no over the hash key limit": (
        {"fulfillment_info__fulfillment_order_no": "中" * 683},
        "fulfillment_info.fulfillment_order_no: must be at most 128 characters, got 683",
    ),
    "store_id over the hash key limit": (
        {"shop_info__store_id": "1" * 2049},
        "shop_info.store_id: must be at most 128 characters, got 2049",
    ),
    "item_id over the range key limit": (
        {"item_info__item_id": "a" * 1025},
        "item_info.item_id: must be at most 128 characters, got 1025",
    ),
    "store_id as a huge number": ({"shop_info__store_id": 10**300}, "shop_info.store_id: must be at most 128"),
    "129 characters": ({"item_info__item_id": "9" * 129}, "must be at most 128 characters, got 129"),
}


@pytest.mark.parametrize("case", list(KEY_CASES))
def test_keys_that_dynamodb_could_not_store(
    send: Callable[..., DispatchResult], seed_003_body: bytes, case: str
) -> None:
    changes, fragment = KEY_CASES[case]
    result = send(with_fields(seed_003_body, **changes))
    assert code(result) == "INVALID_PARAMETER"
    assert result.answer["success"] is False
    assert fragment in result.answer["biz_error_msg"]


def test_the_longest_key_allowed_is_accepted(seed_003_body: bytes, monkeypatch: pytest.MonkeyPatch) -> None:
    service = import_fulfillment_service()
    monkeypatch.setattr(service.logger, "set_correlation_id", lambda value: None)
    memory = MemoryStore()
    dispatcher = QimenDispatcher(SECRET, clock=frozen)
    dispatcher.register(METHOD, FulfillmentCreateRequest, service.FulfillmentCreate(memory, clock=frozen))
    body = with_fields(
        seed_003_body,
        fulfillment_info__fulfillment_order_no="中" * 128,  # 384 bytes
        shop_info__store_id="S" * 128,
        item_info__item_id="I" * 128,
    )
    result = dispatcher.dispatch(signed_query(body, SECRET, clock=frozen), {}, body)
    assert result.answer["biz_result"] == "success"


# ---------------------------------------------------------------------------------------- the real handler
def handler_event(body: str, *, base64: bool, query: str) -> dict[str, Any]:
    event = http_api_event(
        method="POST",
        path="/qimen",
        raw_query=query,
        headers={"content-type": "application/json;charset=utf-8"},
        body=b"{}",
        route_key="POST /qimen",
    )
    event["body"], event["isBase64Encoded"] = body, base64
    return event


def invoke(module: ModuleType, event: dict[str, Any]) -> dict[str, Any]:
    result = module.lambda_handler(event, lambda_context("QimenCallbackFunction", 6))
    assert result["statusCode"] == 200
    answer: dict[str, Any] = json.loads(result["body"])
    return answer


def test_a_body_flagged_base64_that_is_not_is_invalid_json(
    handler_module: ModuleType,  # noqa: F811
    store: MemoryStore,  # noqa: F811
) -> None:
    secret = LOCAL_DEFAULTS[ENV.QIMEN_APP_SECRET]
    answer = invoke(handler_module, handler_event("not base64 at all!", base64=True, query=signed_query(b"", secret)))
    assert answer == {
        "success": False,
        "biz_result": "fail",
        "biz_error_code": "INVALID_JSON",
        "biz_error_msg": "body: the body is flagged base64 but is not valid base64",
    }


@pytest.mark.parametrize(
    "body",
    [
        DEEP[0],
        "{}".encode("utf-32"),
        b'{"trade_info":"\\ud800"}',
        b'{"fulfillment_info":{"fulfillment_order_no":"  "}}',
    ],
    ids=["deep", "utf-32", "surrogate", "blank-key"],
)
def test_the_handler_answers_bad_input_as_the_callers_problem(
    handler_module: ModuleType,  # noqa: F811
    store: MemoryStore,  # noqa: F811
    body: bytes,
    seed_003_body: bytes,
) -> None:
    import base64

    if body.startswith(b'{"fulfillment_info"'):
        body = with_fields(seed_003_body, fulfillment_info__fulfillment_order_no="  ")
    secret = LOCAL_DEFAULTS[ENV.QIMEN_APP_SECRET]
    event = handler_event(base64.b64encode(body).decode(), base64=True, query=signed_query(body, secret))
    answer = invoke(handler_module, event)
    assert answer["biz_error_code"] in ("INVALID_JSON", "INVALID_PARAMETER"), answer
    assert store.orders == {}
