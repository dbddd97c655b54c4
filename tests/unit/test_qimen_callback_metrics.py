"""The Qimen callback handler counts each dispatch outcome with exactly the metrics it counted before outcomes
existed. The handler's table is compared with a table written out here, then ``lambda_handler`` is driven with the
committed sample events over an in-memory store (no AWS) and the names are read back from the EMF document
Powertools prints.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from types import ModuleType
from typing import Any

import pytest

from bridge_local.apigw import lambda_context
from bridge_local.qimen_client import signed_query
from bridge_local.stack import LOCAL_ENVIRONMENT, PROJECT_ROOT
from bridge_local.template import load_handler
from taobao_bridge.models.fulfillment import METHOD, FulfillmentCreateRequest
from taobao_bridge.qimen import QimenDispatcher, QimenOutcome
from taobao_bridge.settings import ENV, LOCAL_DEFAULTS
from tests.conftest import with_order_no
from tests.unit.test_qimen_outcomes import MemoryStore, import_fulfillment_service

EVENTS = PROJECT_ROOT / "events"
SECRET = LOCAL_DEFAULTS[ENV.QIMEN_APP_SECRET]
ORDER_NO = "1234567890123456789"  # seed 003's, in the committed events


@pytest.fixture(scope="module")
def handler_module() -> Iterator[ModuleType]:
    """functions/qimen_callback/app.py as the local stack loads it (one module per function folder)."""
    with pytest.MonkeyPatch.context() as env:
        for name in ("POWERTOOLS_SERVICE_NAME", "POWERTOOLS_TRACE_DISABLED"):
            env.setenv(name, LOCAL_ENVIRONMENT[name])
        import_fulfillment_service()
        handler = load_handler(PROJECT_ROOT, "functions/qimen_callback/", "app.lambda_handler")
    yield sys.modules[handler.__module__]


def test_every_outcome_has_exactly_its_metrics(handler_module: ModuleType) -> None:
    fulfillment = import_fulfillment_service().FulfillmentOutcome
    assert handler_module.METRICS == {
        QimenOutcome.SIGNATURE_REJECTED: ("QimenSignatureRejected",),
        QimenOutcome.INVALID: ("QimenCallRejected",),
        QimenOutcome.REJECTED: ("QimenCallRejected",),
        QimenOutcome.CONFIGURATION_FAILED: ("QimenConfigurationError", "QimenSystemError", "QimenCallRejected"),
        QimenOutcome.UNEXPECTED_FAILURE: ("QimenUnexpectedError", "QimenSystemError", "QimenCallRejected"),
        fulfillment.CREATED: ("FulfillmentOrderCreated",),
        fulfillment.REPLAYED: ("FulfillmentOrderReplayed",),
        fulfillment.CONFLICT: ("FulfillmentOrderConflict", "QimenCallRejected"),
        fulfillment.NO_INVENTORY: ("FulfillmentNoInventory", "QimenCallRejected"),
        fulfillment.STORAGE_FAILED: ("FulfillmentStorageFailed", "QimenSystemError", "QimenCallRejected"),
    }
    assert set(handler_module.METRICS) == set(QimenOutcome) | set(fulfillment)


@pytest.fixture
def store(handler_module: ModuleType, monkeypatch: pytest.MonkeyPatch) -> MemoryStore:
    """The store behind the handler's dispatcher for one test."""
    memory = MemoryStore()
    service = import_fulfillment_service()

    def build() -> QimenDispatcher:
        # The committed events carry a fixed timestamp: the window check is off, as in test_events.
        dispatcher = QimenDispatcher(SECRET, timestamp_window_s=0)
        dispatcher.register(METHOD, FulfillmentCreateRequest, service.FulfillmentCreate(memory))
        return dispatcher

    monkeypatch.setattr(handler_module, "build_qimen_dispatcher", build)
    return memory


def event(file_name: str = "qimen_fulfillment_create.json", body: bytes | None = None, method: str = METHOD) -> dict:
    """A committed sample event; with another body or method, signed anew with the local secret."""
    loaded: dict[str, Any] = json.loads((EVENTS / file_name).read_text(encoding="utf-8"))
    if body is not None or method != METHOD:
        body = body if body is not None else loaded["body"].encode("utf-8")
        loaded["body"] = body.decode("utf-8")
        loaded["rawQueryString"] = signed_query(body, SECRET, method=method)
    return loaded


