"""Qimen outages alarm, and the callback answers with JSON inside its timeout even when DynamoDB is slow.

Every failure is HTTP 200 (the platform reads nothing else), so Lambda's Errors metric never sees one: the
handler counts SYSTEM_ERROR answers (``QimenSystemError``), an unreadable or missing secret
(``QimenConfigurationError``) and storage failures (``FulfillmentStorageFailed``), and template.yaml alarms on
each like on ``RecordsDead``.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from types import ModuleType
from typing import Any

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError, ReadTimeoutError

from bridge_local.stack import PROJECT_ROOT
from bridge_local.template import load_template
from taobao_bridge import callback, dynamo
from taobao_bridge.errors import StorageError
from taobao_bridge.fulfillment_store import (
    CONNECT_TIMEOUT_S,
    CREATE_BUDGET_S,
    READ_TIMEOUT_S,
    Conflict,
    Created,
    FulfillmentStore,
    NewOrder,
    TooLarge,
    store_client,
)
from taobao_bridge.settings import ENV
from tests.unit.test_qimen_callback_metrics import event, handler_module, invoke  # noqa: F401 - fixture
from tests.unit.test_qimen_logs import Everything, all_text, logs  # noqa: F401 - fixture

SYSTEM_ERROR_METRICS = ["QimenSystemError", "QimenCallRejected"]


@pytest.fixture
def real_assembly(handler_module: ModuleType, monkeypatch: pytest.MonkeyPatch) -> ModuleType:  # noqa: F811
    """The handler with callback.build_qimen_dispatcher, settings from the environment, a fresh client cache."""
    monkeypatch.setattr(handler_module, "build_qimen_dispatcher", callback.build_qimen_dispatcher)
    monkeypatch.setattr(dynamo, "_clients", {})
    monkeypatch.setenv(ENV.QIMEN_TIMESTAMP_WINDOW_S, "0")  # the committed events carry a fixed timestamp
    for name in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_SECRETSMANAGER", "AWS_ENDPOINT_URL_DYNAMODB"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "x")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "x")
    return handler_module


# ----------------------------------------------------------------------------------- the secret and settings
SECRET_CASES = {
    "missing secret": None,
    "not JSON": "qimen_app_secret=abc",
    "not an object": '["abc"]',
    "no qimen_app_secret": '{"top_app_key":"k"}',
}


@pytest.mark.parametrize("case", list(SECRET_CASES))
def test_an_unreadable_or_missing_secret_is_answered_and_alarmed(
    real_assembly: ModuleType, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], case: str
) -> None:
    from moto import mock_aws

    secret_id = f"taobao-bridge/alarms-{case.replace(' ', '-')}-{time.monotonic_ns()}"  # no cache hit
    monkeypatch.setenv(ENV.BRIDGE_ENV, "aws")
    monkeypatch.setenv(ENV.BRIDGE_SECRET_ID, secret_id)
    with mock_aws():
        if SECRET_CASES[case] is not None:
            import boto3

            boto3.client("secretsmanager").create_secret(Name=secret_id, SecretString=SECRET_CASES[case])
        answer, names = invoke(real_assembly, capsys, event())
    assert answer == {
        "success": False,
        "biz_result": "fail",
        "biz_error_code": "SYSTEM_ERROR",
        "biz_error_msg": "the service is not available; retrying is safe",
    }
    assert names == ["QimenConfigurationError", *SYSTEM_ERROR_METRICS]


def test_the_secret_value_never_reaches_the_log(
    real_assembly: ModuleType,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    logs: Everything,  # noqa: F811
) -> None:
    from moto import mock_aws

    secret_id = f"taobao-bridge/alarms-leak-{time.monotonic_ns()}"
    monkeypatch.setenv(ENV.BRIDGE_ENV, "aws")
    monkeypatch.setenv(ENV.BRIDGE_SECRET_ID, secret_id)
    with mock_aws():
        import boto3

        boto3.client("secretsmanager").create_secret(Name=secret_id, SecretString="very-secret-qimen-value{")
        answer, _ = invoke(real_assembly, capsys, event())
    assert answer["biz_error_code"] == "SYSTEM_ERROR"
    logged = all_text(logs, capsys)
    assert "Qimen callback cannot run" in logged and secret_id in logged  # the operator learns which secret
    assert "very-secret-qimen-value" not in logged


# ------------------------------------------------------------------------------------------------- storage
@pytest.fixture
def black_hole() -> Iterator[str]:
    """An endpoint that accepts connections and never answers: DynamoDB as slow as it gets."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.1)
        while not stop.is_set():
            try:
                held.append(server.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.getsockname()[1]}"
    stop.set()
    thread.join()
    for connection in held:
        connection.close()
    server.close()


