"""``taobao-bridge`` driven as a process against the local stack's real routes: answers it prints, and one
``error:`` line with a non-zero status for every failure (stack down, 404, 400, bad arguments)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from taobao_bridge.settings import ENV, LOCAL_DEFAULTS

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / ".venv" / "bin" / "taobao-bridge"
# The installed console script when `make` installed it; the same code as a module otherwise.
COMMAND = [str(SCRIPT)] if SCRIPT.exists() else [sys.executable, "-m", "bridge_cli"]
CLOSED = "http://127.0.0.1:9"  # the discard port: nothing listens there
QIMEN_SECRET = LOCAL_DEFAULTS[ENV.QIMEN_APP_SECRET]  # what the test stack (no secrets file) checks
WRITEOFF = {
    "biz_type": 2,
    "verify_time": "2026-11-23 10:00:00",
    "tb_store_id": 2343432,
    "service_status": 3,
    "service_id": 1111,
    "service_detail_id": 771001,
    "tb_biz_order_id": 771000000001,
    "verify_batch_no": "CLI1",
}


def cli(*argv: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.run(
        [*COMMAND, *argv], input=stdin, capture_output=True, text=True, cwd=ROOT, env=env, timeout=120, check=False
    )


def on(stack: Any, *argv: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return cli(*argv, "--url", stack.url, stdin=stdin)


def assert_one_error_line(result: subprocess.CompletedProcess[str], words: str, code: int = 1) -> None:
    assert result.returncode == code, (result.returncode, result.stdout, result.stderr)
    assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1, result.stderr
    assert words in result.stderr, result.stderr
    assert "Traceback" not in result.stderr + result.stdout


def need_route(stack: Any, method: str, path: str) -> None:
    if not any(route.method == method and route.path == path for route in stack.routes):
        pytest.skip(f"{method} {path} is not in template.yaml yet")


def test_status_prints_a_table_and_json(stack: Any) -> None:
    need_route(stack, "GET", "/v1/ops/status")
    human = on(stack, "status")
    assert human.returncode == 0, human.stderr
    assert human.stdout.splitlines()[0].split()[:3] == ["kind", "due", "due"]
    data = json.loads(on(stack, "status", "--json").stdout)
    assert set(data["kinds"]) == {"writeoff", "risk", "external_order"}


def test_a_signed_qimen_order_is_found_by_number_by_cursor_and_as_an_event(
    stack: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    need_route(stack, "GET", "/v1/fulfillment-orders/{fulfillment_order_no}")
    monkeypatch.setenv("FULFILLMENT_SETTLE_LAG_S", "0")  # listed at once (the functions run in this process)
    sent = on(stack, "send-qimen", "--new-order-no", "--secret", QIMEN_SECRET, "--json")
    assert sent.returncode == 0, sent.stderr
    order_no = json.loads(sent.stdout)["fulfillment_order_no"]

    found = on(stack, "orders", "get", order_no, "--json")
    assert found.returncode == 0 and json.loads(found.stdout)["fulfillment_order_no"] == order_no
    listed = json.loads(on(stack, "orders", "list", "--all", "--json").stdout)
    assert order_no in [order["fulfillment_order_no"] for order in listed["orders"]] and listed["next"]
    again = on(stack, "orders", "list", "--after", listed["next"], "--json")
    assert json.loads(again.stdout)["orders"] == []  # a poller passing `next` back gets no repeat

    deadline = time.monotonic() + 20
    events: list[dict[str, Any]] = []
    while time.monotonic() < deadline and order_no not in json.dumps(events):
        tail = cli("events", "tail", "--json", "--limit", "1000", "--endpoint", stack.dynamodb_endpoint)
        assert tail.returncode == 0, tail.stderr
        events = [json.loads(line) for line in tail.stdout.splitlines()]
        time.sleep(0.5)
    assert any(e["detail"]["fulfillment_order_no"] == order_no for e in events)


def test_orders_follow_prints_new_orders_and_the_cursor_at_ctrl_c(stack: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    need_route(stack, "GET", "/v1/fulfillment-orders")
    monkeypatch.setenv("FULFILLMENT_SETTLE_LAG_S", "0")
    process = subprocess.Popen(
        [*COMMAND, "orders", "list", "--follow", "--interval", "0.2", "--url", stack.url],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        time.sleep(1.5)
        assert on(stack, "send-qimen", "--new-order-no", "--secret", QIMEN_SECRET).returncode == 0
        time.sleep(1.5)
    finally:
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=30)
    assert process.returncode == 0, err
    assert out.splitlines()[-1].startswith("next: ") and "CREATED" in out and err == ""


def test_records_are_submitted_listed_shown_and_refused_retries_are_one_line(stack: Any) -> None:
    submitted = on(stack, "submit", "writeoffs", "-", stdin=json.dumps(WRITEOFF))
    assert submitted.returncode == 0 and submitted.stdout.strip() == "1 writeoffs: 1 accepted", submitted
    record_id = "771000000001-771001-bCLI1"
    shown = json.loads(on(stack, "records", "show", "writeoff", record_id, "--json").stdout)
    assert shown["state"] == "due"
    assert on(stack, "submit", "writeoffs", "-", stdin=json.dumps(WRITEOFF)).stdout.strip() == (
        "1 writeoffs: 1 duplicate"
    )
    need_route(stack, "GET", "/v1/{kind}")
    listed = json.loads(on(stack, "records", "list", "writeoffs", "--state", "due", "--all", "--json").stdout)
    assert record_id in [record["id"] for record in listed["records"]]
    assert_one_error_line(on(stack, "records", "retry", "writeoffs", record_id), "not retried: it is due")
    dry = on(stack, "records", "retry", "writeoffs", "--state", "dead", "--dry-run", "--json")
    assert dry.returncode == 0 and json.loads(dry.stdout)["dry_run"] is True


def test_a_changed_record_in_conflict_is_one_error_line_after_the_summary(stack: Any) -> None:
    first = {**WRITEOFF, "service_detail_id": 771002}
    assert on(stack, "submit", "writeoffs", "-", stdin=json.dumps(first)).returncode == 0
    changed = on(stack, "submit", "writeoffs", "-", stdin=json.dumps({**first, "tb_store_id": 1}))
    assert "1 conflict" in changed.stdout and "conflict: 771000000001-771002-bCLI1" in changed.stdout
    assert_one_error_line(changed, "1 of 1 records not stored")


def test_invalid_records_stop_the_submission_with_their_problems(stack: Any, tmp_path: Path) -> None:
    good = {**WRITEOFF, "service_detail_id": 771003}
    bad = {key: value for key, value in WRITEOFF.items() if key != "tb_store_id"}
    path = tmp_path / "mixed.jsonl"
    path.write_text(f"{json.dumps(good)}\n{json.dumps(bad)}\n", encoding="utf-8")
    result = on(stack, "submit", "writeoffs", str(path), "--chunk-size", "1")
    assert result.stdout.splitlines() == [
        "2 writeoffs: 1 accepted, 1 not stored (stopped at record 1)",
        "  record 1 field tb_store_id: Field required",
    ]
    assert_one_error_line(result, "records 1..1: 1 problems; nothing of them stored")


@pytest.mark.parametrize(
    ("argv", "words", "route"),
    [
        (("records", "show", "writeoffs", "no-such-id"), "HTTP 404 not_found: no writeoffs record", None),
        (("records", "retry", "writeoffs", "no-such-id"), "HTTP 404 not_found", ("POST", "/v1/{kind}/{id}/retry")),
        (("orders", "get", "1"), "HTTP 404 not_found", ("GET", "/v1/fulfillment-orders/{fulfillment_order_no}")),
        (("orders", "list", "--after", "garbage!"), "HTTP 400 invalid_parameter", ("GET", "/v1/fulfillment-orders")),
        (("records", "list", "writeoffs", "--state", "dead", "--after", "garbage!"), "HTTP 400", ("GET", "/v1/{kind}")),
        (("flows", "resume", "writeoff", "--url", "{url}/nowhere"), "HTTP 404 http_404: no route", None),
    ],
)
def test_api_errors_are_one_line_with_the_code_and_message(
    stack: Any, argv: tuple[str, ...], words: str, route: tuple[str, str] | None
) -> None:
    if route is not None:
        need_route(stack, *route)
    args = [arg.replace("{url}", stack.url) for arg in argv]
    result = cli(*args) if "--url" in args else on(stack, *args)
    assert_one_error_line(result, words)


def test_flows_pause_resume_and_bans_lift(stack: Any) -> None:
    need_route(stack, "POST", "/v1/ops/flows/{kind}/pause")
    paused = on(stack, "flows", "pause", "external-orders", "--reason", "cli test")
    assert paused.returncode == 0 and paused.stdout.startswith("external_order: paused")
    status = json.loads(on(stack, "status", "--json").stdout)
    assert status["kinds"]["external_order"]["operator_pause"]
    assert on(stack, "flows", "resume", "external_order").stdout.strip() == "external_order: resumed"
    assert on(stack, "bans", "lift", "app").stdout.strip() == "no ban on app"
    cleared = json.loads(on(stack, "flows", "clear-session-pause", "risk", "--json").stdout)
    assert cleared == {"kind": "risk", "cleared": False}


@pytest.mark.parametrize(
    "argv",
    [
        ("status",),
        ("orders", "list"),
        ("records", "show", "writeoffs", "x"),
        ("send-qimen",),
        ("submit", "writeoffs", "samples/writeoffs.jsonl"),
    ],
)
def test_stack_down_is_one_line_saying_to_start_it(argv: tuple[str, ...]) -> None:
    result = cli(*argv, "--url", CLOSED)
    assert_one_error_line(result, f"the local stack is not running at {CLOSED}: start it with `make run`")


def test_events_with_the_stack_down_and_bad_arguments_are_one_line() -> None:
    assert_one_error_line(cli("events", "tail", "--endpoint", CLOSED), "the local stack is not running")
    assert_one_error_line(cli("records", "list", "parcels", "--state", "dead"), "unknown kind 'parcels'", code=2)
    assert_one_error_line(cli("records", "retry", "writeoffs"), "give record IDs or --state", code=2)


def test_a_stacks_event_log_and_qimen_secret_are_read_through_the_aws_apis(
    stack: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The ``--stack`` readers against moto's CloudWatch Logs (the local stack's event log group, which the
    template's rule fills as in AWS) and Secrets Manager."""
    import boto3

    from bridge_cli.events_aws import CloudWatchEvents
    from bridge_cli.target import EVENTS_LOG_GROUP_OUTPUT, SECRET_OUTPUT, DeployedStack
    from bridge_local.event_log import default_log_group

    need_route(stack, "GET", "/v1/fulfillment-orders")
    monkeypatch.setenv("AWS_ENDPOINT_URL_CLOUDWATCH_LOGS", stack.dynamodb_endpoint)
    monkeypatch.setenv("AWS_ENDPOINT_URL_SECRETS_MANAGER", stack.dynamodb_endpoint)
    session = boto3.Session(aws_access_key_id="local", aws_secret_access_key="local", region_name="us-east-1")
    secrets = session.client("secretsmanager")
    arn = secrets.create_secret(Name=f"cli-test-{time.time_ns()}", SecretString='{"qimen_app_secret": "s3"}')["ARN"]
    deployed = DeployedStack(
        "taobao-bridge-test",
        "us-east-1",
        {EVENTS_LOG_GROUP_OUTPUT: default_log_group(), SECRET_OUTPUT: arn},
        session,
    )
    assert deployed.qimen_secret() == "s3"

    reader = CloudWatchEvents(deployed, since_s=3600)
    before = {e["detail"]["fulfillment_order_no"] for e in reader.latest(10_000)}
    sent = on(stack, "send-qimen", "--new-order-no", "--secret", QIMEN_SECRET, "--json")
    order_no = json.loads(sent.stdout)["fulfillment_order_no"]
    deadline, fresh = time.monotonic() + 20, []
    while time.monotonic() < deadline and not fresh:
        fresh = reader.newer()
        time.sleep(0.3)
    assert [e["detail"]["fulfillment_order_no"] for e in fresh] == [order_no] and order_no not in before
    assert reader.newer() == []  # nothing read twice
