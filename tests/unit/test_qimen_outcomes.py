"""What the dispatcher answers and which outcome it reports, with ``FulfillmentCreate`` over an in-memory store.

Pure: no AWS, no HTTP. The dispatcher parses and validates the body itself, so a handler is never called with
a body that is not a JSON object or does not fit its model.
"""

from __future__ import annotations

import importlib
import json
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime
from enum import StrEnum
from types import ModuleType
from typing import Any

import pytest
from pydantic import BaseModel

from bridge_local.qimen_client import signed_query
from bridge_local.stack import LOCAL_ENVIRONMENT
from taobao_bridge import qimen
from taobao_bridge.errors import StorageError
from taobao_bridge.fulfillment_store import Conflict, Created, CreateOutcome, NewOrder, NoInventory, Replayed
from taobao_bridge.jsonutil import dumps
from taobao_bridge.models.fulfillment import METHOD, FulfillmentCreateRequest
from taobao_bridge.qimen import (
    SIGN_CHECK_FAILURE,
    DispatchResult,
    Handled,
    QimenCall,
    QimenDispatcher,
    QimenOutcome,
)
from tests.conftest import with_order_no

SECRET = "secret"
NOW = datetime(2026, 11, 23, 2, 0, 0, tzinfo=UTC)  # 10:00:00 UTC+8


def frozen() -> datetime:
    return NOW


# --------------------------------------------------------------------------- parsing and validation, any method
class Line(BaseModel):
    qty: int


class Order(BaseModel):
    order_no: str
    lines: list[Line]


class Done(StrEnum):
    DONE = "done"


def recording_dispatcher(calls: list[tuple[QimenCall, Order]]) -> QimenDispatcher:
    d = QimenDispatcher(SECRET, clock=frozen)

    def handler(call: QimenCall, order: Order) -> Handled:
        calls.append((call, order))
        return Handled(partner_order_id="P1", outcome=Done.DONE)

    d.register(METHOD, Order, handler)
    return d


def send(d: QimenDispatcher, body: bytes) -> DispatchResult:
    return d.dispatch(signed_query(body, SECRET, clock=frozen), {}, body)


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        (b'{"order_no":"1","lines":[', "body is not valid JSON: "),
        (b"\xff\xfe{}", "body: not valid UTF-8 (byte 0)"),
        ("{}".encode("utf-16"), "body: not valid UTF-8 (byte 0)"),
        (b'{"order_no":"\\ud800"}', "body: a string holds a lone surrogate"),
        (b"[" * 10_000 + b"]" * 10_000, "body: JSON nested deeper than 32 levels"),
        (b"[1]", "body must be a JSON object"),
        (b'"text"', "body must be a JSON object"),
        (b'{"order_no":"1","lines":[],"order_no":"2"}', "body: duplicate JSON key 'order_no'"),
    ],
)
def test_body_that_is_not_a_json_object_never_reaches_the_handler(body: bytes, fragment: str) -> None:
    calls: list[tuple[QimenCall, Order]] = []
    result = send(recording_dispatcher(calls), body)
    assert result.answer == {
        "success": False,
        "biz_result": "fail",
        "biz_error_code": "INVALID_JSON",
        "biz_error_msg": result.answer["biz_error_msg"],
    }
    assert result.answer["biz_error_msg"].startswith(fragment)
    assert result.outcome is QimenOutcome.INVALID
    assert calls == []


def test_body_that_fails_the_model_names_the_field_path(monkeypatch: pytest.MonkeyPatch) -> None:
    logged: list[tuple[str, dict[str, Any]]] = []
    monkeypatch.setattr(qimen.logger, "info", lambda msg, *args, extra=None, **kw: logged.append((msg, extra)))
    calls: list[tuple[QimenCall, Order]] = []
    body = b'{"order_no":"1","lines":[{"qty":1},{"qty":"x"}],"name":"Zhang San"}'
    result = send(recording_dispatcher(calls), body)
    assert result.answer == {
        "success": False,
        "biz_result": "fail",
        "biz_error_code": "INVALID_PARAMETER",
        "biz_error_msg": "lines[1].qty: Input should be a valid integer, unable to parse string as an integer",
    }
    assert result.outcome is QimenOutcome.INVALID
    assert calls == []
    # The rejected payload is logged by allow-list (none registered here: every value masked), with the field
    # paths and rule types that failed, never the messages (they may quote the value).
    invalid = [extra for msg, extra in logged if msg == "Qimen call invalid"]
    assert invalid == [
        {
            "method": METHOD,
            "problems": ["lines[1].qty: int_parsing"],
            "payload": {
                "order_no": "<1 chars>",
                "lines": "<list, 2 items>",
                "name": "<9 chars>",
            },
        }
    ]