def invoke(module: ModuleType, capsys: pytest.CaptureFixture[str], event: dict) -> tuple[dict, list[str]]:
    """The answer and the metric names of one invocation, the names read from the EMF line on stdout."""
    module.metrics.clear_metrics()  # metric sets are shared by every Metrics instance in the process
    capsys.readouterr()
    result = module.lambda_handler(event, lambda_context("QimenCallbackFunction", 6))
    names: list[str] = []
    for line in capsys.readouterr().out.splitlines():
        document = json.loads(line) if line.startswith("{") else {}
        for directive in document.get("_aws", {}).get("CloudWatchMetrics", []):
            names += [metric["Name"] for metric in directive["Metrics"]]
    assert result["statusCode"] == 200
    return json.loads(result["body"]), names


def test_signature_rejected(handler_module: ModuleType, store: MemoryStore, capsys: pytest.CaptureFixture) -> None:
    answer, names = invoke(handler_module, capsys, event("qimen_bad_signature.json"))
    assert answer["biz_error_code"] == "sign-check-failure"
    assert names == ["QimenSignatureRejected"]


def test_invalid(handler_module: ModuleType, store: MemoryStore, capsys: pytest.CaptureFixture) -> None:
    answer, names = invoke(handler_module, capsys, event("qimen_malformed_json.json"))
    assert answer["biz_error_code"] == "INVALID_JSON"
    assert names == ["QimenCallRejected"]


def test_rejected(handler_module: ModuleType, store: MemoryStore, capsys: pytest.CaptureFixture) -> None:
    answer, names = invoke(handler_module, capsys, event(method="qimen.taobao.life.fulfillment.cancel"))
    assert answer["biz_error_code"] == "UNKNOWN_METHOD"
    assert names == ["QimenCallRejected"]


def test_created_then_replayed(handler_module: ModuleType, store: MemoryStore, capsys: pytest.CaptureFixture) -> None:
    first, names = invoke(handler_module, capsys, event())
    assert first["biz_result"] == "success" and names == ["FulfillmentOrderCreated"]
    again, names = invoke(handler_module, capsys, event())
    assert again == first and names == ["FulfillmentOrderReplayed"]


def test_conflict(
    handler_module: ModuleType, store: MemoryStore, capsys: pytest.CaptureFixture, seed_003_body: bytes
) -> None:
    invoke(handler_module, capsys, event())
    other = with_order_no(seed_003_body, ORDER_NO, trade_info={"real_amount": 1})
    answer, names = invoke(handler_module, capsys, event(body=other))
    assert answer["biz_error_code"] == "ORDER_CONFLICT"
    assert names == ["FulfillmentOrderConflict", "QimenCallRejected"]


def test_no_inventory(handler_module: ModuleType, store: MemoryStore, capsys: pytest.CaptureFixture) -> None:
    store.capacity[("123456789", "123456789012")] = 0
    answer, names = invoke(handler_module, capsys, event())
    assert answer["biz_error_code"] == "NO_INVENTORY"
    assert names == ["FulfillmentNoInventory", "QimenCallRejected"]


def test_storage_failed(handler_module: ModuleType, store: MemoryStore, capsys: pytest.CaptureFixture) -> None:
    store.broken = True
    answer, names = invoke(handler_module, capsys, event())
    assert answer["biz_error_code"] == "SYSTEM_ERROR"
    assert names == ["FulfillmentStorageFailed", "QimenSystemError", "QimenCallRejected"]


def test_unexpected_failure_is_answered_and_counted_as_a_system_error(
    handler_module: ModuleType, store: MemoryStore, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    def explode(order: Any) -> Any:
        raise RuntimeError("a bug")

    monkeypatch.setattr(store, "create", explode)
    answer, names = invoke(handler_module, capsys, event())
    assert answer == {
        "success": False,
        "biz_result": "fail",
        "biz_error_code": "SYSTEM_ERROR",
        "biz_error_msg": "internal error; retrying is safe",
    }
    assert names == ["QimenUnexpectedError", "QimenSystemError", "QimenCallRejected"]