def test_slow_dynamodb_is_answered_with_json_inside_the_budget(
    real_assembly: ModuleType,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    black_hole: str,
) -> None:
    monkeypatch.setenv(ENV.BRIDGE_ENV, "local")
    monkeypatch.delenv(ENV.BRIDGE_SECRET_ID, raising=False)
    monkeypatch.setenv("AWS_ENDPOINT_URL_DYNAMODB", black_hole)
    started = time.monotonic()
    answer, names = invoke(real_assembly, capsys, event())
    elapsed = time.monotonic() - started
    assert elapsed < CREATE_BUDGET_S + 1.0, elapsed
    assert answer["biz_error_code"] == "SYSTEM_ERROR"
    # A read that timed out may have been applied: the answer does not claim otherwise.
    assert answer["biz_error_msg"].startswith("the order may or may not have been stored; please retry")
    assert names == ["FulfillmentStorageFailed", *SYSTEM_ERROR_METRICS]


def test_unreachable_dynamodb_is_answered_quickly(
    real_assembly: ModuleType, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()  # nothing listens there: connections are refused at once
    monkeypatch.setenv(ENV.BRIDGE_ENV, "local")
    monkeypatch.delenv(ENV.BRIDGE_SECRET_ID, raising=False)
    monkeypatch.setenv("AWS_ENDPOINT_URL_DYNAMODB", f"http://127.0.0.1:{port}")
    answer, names = invoke(real_assembly, capsys, event())
    assert answer["biz_error_msg"] == "the order could not be stored; nothing was written, please retry"
    assert names == ["FulfillmentStorageFailed", *SYSTEM_ERROR_METRICS]


# --------------------------------------------------------------------------------- the store's time budget
class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


class FakeClient:
    """transact_write_items raising (or answering) from a script, each call costing ``cost_s`` of the clock."""

    def __init__(self, clock: Clock, script: list[Exception | None], cost_s: float = 0.01) -> None:
        self.clock, self.script, self.cost_s = clock, list(script), cost_s
        self.calls = 0

    def transact_write_items(self, **_: Any) -> dict[str, Any]:
        self.calls += 1
        self.clock.now += self.cost_s
        outcome = self.script.pop(0) if self.script else None
        if outcome is not None:
            raise outcome
        return {}


def client_error(code: str, status: int = 400, reasons: list[dict[str, Any]] | None = None) -> ClientError:
    response: dict[str, Any] = {
        "Error": {"Code": code, "Message": code},
        "ResponseMetadata": {"HTTPStatusCode": status},
    }
    if reasons is not None:
        response["CancellationReasons"] = reasons
    return ClientError(response, "TransactWriteItems")  # type: ignore[arg-type]


def new_order(payload: str = "{}") -> NewOrder:
    return NewOrder(
        fulfillment_order_no="1234567890123456789",
        payload_sha256="0" * 64,
        payload_json=payload,
        partner_order_id="P1",
        answer_json="{}",
        store_id="S1",
        item_id="I1",
        quantity=1,
        received_at=datetime(2026, 11, 23, tzinfo=UTC),
    )


def store_with(script: list[Exception | None], cost_s: float = 0.01) -> tuple[FulfillmentStore, FakeClient, Clock]:
    clock = Clock()
    client = FakeClient(clock, script, cost_s)
    store = FulfillmentStore("Orders", "Inventory", client=client, monotonic=clock, sleep=clock.sleep)
    return store, client, clock


def test_no_attempt_starts_that_could_end_after_the_budget() -> None:
    timeout = ReadTimeoutError(endpoint_url="http://dynamodb")
    store, client, clock = store_with([timeout] * 10, cost_s=CONNECT_TIMEOUT_S + READ_TIMEOUT_S)
    with pytest.raises(StorageError) as raised:
        store.create(new_order())
    assert clock.now <= CREATE_BUDGET_S
    assert client.calls == 1  # a second full attempt would end past 3 s
    assert raised.value.maybe_applied


def test_fast_transient_failures_are_retried_within_the_budget() -> None:
    throttled = client_error("ThrottlingException")
    store, client, clock = store_with([throttled, throttled, None])
    assert store.create(new_order()) == Created("P1")
    assert client.calls == 3 and clock.now < 1

    store, client, clock = store_with([EndpointConnectionError(endpoint_url="x")] * 10)
    with pytest.raises(StorageError) as raised:
        store.create(new_order())
    assert client.calls == 4 and not raised.value.maybe_applied


def test_conflicts_are_retried_and_refusals_are_not() -> None:
    conflict = client_error("TransactionCanceledException", reasons=[{"Code": "None"}, {"Code": "TransactionConflict"}])
    store, client, _ = store_with([conflict, None])
    assert store.create(new_order()) == Created("P1")
    assert client.calls == 2

    store, client, _ = store_with([client_error("ValidationException")])
    with pytest.raises(StorageError, match="ValidationException") as raised:
        store.create(new_order())
    assert client.calls == 1 and not raised.value.maybe_applied


def test_a_timed_out_write_that_landed_is_found_on_the_retry() -> None:
    first = {"fulfillment_order_no": {"S": "1234567890123456789"}, "payload_sha256": {"S": "0" * 64}}
    landed = client_error(
        "TransactionCanceledException",
        reasons=[{"Code": "ConditionalCheckFailed", "Item": {**first, "answer": {"S": '{"as":"first"}'}}}, {}],
    )
    store, _, _ = store_with([ReadTimeoutError(endpoint_url="x"), landed])
    outcome = store.create(new_order())
    assert not isinstance(outcome, Conflict)
    assert outcome.answer_json == '{"as":"first"}'  # type: ignore[union-attr]


def test_an_order_too_large_for_dynamodb_is_never_sent() -> None:
    store, client, _ = store_with([])
    outcome = store.create(new_order(payload="x" * (400 * 1024)))
    assert isinstance(outcome, TooLarge) and outcome.what == "order" and outcome.limit == 400 * 1024
    assert client.calls == 0


# ---------------------------------------------------------------------------------- configuration, template
TEMPLATE = load_template(PROJECT_ROOT / "template.yaml")


def test_the_store_client_fits_the_function_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(dynamo, "_clients", {})
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    config = store_client().meta.config
    assert (config.connect_timeout, config.read_timeout) == (CONNECT_TIMEOUT_S, READ_TIMEOUT_S)
    assert config.retries["total_max_attempts"] == 1
    assert CONNECT_TIMEOUT_S + READ_TIMEOUT_S <= CREATE_BUDGET_S
    timeout = TEMPLATE["Resources"]["QimenCallbackFunction"]["Properties"]["Timeout"]
    assert CREATE_BUDGET_S + 2 <= timeout, "the store's budget must leave room for the rest of the invocation"


@pytest.mark.parametrize(
    ("alarm", "metric"),
    [
        ("QimenSystemErrorAlarm", "QimenSystemError"),
        ("QimenConfigurationErrorAlarm", "QimenConfigurationError"),
        ("FulfillmentStorageFailedAlarm", "FulfillmentStorageFailed"),
    ],
)
def test_each_qimen_failure_metric_has_an_alarm_shaped_like_records_dead(
    handler_module: ModuleType,  # noqa: F811
    alarm: str,
    metric: str,
) -> None:
    reference = dict(TEMPLATE["Resources"]["RecordsDeadAlarm"]["Properties"])
    properties = dict(TEMPLATE["Resources"][alarm]["Properties"])
    assert TEMPLATE["Resources"][alarm]["Type"] == "AWS::CloudWatch::Alarm"
    assert properties.pop("MetricName") == metric
    assert properties.pop("AlarmDescription")
    reference.pop("MetricName"), reference.pop("AlarmDescription")
    assert properties == reference
    assert any(metric in names for names in handler_module.METRICS.values()), "the handler must emit it"


def test_the_timestamp_window_parameter_defaults_to_ten_minutes() -> None:
    parameter = TEMPLATE["Parameters"]["QimenTimestampWindowSeconds"]
    assert parameter["Default"] == 600
    environment = TEMPLATE["Resources"]["QimenCallbackFunction"]["Properties"]["Environment"]["Variables"]
    assert environment["QIMEN_TIMESTAMP_WINDOW_S"] == {"Ref": "QimenTimestampWindowSeconds"}


def test_events_are_never_logged_even_when_the_environment_asks(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    logs: Everything,  # noqa: F811
) -> None:
    # POWERTOOLS_LOGGER_LOG_EVENT=true would log every event, and the body is an order with names and phones.
    from bridge_local.template import load_function_instance
    from tests.unit.test_qimen_outcomes import MemoryStore

    monkeypatch.setenv("POWERTOOLS_LOGGER_LOG_EVENT", "true")
    monkeypatch.setenv(ENV.BRIDGE_ENV, "local")
    monkeypatch.delenv(ENV.BRIDGE_SECRET_ID, raising=False)
    monkeypatch.setenv(ENV.QIMEN_TIMESTAMP_WINDOW_S, "0")
    monkeypatch.setattr(callback, "FulfillmentStore", lambda *args, **kwargs: MemoryStore())
    module, _ = load_function_instance(PROJECT_ROOT, "functions/qimen_callback/", "app.lambda_handler", "log-event")
    answer, _ = invoke(module, capsys, event())
    assert answer["biz_result"] == "success"
    logged = all_text(logs, capsys)
    assert "fulfillment order received" in logged
    for personal in ("张先生", "123456678901", "13911112222", "410881xxxxxxxxxxxxxx"):
        assert personal not in logged