def test_valid_body_reaches_the_handler_as_call_and_model() -> None:
    calls: list[tuple[QimenCall, Order]] = []
    body = b'{"order_no":"7","lines":[{"qty":2}]}'
    result = send(recording_dispatcher(calls), body)
    assert result == DispatchResult({"success": True, "biz_result": "success", "partner_order_id": "P1"}, Done.DONE)
    ((call, order),) = calls
    assert call.body == body and call.payload == json.loads(body)
    assert order == Order(order_no="7", lines=[Line(qty=2)])


# ------------------------------------------------------------------------------ FulfillmentCreate outcomes
def import_fulfillment_service() -> ModuleType:
    """taobao_bridge.fulfillment_service, imported (unless something already has) under the stack's service name.

    Powertools names a child logger after POWERTOOLS_SERVICE_NAME when its module is first imported, and only a
    parent logger of that name lets it set a correlation id. Imported at collection time without it, the module
    would break the local stack's callback when the integration tests start it later in the same process."""
    with pytest.MonkeyPatch.context() as env:
        env.setenv("POWERTOOLS_SERVICE_NAME", LOCAL_ENVIRONMENT["POWERTOOLS_SERVICE_NAME"])
        return importlib.import_module("taobao_bridge.fulfillment_service")


@pytest.fixture
def correlation_ids() -> list[str]:
    return []


@pytest.fixture
def service(monkeypatch: pytest.MonkeyPatch, correlation_ids: list[str]) -> ModuleType:
    module = import_fulfillment_service()
    # No Lambda handler here, so no parent logger to carry a correlation id: record it instead.
    monkeypatch.setattr(module.logger, "set_correlation_id", correlation_ids.append)
    return module


class MemoryStore:
    """FulfillmentStore.create's rules in a dict: same number + same payload replays the stored answer, same
    number + other payload conflicts, a tracked item without enough capacity refuses, ``broken`` fails."""

    def __init__(
        self, capacity: dict[tuple[str, str], int] | None = None, broken: bool = False, maybe_applied: bool = False
    ) -> None:
        self.orders: dict[str, NewOrder] = {}
        self.capacity = dict(capacity or {})
        self.broken = broken
        self.maybe_applied = maybe_applied  # broken by a timeout after sending rather than a refusal

    def create(self, order: NewOrder) -> CreateOutcome:
        if self.broken:
            raise StorageError(
                "storing fulfillment order failed: ResourceNotFoundException", maybe_applied=self.maybe_applied
            )
        first = self.orders.get(order.fulfillment_order_no)
        if first is not None:
            if first.payload_sha256 == order.payload_sha256:
                return Replayed(answer_json=first.answer_json)
            return Conflict(first_received_at=first.received_at.isoformat())
        key = (order.store_id, order.item_id)
        if key in self.capacity:
            if self.capacity[key] < order.quantity:
                return NoInventory(available=self.capacity[key])
            self.capacity[key] -= order.quantity
        self.orders[order.fulfillment_order_no] = order
        return Created(partner_order_id=order.partner_order_id)


def fulfillment(service: ModuleType, store: MemoryStore) -> Callable[[bytes], DispatchResult]:
    d = QimenDispatcher(SECRET, clock=frozen)
    d.register(METHOD, FulfillmentCreateRequest, service.FulfillmentCreate(store, clock=frozen))
    return lambda body: send(d, body)


def test_created(service: ModuleType, seed_003_body: bytes, correlation_ids: list[str]) -> None:
    store = MemoryStore()
    result = fulfillment(service, store)(seed_003_body)
    assert result.outcome is service.FulfillmentOutcome.CREATED
    assert result.answer == {
        "success": True,
        "biz_result": "success",
        "partner_order_id": result.answer["partner_order_id"],
    }
    assert result.answer["partner_order_id"].startswith("20261123100000")
    stored = store.orders["1234567890123456789"]
    assert stored.answer_json == dumps(result.answer)
    assert stored.payload_json == seed_003_body.decode("utf-8")
    assert correlation_ids == ["1234567890123456789"]


