"""Fulfillment orders for merchant systems, end to end on the local stack: signed Qimen calls store orders, then
GET /v1/fulfillment-orders finds them by number and in received order with a cursor, and each new order's
FulfillmentOrderReceived event reaches the local event log (moto's EventBridge and CloudWatch Logs) once."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import pytest

from bridge_local.__main__ import main as bridge_local_main
from bridge_local.event_log import local_event_bus, read_events
from bridge_local.qimen_client import new_order_no, signed_query
from bridge_local.stack import PROJECT_ROOT
from bridge_local.template import TEMPLATE_PATH, load_template
from taobao_bridge.fulfillment_orders import SETTLE_LAG_ENV
from taobao_bridge.settings import ENV, LOCAL_DEFAULTS
from tests.conftest import with_order_no

pytestmark = pytest.mark.integration

SECRET = LOCAL_DEFAULTS[ENV.QIMEN_APP_SECRET]
# Values of the seed example's personal fields (tests/fixtures/seed_003_request.json).
PERSONAL_VALUES = ("张先生", "123456678901", "410881", "李先生", "13911112222", "xxxx街道", "杭州市")


@pytest.fixture
def no_settle_lag(monkeypatch: pytest.MonkeyPatch) -> None:
    # The function reads the lag per request from its environment, which the local stack shares with the tests.
    monkeypatch.setenv(SETTLE_LAG_ENV, "0")


def send(stack: Any, body: bytes) -> dict[str, Any]:
    response = httpx.post(
        f"{stack.url}/qimen?{signed_query(body, SECRET)}",
        content=body,
        headers={"content-type": "application/json;charset=utf-8"},
        timeout=10,
    )
    answer = response.json()
    assert answer["biz_result"] == "success", answer
    return dict(answer)


def new_order(stack: Any, seed: bytes) -> tuple[str, dict[str, Any]]:
    order_no = new_order_no()
    return order_no, send(stack, with_order_no(seed, order_no))


def get(stack: Any, path: str, **params: Any) -> httpx.Response:
    return httpx.get(f"{stack.url}{path}", params=params, timeout=10)


def walk(stack: Any, after: str | None, limit: int) -> tuple[list[str], str]:
    """Every order after ``after`` (None: from the start), page by page; the numbers and the last cursor."""
    seen: list[str] = []
    for _ in range(50):
        params: dict[str, Any] = {"limit": limit, **({"after": after} if after else {})}
        page = get(stack, "/v1/fulfillment-orders", **params)
        assert page.status_code == 200, page.text
        body = page.json()
        seen += [order["fulfillment_order_no"] for order in body["orders"]]
        after = body["next"]
        assert after
        if not body["has_more"]:
            return seen, after
    raise AssertionError("no end of the list after 50 pages")


def events_until(stack: Any, token: str | None, wanted: set[str], timeout_s: float = 20) -> list[str]:
    """Order numbers of the events logged after ``token``, read until every one of ``wanted`` is there."""
    numbers: list[str] = []
    deadline = time.monotonic() + timeout_s
    while True:
        events, token = read_events(stack.dynamodb_endpoint, token, log_group=stack.event_bus.log_group)
        numbers += [event["detail"]["fulfillment_order_no"] for event in events]
        if wanted <= set(numbers):
            return numbers
        assert time.monotonic() < deadline, f"events for {wanted - set(numbers)} never arrived; got {numbers}"
        time.sleep(0.2)


def test_an_order_is_found_by_number_with_personal_fields_only_when_asked(stack: Any, seed_003_body: bytes) -> None:
    order_no, answer = new_order(stack, seed_003_body)
    response = get(stack, f"/v1/fulfillment-orders/{order_no}")
    assert response.status_code == 200, response.text
    view = response.json()
    assert view["fulfillment_order_no"] == order_no and view["partner_order_id"] == answer["partner_order_id"]
    assert view["state"] == "CREATED" and view["received_at"].endswith("Z")
    assert (view["store_id"], view["item_id"], view["quantity"]) == ("123456789", "123456789012", 1)
    assert view["order"]["trade_info"]["tp_order_no"] == "1234567891234567890"
    assert view["order"]["fulfillment_info"]["time_option"]["start"] == "2022-07-10 12:00"
    assert not [value for value in PERSONAL_VALUES if value in response.text]

    personal = get(stack, f"/v1/fulfillment-orders/{order_no}", include="personal")
    assert personal.status_code == 200
    assert [value for value in PERSONAL_VALUES if value in personal.text] == list(PERSONAL_VALUES)
    assert personal.json()["order"] == json.loads(with_order_no(seed_003_body, order_no))

    missing = get(stack, f"/v1/fulfillment-orders/{new_order_no()}")
    assert missing.status_code == 404 and missing.json()["error"] == "not_found"
    refused = get(stack, f"/v1/fulfillment-orders/{order_no}", include="everything")
    assert refused.status_code == 400 and refused.json()["message"].startswith("include: ")
    # The literal route wins over the intake's GET /v1/{kind}/{id}, which still serves the record kinds.
    intake = get(stack, "/v1/writeoffs/no-such-record")
    assert intake.status_code == 404 and "writeoffs" in intake.json()["message"]


def test_the_cursor_pages_through_new_orders_in_received_order(
    stack: Any, seed_003_body: bytes, no_settle_lag: None
) -> None:
    _, cursor = walk(stack, None, 1000)  # from the start to now: what other tests stored
    sent = [new_order(stack, seed_003_body)[0] for _ in range(5)]
    seen, cursor = walk(stack, cursor, 2)
    assert seen == sent
    assert walk(stack, cursor, 2) == ([], cursor)  # nothing new: the same cursor back
    later = new_order(stack, seed_003_body)[0]
    assert walk(stack, cursor, 100)[0] == [later]

    bad = get(stack, "/v1/fulfillment-orders", after="not-a-cursor")
    assert bad.status_code == 400 and bad.json()["message"].startswith("after: ")
    too_many = get(stack, "/v1/fulfillment-orders", limit="1001")
    assert too_many.status_code == 400 and too_many.json()["field"] == "limit"


def test_orders_younger_than_the_settle_lag_are_not_listed_yet(
    stack: Any, seed_003_body: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(SETTLE_LAG_ENV, "0")
    _, cursor = walk(stack, None, 1000)
    monkeypatch.delenv(SETTLE_LAG_ENV)  # the documented 10 s
    order_no = new_order(stack, seed_003_body)[0]
    assert walk(stack, cursor, 100)[0] == []
    monkeypatch.setenv(SETTLE_LAG_ENV, "0")
    assert walk(stack, cursor, 100)[0] == [order_no]


def test_each_new_order_makes_one_event_and_a_replay_none(stack: Any, seed_003_body: bytes) -> None:
    _, token = read_events(stack.dynamodb_endpoint, None, log_group=stack.event_bus.log_group)
    first_no = new_order_no()
    first_body = with_order_no(seed_003_body, first_no)
    answer = send(stack, first_body)
    events_until(stack, token, {first_no})
    assert send(stack, first_body) == answer  # a replay: the first answer, nothing written
    # Records reach the function in stream order: once the next order's event is logged, a replay's would be too.
    second_no = new_order(stack, seed_003_body)[0]
    numbers = events_until(stack, token, {first_no, second_no})
    assert numbers.count(first_no) == 1 and numbers.count(second_no) == 1

    events, _ = read_events(stack.dynamodb_endpoint, None, log_group=stack.event_bus.log_group)
    (event,) = [e for e in events if e["detail"]["fulfillment_order_no"] == first_no]
    assert (event["source"], event["detail-type"]) == ("taobao-bridge", "FulfillmentOrderReceived")
    assert event["detail"]["partner_order_id"] == answer["partner_order_id"] and event["detail"]["stage"] == "dev"
    assert not [value for value in PERSONAL_VALUES if value in json.dumps(event, ensure_ascii=False)]


def test_events_tail_prints_the_events_and_one_line_for_an_error(
    stack: Any, seed_003_body: bytes, capsys: pytest.CaptureFixture[str]
) -> None:
    order_no = new_order(stack, seed_003_body)[0]
    events_until(stack, None, {order_no})
    assert bridge_local_main(["events", "tail", "--endpoint", stack.dynamodb_endpoint]) == 0
    # The functions run in this process and log to the same stdout: pick the event lines.
    printed = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    events = [line for line in printed if line.get("detail-type") == "FulfillmentOrderReceived"]
    assert [event for event in events if event["detail"]["fulfillment_order_no"] == order_no]

    assert bridge_local_main(["events", "tail", "--endpoint", "http://127.0.0.1:9"]) == 1
    captured = capsys.readouterr()
    assert "FulfillmentOrderReceived" not in captured.out and len(captured.err.strip().splitlines()) == 1
    assert captured.err.startswith("error: ")


@contextmanager
def stack_process(local_dir: Path) -> Iterator[tuple[str, str]]:
    """``python -m bridge_local run`` (its own moto: moto's state is per process) on free ports, tables saved in
    ``local_dir``; yields its API URL and its moto endpoint; stops it with Ctrl-C."""
    env = {**os.environ, "PORT": "0", "DYNAMODB_PORT": "0", "TOP_SANDBOX_PORT": "0", "PYTHONUNBUFFERED": "1"}
    env["SYNC_INTERVAL"] = "3600"
    env.pop(ENV.QIMEN_APP_SECRET, None)
    command = [sys.executable, "-m", "bridge_local", "run", "--local-dir", str(local_dir)]
    process = subprocess.Popen(
        command, cwd=PROJECT_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:
        found: dict[str, str] = {}
        deadline = time.monotonic() + 60
        assert process.stdout is not None
        while len(found) < 2 and time.monotonic() < deadline:
            line = process.stdout.readline()
            if not line:
                break
            for name, pattern in (("api", r"HTTP API\s+(http://\S+)"), ("moto", r"DynamoDB \(moto\)\s+(http://\S+)")):
                match = re.search(pattern, line)
                if match:
                    found[name] = match.group(1)
        assert len(found) == 2, f"the stack did not start: {process.poll()}"
        # Drain its output, or a full pipe would block its logging.
        threading.Thread(target=process.stdout.read, daemon=True).start()
        yield found["api"], found["moto"]
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            raise


def test_orders_restored_at_a_restart_make_no_events(tmp_path: Path, seed_003_body: bytes) -> None:
    group = local_event_bus(load_template(TEMPLATE_PATH))
    assert group is not None
    before = new_order_no()
    with stack_process(tmp_path) as (url, moto):
        send(SimpleNamespace(url=url), with_order_no(seed_003_body, before))
        events_until(SimpleNamespace(dynamodb_endpoint=moto, event_bus=group), None, {before})
    # As saved before the table had its index: at start its items are written again through moto's put_item,
    # which records them in the table's stream.
    state = tmp_path / "dynamodb.json"
    saved = json.loads(state.read_text(encoding="utf-8"))
    saved["tables"]["FulfillmentOrdersTable"]["definition"].pop("GlobalSecondaryIndexes")
    state.write_text(json.dumps(saved), encoding="utf-8")
    with stack_process(tmp_path) as (url, moto):
        after = new_order_no()
        send(SimpleNamespace(url=url), with_order_no(seed_003_body, after))
        numbers = events_until(SimpleNamespace(dynamodb_endpoint=moto, event_bus=group), None, {after})
        assert numbers == [after]  # the restored order was written into moto again, and is not new
        assert httpx.get(f"{url}/v1/fulfillment-orders/{before}", timeout=10).status_code == 200
