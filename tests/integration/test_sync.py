"""Scheduled sync end to end: the outbox in moto over HTTP, signed calls to the TOP sandbox over HTTP."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from bridge_local.request_counter import RequestCounter
from bridge_local.template import dynamodb_tables, load_template
from taobao_bridge.kinds import KINDS, Kind
from taobao_bridge.outbox import OutboxStore, RunControl
from taobao_bridge.settings import ENV, LOCAL_DEFAULTS
from taobao_bridge.sync import SyncConfig, SyncRunner
from taobao_bridge.top_client import TopClient

pytestmark = pytest.mark.integration

WRITEOFF = KINDS[Kind.WRITEOFF].method
RISK = KINDS[Kind.RISK].method
EXTERNAL = KINDS[Kind.EXTERNAL_ORDER].method
PLENTY_MS = 120_000


def writeoff(n: int, prefix: int = 0) -> dict[str, Any]:
    return {
        "biz_type": 2,
        "service_sku_name": "洗车",
        "verify_time": "2026-11-23 10:00:00",
        "tb_store_id": 2343432,
        "service_status": 3,
        "service_id": 1111,
        "service_detail_id": 100000 + n,
        "tb_biz_order_id": 4_000_000_000_000_000_000 + prefix * 1_000_000 + n,
        "verify_batch_no": f"B{n}",
    }


def risk_record(n: int) -> dict[str, Any]:
    return {
        "install_type": 1,
        "buyer_phone": "13012345678",
        "tc_order_id": 3882527336184474047,
        "tc_sub_order_id": 3_882_527_336_100_000_000 + n,
        "service_use_time": "2026-11-23 10:00:00",
        "buyer_name": "王五",
    }


def external_order(n: int) -> dict[str, Any]:
    return {
        "buyer_info": {"user_nick": "张三", "user_phone": "13912340000", "user_id": 23432},
        "order_info": {"biz_type": 200, "out_order_id": f"ABC{n}", "total_fee": 10000},
        "idempotent_id": f"YC_STORE-{uuid.uuid4().hex[:8]}-{n}",
    }


@pytest.fixture
def sandbox(stack: Any) -> Iterator[Any]:
    stack.sandbox.reset()
    stack.sandbox.clear()
    yield stack.sandbox
    stack.sandbox.reset()


@pytest.fixture
def counter() -> RequestCounter:
    return RequestCounter()


@pytest.fixture
def outbox(stack: Any, counter: RequestCounter) -> OutboxStore:
    """A fresh outbox table per test, defined exactly as template.yaml defines OutboxTable."""
    name = f"Outbox-{uuid.uuid4().hex[:8]}"
    (definition,) = [t for t in dynamodb_tables(load_template()) if t["TableName"] == "OutboxTable"]
    client = stack.dynamodb_client()
    client.create_table(**{**definition, "TableName": name})
    return OutboxStore(name, client=counter.attach(stack.dynamodb_client()))


def top_client(stack: Any, **kw: Any) -> TopClient:
    options: dict[str, Any] = {"backoff_base_s": 0.01, "backoff_cap_s": 0.05, "timeout_s": 5.0, **kw}
    return TopClient(
        gateway_url=stack.sandbox.url,
        app_key=LOCAL_DEFAULTS[ENV.TOP_APP_KEY],
        app_secret=LOCAL_DEFAULTS[ENV.TOP_APP_SECRET],
        **options,
    )


def control(outbox: OutboxStore) -> RunControl:
    """Run control in the same table, on the same (counted) client, as in production."""
    return RunControl(outbox.table_name, client=outbox.client)


def runner(stack: Any, outbox: OutboxStore, kind: Kind, **kw: Any) -> SyncRunner:
    client = kw.pop("client", None) or top_client(stack)
    kw.setdefault("session_key", LOCAL_DEFAULTS[ENV.TOP_SESSION_KEY])
    kw.setdefault("config", SyncConfig(deadline_margin_s=1.0))
    return SyncRunner(kind, outbox, control(outbox), client, **kw)


def accept(outbox: OutboxStore, kind: Kind, payloads: list[dict[str, Any]]) -> list[str]:
    spec = KINDS[kind]
    records = [(spec.record_id(p), spec.payload_of(spec.dto.model_validate(p))) for p in payloads]
    results = outbox.accept(kind, records)
    assert {r.status for r in results} == {"accepted"}
    return [r.record_id for r in results]


def states(outbox: OutboxStore, kind: Kind, ids: list[str]) -> dict[str, int]:
    found: dict[str, int] = {}
    for record_id in ids:
        record = outbox.get(kind, record_id)
        assert record is not None, f"record {record_id} lost"
        found[record.state] = found.get(record.state, 0) + 1
    return found


def plenty() -> int:
    return PLENTY_MS


# ------------------------------------------------------------------------------------------------ batching
def test_1200_writeoffs_take_exactly_two_signed_calls(stack: Any, sandbox: Any, outbox: OutboxStore) -> None:
    ids = accept(outbox, Kind.WRITEOFF, [writeoff(n) for n in range(1200)])
    report = runner(stack, outbox, Kind.WRITEOFF).run(plenty)
    assert (report.status, report.calls, report.synced) == ("done", 2, 1200)
    calls = sandbox.calls(WRITEOFF)
    assert [c.outcome for c in calls] == ["ok"] * 2
    assert sorted(c.records for c in calls) == [201, 999]
    assert len(sandbox.accepted_records(WRITEOFF)) == 1200
    assert states(outbox, Kind.WRITEOFF, ids[::97]) == {"synced": len(ids[::97])}
    # Nothing is due any more: a second run sends nothing.
    assert runner(stack, outbox, Kind.WRITEOFF).run(plenty).calls == 0


def test_250_risk_records_take_three_calls_with_the_session(stack: Any, sandbox: Any, outbox: OutboxStore) -> None:
    accept(outbox, Kind.RISK, [risk_record(n) for n in range(250)])
    report = runner(stack, outbox, Kind.RISK).run(plenty)
    assert (report.status, report.calls, report.synced) == ("done", 3, 250)
    calls = sandbox.calls(RISK)
    assert len(calls) == 3
    assert {c.session for c in calls} == {LOCAL_DEFAULTS[ENV.TOP_SESSION_KEY]}
    assert sorted(c.records for c in calls) == [50, 100, 100]


def test_external_orders_one_call_each_with_platform_order_id(stack: Any, sandbox: Any, outbox: OutboxStore) -> None:
    from bridge_local.top_sandbox import order_id_for

    payloads = [external_order(n) for n in range(12)]
    ids = accept(outbox, Kind.EXTERNAL_ORDER, payloads)
    report = runner(stack, outbox, Kind.EXTERNAL_ORDER).run(plenty)
    assert (report.status, report.calls, report.synced) == ("done", 12, 12)
    sent = [c.api_payload["idempotent_id"] for c in sandbox.calls(EXTERNAL)]
    assert sorted(sent) == sorted(ids)
    for record_id in ids:
        record = outbox.get(Kind.EXTERNAL_ORDER, record_id)
        assert record is not None and record.state == "synced"
        assert record.platform_order_id == order_id_for(record_id)


def test_overlapping_runs_never_send_one_idempotent_id_twice(stack: Any, sandbox: Any, outbox: OutboxStore) -> None:
    ids = accept(outbox, Kind.EXTERNAL_ORDER, [external_order(n) for n in range(20)])
    sandbox.set_faults(slow_ms=50)  # keep the first run busy while the second starts
    reports = []
    barrier = threading.Barrier(2)

    def run() -> None:
        barrier.wait()
        reports.append(runner(stack, outbox, Kind.EXTERNAL_ORDER).run(plenty))

    threads = [threading.Thread(target=run) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(r.status for r in reports) == ["done", "leased_elsewhere"]
    sent = [c.api_payload["idempotent_id"] for c in sandbox.calls(EXTERNAL)]
    assert sorted(sent) == sorted(ids), "each idempotent_id exactly once"
    assert states(outbox, Kind.EXTERNAL_ORDER, ids) == {"synced": 20}


# ------------------------------------------------------------------------------------------------ refusals
@pytest.mark.parametrize("style", ["error_response", "result"])
def test_one_poisoned_record_is_isolated_from_its_batch_mates(
    stack: Any, sandbox: Any, outbox: OutboxStore, style: str
) -> None:
    # The decisions are unit-tested (test_sync_runner.py); this is the contract with the gateway's two refusal
    # shapes over HTTP.
    payloads = [writeoff(n, prefix=7) for n in range(300)]
    ids = accept(outbox, Kind.WRITEOFF, payloads)
    poisoned = payloads[217]["tb_biz_order_id"]
    sandbox.set_faults(refuse={WRITEOFF: [poisoned]}, refuse_style=style)
    report = runner(stack, outbox, Kind.WRITEOFF).run(plenty)
    assert (report.synced, report.dead) == (299, 1)
    assert report.calls <= 1 + 2 * 9, "a binary split needs about 2 log2(300) calls"
    accepted = {r["tb_biz_order_id"] for r in sandbox.accepted_records(WRITEOFF)}
    assert len(accepted) == 299 and poisoned not in accepted
    dead = outbox.get(Kind.WRITEOFF, ids[217])
    assert dead is not None and dead.state == "dead"
    assert "isv.invalid-parameter" in (dead.dead_reason or "")
    assert states(outbox, Kind.WRITEOFF, ids) == {"synced": 299, "dead": 1}


def test_external_order_business_refusal_is_dead_with_code(stack: Any, sandbox: Any, outbox: OutboxStore) -> None:
    payloads = [external_order(n) for n in range(3)]
    ids = accept(outbox, Kind.EXTERNAL_ORDER, payloads)
    sandbox.set_faults(refuse={EXTERNAL: [ids[1]]}, refuse_style="result")
    report = runner(stack, outbox, Kind.EXTERNAL_ORDER).run(plenty)
    assert (report.synced, report.dead) == (2, 1)
    dead = outbox.get(Kind.EXTERNAL_ORDER, ids[1])
    assert dead is not None and dead.state == "dead" and "INVALID_PARAM" in (dead.dead_reason or "")


def test_unknown_outcome_is_resent_with_the_same_keys(stack: Any, sandbox: Any, outbox: OutboxStore) -> None:
    ids = accept(outbox, Kind.EXTERNAL_ORDER, [external_order(0)])
    sandbox.set_faults(timeout_next=1, timeout_sleep_s=1.0, timeout_processes=True)
    now = [datetime.now(UTC)]
    run = runner(
        stack,
        outbox,
        Kind.EXTERNAL_ORDER,
        client=top_client(stack, timeout_s=0.3, max_attempts=1),
        clock=lambda: now[0],
    )
    assert run.run(plenty).retried == 1
    now[0] += timedelta(hours=1)
    assert run.run(plenty).synced == 1
    sent = [c.api_payload["idempotent_id"] for c in sandbox.calls(EXTERNAL)]
    assert sent == [ids[0], ids[0]], "the retry carries the same idempotent_id"
    record = outbox.get(Kind.EXTERNAL_ORDER, ids[0])
    assert record is not None and record.platform_order_id is not None


def test_expired_session_pauses_risk_sync_and_keeps_records_due(stack: Any, sandbox: Any, outbox: OutboxStore) -> None:
    ids = accept(outbox, Kind.RISK, [risk_record(n) for n in range(5)])
    sandbox.set_faults(session_expired=True)
    now = [datetime.now(UTC)]
    run = runner(stack, outbox, Kind.RISK, clock=lambda: now[0], config=SyncConfig(deadline_margin_s=1.0))
    first = run.run(plenty)
    assert first.status == "session_expired" and first.calls == 1
    assert states(outbox, Kind.RISK, ids) == {"due": 5}
    assert outbox.get(Kind.RISK, ids[0]).attempts == 0  # type: ignore[union-attr]
    assert control(outbox).pause(Kind.RISK.value) is not None
    # Paused: no call at all while the session key is unchanged.
    assert run.run(plenty).status == "paused"
    assert len(sandbox.calls(RISK)) == 1
    # Writeoffs need no session and are not paused.
    accept(outbox, Kind.WRITEOFF, [writeoff(1, prefix=9)])
    assert runner(stack, outbox, Kind.WRITEOFF).run(plenty).synced == 1
    # Once the platform accepts the session again, the next probe (after the recheck interval) resumes.
    sandbox.set_faults(session_expired=False)
    now[0] += timedelta(hours=2)
    resumed = run.run(plenty)
    assert (resumed.status, resumed.synced) == ("done", 5)
    assert control(outbox).pause(Kind.RISK.value) is None


# ------------------------------------------------------------------------------------------------ time and death
def test_the_deadline_is_respected_and_the_rest_stays_due(stack: Any, sandbox: Any, outbox: OutboxStore) -> None:
    ids = accept(outbox, Kind.RISK, [risk_record(n) for n in range(500)])
    sandbox.set_faults(slow_ms=600)
    started = time.monotonic()
    budget_ms = 2500

    def remaining() -> int:
        return int(budget_ms - (time.monotonic() - started) * 1000)

    report = runner(stack, outbox, Kind.RISK, config=SyncConfig(deadline_margin_s=1.0)).run(remaining)
    elapsed = time.monotonic() - started
    assert report.status == "deadline"
    assert elapsed < budget_ms / 1000, "finished before the Lambda would be killed"
    assert 1 <= report.calls < 5
    counts = states(outbox, Kind.RISK, ids)
    assert counts == {"synced": report.synced, "due": 500 - report.synced}
    sandbox.set_faults(slow_ms=0)
    assert runner(stack, outbox, Kind.RISK).run(plenty).synced == 500 - report.synced


KILLED_WORKER = """
import json, os, sys, time
from taobao_bridge.kinds import Kind
from taobao_bridge.outbox import OutboxStore, RunControl
from taobao_bridge.sync import SyncConfig, SyncRunner
from taobao_bridge.top_client import TopClient
import boto3