def test_replayed_returns_the_first_answer_as_stored(service: ModuleType, seed_003_body: bytes) -> None:
    send_to = fulfillment(service, MemoryStore())
    first = send_to(seed_003_body)
    # A retry may be re-serialised with other whitespace; it is still the same payload.
    pretty = json.dumps(json.loads(seed_003_body), ensure_ascii=False, indent=2).encode("utf-8")
    again = send_to(pretty)
    assert again.outcome is service.FulfillmentOutcome.REPLAYED
    assert dumps(again.answer) == dumps(first.answer)


def test_replay_answer_is_the_stored_text_not_a_rebuilt_one(service: ModuleType, seed_003_body: bytes) -> None:
    store = MemoryStore()
    send_to = fulfillment(service, store)
    send_to(seed_003_body)
    stored = store.orders["1234567890123456789"]
    store.orders[stored.fulfillment_order_no] = replace(stored, answer_json='{"as":"stored"}')
    assert send_to(seed_003_body) == DispatchResult({"as": "stored"}, service.FulfillmentOutcome.REPLAYED)


def test_conflict(service: ModuleType, seed_003_body: bytes) -> None:
    send_to = fulfillment(service, MemoryStore())
    send_to(seed_003_body)
    other = with_order_no(seed_003_body, "1234567890123456789", trade_info={"real_amount": 1})
    result = send_to(other)
    assert result.outcome is service.FulfillmentOutcome.CONFLICT
    assert result.answer == {
        "success": True,
        "biz_result": "fail",
        "biz_error_code": "ORDER_CONFLICT",
        "biz_error_msg": "fulfillment_info.fulfillment_order_no '1234567890123456789' was already received at "
        "2026-11-23T02:00:00+00:00 with a different payload",
    }


def test_no_inventory(service: ModuleType, seed_003_body: bytes) -> None:
    quantity = json.loads(seed_003_body)["fulfillment_info"]["quantity"]
    store = MemoryStore(capacity={("123456789", "123456789012"): quantity - 1})
    result = fulfillment(service, store)(seed_003_body)
    assert result.outcome is service.FulfillmentOutcome.NO_INVENTORY
    assert result.answer == {
        "success": True,
        "biz_result": "fail",
        "biz_error_code": "NO_INVENTORY",
        "biz_error_msg": f"商品库存不足: store 123456789 item 123456789012 has {quantity - 1} left, "
        f"{quantity} requested",
    }
    assert store.orders == {}


def test_storage_failed(service: ModuleType, seed_003_body: bytes) -> None:
    result = fulfillment(service, MemoryStore(broken=True))(seed_003_body)
    assert result.outcome is service.FulfillmentOutcome.STORAGE_FAILED
    assert result.answer == {
        "success": False,
        "biz_result": "fail",
        "biz_error_code": "SYSTEM_ERROR",
        "biz_error_msg": "the order could not be stored; nothing was written, please retry",
    }


def test_storage_timed_out_does_not_claim_nothing_was_written(service: ModuleType, seed_003_body: bytes) -> None:
    result = fulfillment(service, MemoryStore(broken=True, maybe_applied=True))(seed_003_body)
    assert result.outcome is service.FulfillmentOutcome.STORAGE_FAILED
    assert result.answer["biz_error_code"] == "SYSTEM_ERROR"
    assert result.answer["biz_error_msg"] == (
        "the order may or may not have been stored; please retry: a repeated call gets the first answer"
    )


def test_signature_rejected(service: ModuleType, seed_003_body: bytes) -> None:
    store = MemoryStore()
    d = QimenDispatcher(SECRET, clock=frozen)
    d.register(METHOD, FulfillmentCreateRequest, service.FulfillmentCreate(store, clock=frozen))
    result = d.dispatch(signed_query(seed_003_body, "not-the-secret", clock=frozen), {}, seed_003_body)
    assert result == DispatchResult(SIGN_CHECK_FAILURE, QimenOutcome.SIGNATURE_REJECTED)
    assert store.orders == {}


def test_invalid_fulfillment_order(service: ModuleType, seed_003_body: bytes) -> None:
    store = MemoryStore()
    payload = json.loads(seed_003_body)
    del payload["trade_info"]
    result = fulfillment(service, store)(dumps(payload).encode("utf-8"))
    assert result.outcome is QimenOutcome.INVALID
    assert result.answer["biz_error_code"] == "INVALID_PARAMETER"
    assert result.answer["biz_error_msg"].startswith("trade_info: Field required")
    assert store.orders == {}