client = boto3.client("dynamodb", endpoint_url=os.environ["ENDPOINT"], region_name="us-east-1",
                      aws_access_key_id="x", aws_secret_access_key="x")
store = OutboxStore(os.environ["TABLE"], client=client)
top = TopClient(gateway_url=os.environ["GATEWAY"], app_key=os.environ["APP_KEY"], app_secret=os.environ["APP_SECRET"])

class HangsAfterTheCall:
    # The real client over HTTP; the worker is killed once the platform has answered, before settling.
    def call(self, method, api_params, **kw):
        response = top.call(method, api_params, **kw)
        print("SENT", len(json.loads(api_params["local_order_write_off_d_t_o_list"])), flush=True)
        time.sleep(60)
        return response

SyncRunner(Kind.WRITEOFF, store, RunControl(os.environ["TABLE"], client=client), HangsAfterTheCall(),
           config=SyncConfig(deadline_margin_s=0.5, lease_margin_s=0.5)).run(lambda: 1500)
"""


def test_a_worker_killed_between_send_and_settle_loses_nothing(stack: Any, sandbox: Any, outbox: OutboxStore) -> None:
    ids = accept(outbox, Kind.WRITEOFF, [writeoff(n, prefix=11) for n in range(30)])
    env = {
        **os.environ,
        "ENDPOINT": stack.dynamodb_endpoint,
        "TABLE": outbox.table_name,
        "GATEWAY": sandbox.url,
        "APP_KEY": LOCAL_DEFAULTS[ENV.TOP_APP_KEY],
        "APP_SECRET": LOCAL_DEFAULTS[ENV.TOP_APP_SECRET],
    }
    worker = subprocess.Popen([sys.executable, "-c", KILLED_WORKER], env=env, stdout=subprocess.PIPE, text=True)
    try:
        assert worker.stdout is not None
        assert worker.stdout.readline().strip() == "SENT 30"
        worker.kill()  # SIGKILL: no finally blocks, no lease release
        worker.wait(timeout=10)
    finally:
        if worker.poll() is None:
            worker.kill()
    assert len(sandbox.calls(WRITEOFF)) == 1
    assert states(outbox, Kind.WRITEOFF, ids) == {"due": 30}, "sent but unsettled records stay due"
    # The dead worker's lease blocks a new run until it expires; then the records go again.
    assert runner(stack, outbox, Kind.WRITEOFF).run(plenty).status == "leased_elsewhere"
    _wait_for(lambda: runner(stack, outbox, Kind.WRITEOFF).run(plenty).synced == 30, timeout_s=5)
    assert states(outbox, Kind.WRITEOFF, ids) == {"synced": 30}
    assert len(sandbox.calls(WRITEOFF)) == 2, "at least once: the same keys were sent again"


def _wait_for(condition: Callable[[], bool], timeout_s: float) -> None:
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        if condition():
            return
        time.sleep(0.25)
    raise AssertionError("condition not met in time")


# ------------------------------------------------------------------------------------------------ cost
def test_dynamodb_requests_per_synced_record_stay_near_the_floor(
    stack: Any, sandbox: Any, outbox: OutboxStore, counter: RequestCounter
) -> None:
    accept(outbox, Kind.WRITEOFF, [writeoff(n, prefix=13) for n in range(2000)])
    accepted = dict(counter.counts)
    assert accepted == {"PutItem": 2000}, "one conditional put (one write unit) per record to accept"
    counter.reset()
    report = runner(stack, outbox, Kind.WRITEOFF).run(plenty)
    assert report.synced == 2000
    assert "Scan" not in counter.counts
    # Settling: each TOP batch (999, 999, 2) in BatchWriteItems of 25 -> 40 + 40 + 1; reading: Query pages
    # and BatchGetItem of 100 -> ~23; run control (bans, lease, release) -> a handful.
    assert counter.counts["BatchWriteItem"] == 81
    assert counter.total / 2000 < 0.07, counter.counts
