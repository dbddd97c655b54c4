"""The operators' routes end to end: HTTP to the local stack (API Gateway routing from template.yaml, the deployed
handlers), moto behind them, sync runs invoked as EventBridge Scheduler would, the TOP sandbox refusing what a
test tells it to. The table is the session's: every test uses its own random ids and compares counts before and
after, so tests sharing the table never read each other's records as their own."""

from __future__ import annotations

import random
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import httpx
import pytest

from taobao_bridge.kinds import KINDS, Kind
from taobao_bridge.outbox import RunControl

pytestmark = pytest.mark.integration

WRITEOFF = KINDS[Kind.WRITEOFF].method


@pytest.fixture
def sandbox(stack: Any) -> Iterator[Any]:
    stack.sandbox.reset()
    stack.sandbox.clear()
    yield stack.sandbox
    stack.sandbox.reset()


def writeoff(order_id: int, **changes: Any) -> dict[str, Any]:
    record: dict[str, Any] = {
        "biz_type": 2,
        "verify_time": "2026-03-01 12:00:00",
        "tb_store_id": 2343432,
        "service_status": 2,
        "service_id": 1111,
        "service_detail_id": 111223,
        "tb_biz_order_id": order_id,
        "verify_batch_no": "B1",
    }
    record.update(changes)
    return record


def writeoff_id(order_id: int) -> str:
    return KINDS[Kind.WRITEOFF].record_id(writeoff(order_id))


def order_ids(count: int) -> list[int]:
    base = random.randrange(10**17, 10**18 - count)
    return [base + n for n in range(count)]


def call(stack: Any, method: str, path: str, body: Any = None) -> httpx.Response:
    return httpx.request(method, f"{stack.url}{path}", json=body, timeout=60)


def schedule(stack: Any, function_id: str) -> dict[str, Any]:
    (found,) = [s for s in stack.schedules if s.function_id == function_id]
    result = stack.run_schedule_once(found)
    assert result is not None, f"{function_id} raised"
    return result


def listed(stack: Any, segment: str, state: str, limit: int = 1000) -> list[dict[str, Any]]:
    """Every record the listing shows, following ``next`` to the end."""
    records: list[dict[str, Any]] = []
    after: str | None = None
    while True:
        query = f"state={state}&limit={limit}" + (f"&after={after}" if after else "")
        answer = call(stack, "GET", f"/v1/{segment}?{query}")
        assert answer.status_code == 200, answer.text
        page = answer.json()
        assert (page["kind"], page["state"]) == (segment, state)
        records += page["records"]
        if not page["has_more"]:
            assert page["next"] is None
            return records
        after = page["next"]


def status(stack: Any) -> dict[str, Any]:
    answer = call(stack, "GET", "/v1/ops/status")
    assert answer.status_code == 200, answer.text
    return answer.json()


def dead_writeoffs(stack: Any, sandbox: Any, count: int) -> list[str]:
    """``count`` writeoffs the sandbox refused, dead after one scheduled run (in settling order)."""
    ids = order_ids(count)
    assert call(stack, "POST", "/v1/writeoffs", [writeoff(i) for i in ids]).status_code == 202
    sandbox.set_faults(refuse={WRITEOFF: ids})
    assert schedule(stack, "SyncWriteoffsFunction")["dead"] >= count
    sandbox.reset()
    return [writeoff_id(i) for i in ids]


# ----------------------------------------------------------------------------------------- the whole story
def test_a_refused_writeoff_is_listed_dead_corrected_resent_and_synced(stack: Any, sandbox: Any) -> None:
    (order_id,) = order_ids(1)
    record_id = writeoff_id(order_id)
    wrong = writeoff(order_id, tb_store_id=1)
    assert call(stack, "POST", "/v1/writeoffs", wrong).status_code == 202
    sandbox.set_faults(refuse={WRITEOFF: [order_id]})
    assert schedule(stack, "SyncWriteoffsFunction")["dead"] >= 1

    shown = call(stack, "GET", f"/v1/writeoffs/{record_id}").json()  # the intake route is unaffected
    assert (shown["state"], shown["attempts"]) == ("dead", 1)
    (dead,) = [r for r in listed(stack, "writeoffs", "dead") if r["id"] == record_id]
    assert "isv.invalid-parameter" in dead["dead_reason"] and dead["last_error"] == dead["dead_reason"]
    assert {"platform_answer", "replays", "attempts", "settled_at"} <= set(dead)
    assert "payload" not in dead and "tb_store_id" not in str(dead)

    # The corrected record under the same id replaces the dead one and is due again.
    answer = call(stack, "POST", "/v1/writeoffs", writeoff(order_id))
    assert answer.status_code == 202, answer.text
    assert answer.json()["records"] == [{"id": record_id, "status": "replaced", "state": "due"}]
    assert record_id not in {r["id"] for r in listed(stack, "writeoffs", "dead")}
    assert record_id in {r["id"] for r in listed(stack, "writeoffs", "due")}
    again = call(stack, "POST", "/v1/writeoffs", wrong)  # due now: other content is a conflict again
    assert again.status_code == 409 and again.json()["records"][0]["status"] == "conflict"

    sandbox.reset()
    assert schedule(stack, "SyncWriteoffsFunction")["synced"] >= 1
    shown = call(stack, "GET", f"/v1/writeoffs/{record_id}").json()
    assert (shown["state"], shown["attempts"]) == ("synced", 1)
    sent = [r for r in sandbox.accepted_records(WRITEOFF) if r["tb_biz_order_id"] == order_id]
    assert [r["tb_store_id"] for r in sent] == [2343432], "the corrected content reached the platform"
    assert call(stack, "POST", "/v1/writeoffs", wrong).json()["records"][0]["status"] == "conflict"
    assert call(stack, "POST", "/v1/writeoffs", writeoff(order_id)).json()["records"][0]["status"] == "duplicate"


def test_an_unconfirmed_order_is_retried_by_id_and_then_syncs(stack: Any, sandbox: Any) -> None:
    schedule(stack, "SyncExternalOrdersFunction")  # what other tests left due goes first
    order_id = f"OPS-{random.randrange(10**12)}"
    order = {"order_info": {"out_order_id": order_id, "total_fee": 100}, "idempotent_id": order_id}
    assert call(stack, "POST", "/v1/external-orders", order).status_code == 202
    sandbox.set_faults(not_json_next=1)
    assert schedule(stack, "SyncExternalOrdersFunction")["unconfirmed"] == 1
    (shown,) = [r for r in listed(stack, "external-orders", "unconfirmed") if r["id"] == order_id]
    assert shown["platform_answer"] and shown["unknown_outcomes"] == 1

    path = f"/v1/external-orders/{quote(order_id, safe='')}/retry"
    answer = call(stack, "POST", path)
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"id": order_id, "status": "retried", "state": "due"}
    refused = call(stack, "POST", path)
    assert refused.status_code == 409 and refused.json()["error"] == "not_retryable"
    assert refused.json()["state"] == "due"
    (due,) = [r for r in listed(stack, "external-orders", "due") if r["id"] == order_id]
    assert (due["attempts"], due["replays"], due["last_error"]) == (0, 1, shown["last_error"])

    assert schedule(stack, "SyncExternalOrdersFunction")["synced"] >= 1
    synced = call(stack, "POST", path)
    assert (synced.status_code, synced.json()["state"]) == (409, "synced")
    missing = call(stack, "POST", "/v1/external-orders/no-such-order/retry")
    assert (missing.status_code, missing.json()["error"]) == (404, "not_found")
    assert call(stack, "POST", "/v1/widgets/x/retry").status_code == 404


def test_a_bulk_dry_run_changes_nothing_and_the_real_run_makes_them_due(stack: Any, sandbox: Any) -> None:
    ids = dead_writeoffs(stack, sandbox, 3)
    before = status(stack)["kinds"]["writeoff"]
    dry = call(stack, "POST", "/v1/writeoffs/retry", {"state": "dead", "dry_run": True})
    assert dry.status_code == 200, dry.text
    assert (dry.json()["dry_run"], dry.json()["retried"]) == (True, 0)
    assert set(ids) <= set(dry.json()["ids"]) and dry.json()["matched"] == len(dry.json()["ids"])
    assert status(stack)["kinds"]["writeoff"]["dead"] == before["dead"]
    assert {call(stack, "GET", f"/v1/writeoffs/{i}").json()["state"] for i in ids} == {"dead"}

    done = call(stack, "POST", "/v1/writeoffs/retry", {"state": "dead", "dry_run": False}).json()
    assert set(ids) <= set(done["ids"]) and done["retried"] == done["matched"] >= 3
    assert {call(stack, "GET", f"/v1/writeoffs/{i}").json()["state"] for i in ids} == {"due"}
    after = status(stack)["kinds"]["writeoff"]
    assert after["dead"] == before["dead"] - done["retried"]
    assert schedule(stack, "SyncWriteoffsFunction")["synced"] >= 3


def test_status_counts_records_per_state_without_a_scan(stack: Any, sandbox: Any) -> None:
    schedule(stack, "SyncWriteoffsFunction")
    before = status(stack)
    assert set(before["kinds"]) == {"writeoff", "risk", "external_order"}
    assert set(before["kinds"]["writeoff"]) == {
        "due",
        "due_now",
        "dead",
        "unconfirmed",
        "synced",
        "oldest_due_age_s",
        "session_pause",
        "operator_pause",
        "ban",
        "lease",
    }
    ids = order_ids(2)
    assert call(stack, "POST", "/v1/writeoffs", [writeoff(i) for i in ids]).status_code == 202
    waiting = status(stack)["kinds"]["writeoff"]
    assert (waiting["due"], waiting["due_now"]) == (before["kinds"]["writeoff"]["due"] + 2,) * 2
    assert waiting["oldest_due_age_s"] is not None and waiting["oldest_due_age_s"] >= 0
    dead_writeoffs(stack, sandbox, 1)
    after = status(stack)["kinds"]["writeoff"]
    assert after["due"] == 0 and after["oldest_due_age_s"] is None
    assert after["synced"] >= before["kinds"]["writeoff"]["synced"] + 2
    assert after["dead"] == before["kinds"]["writeoff"]["dead"] + 1

    # A stored ban shows, and an operator lifts it.
    control = RunControl("OutboxTable", client=stack.dynamodb_client())
    control.set_ban("writeoff", until_ms=2**42, reason="This ban will last for 30 more seconds")
    assert status(stack)["kinds"]["writeoff"]["ban"]["reason"].startswith("This ban")
    assert call(stack, "POST", "/v1/ops/bans/writeoff/lift").json() == {"scope": "writeoff", "lifted": True}
    assert call(stack, "POST", "/v1/ops/bans/writeoff/lift").json() == {"scope": "writeoff", "lifted": False}
    assert status(stack)["kinds"]["writeoff"]["ban"] is None
    assert call(stack, "POST", "/v1/ops/bans/everything/lift").status_code == 404


def test_a_paused_flow_ends_its_runs_at_once_until_resumed(stack: Any, sandbox: Any) -> None:
    schedule(stack, "SyncWriteoffsFunction")
    paused = call(stack, "POST", "/v1/ops/flows/writeoff/pause", {"reason": "store ids being fixed"})
    assert paused.json() == {"kind": "writeoff", "paused": True}
    try:
        shown = status(stack)["kinds"]["writeoff"]["operator_pause"]
        assert shown["reason"] == "store ids being fixed" and shown["since"].endswith("Z")
        (order_id,) = order_ids(1)
        assert call(stack, "POST", "/v1/writeoffs", writeoff(order_id)).status_code == 202
        calls = len(sandbox.calls(WRITEOFF))
        result = schedule(stack, "SyncWriteoffsFunction")
        assert (result["status"], result["calls"]) == ("paused_by_operator", 0)
        assert len(sandbox.calls(WRITEOFF)) == calls
        assert call(stack, "GET", f"/v1/writeoffs/{writeoff_id(order_id)}").json()["state"] == "due"
        assert status(stack)["kinds"]["writeoff"]["lease"] is None
    finally:
        resumed = call(stack, "POST", "/v1/ops/flows/writeoff/resume").json()
    assert resumed == {"kind": "writeoff", "resumed": True}
    assert call(stack, "POST", "/v1/ops/flows/writeoff/resume").json()["resumed"] is False
    assert schedule(stack, "SyncWriteoffsFunction")["status"] == "done"
    assert call(stack, "GET", f"/v1/writeoffs/{writeoff_id(order_id)}").json()["state"] == "synced"

    # The session pause is another thing: only clear-session-pause lifts it.
    control = RunControl("OutboxTable", client=stack.dynamodb_client())
    control.set_pause("risk", reason="invalid-sessionkey", fingerprint="0" * 16)
    assert status(stack)["kinds"]["risk"]["session_pause"]["reason"] == "invalid-sessionkey"
    assert call(stack, "POST", "/v1/ops/flows/risk/resume").json()["resumed"] is False
    cleared = call(stack, "POST", "/v1/ops/flows/risk/clear-session-pause").json()
    assert cleared == {"kind": "risk", "cleared": True}
    assert status(stack)["kinds"]["risk"]["session_pause"] is None

    no_reason = call(stack, "POST", "/v1/ops/flows/writeoff/pause", {})
    assert (no_reason.status_code, no_reason.json()["parameter"]) == (400, "reason")
    assert call(stack, "POST", "/v1/ops/flows/writeoffs/pause", {"reason": "x"}).status_code == 404


def test_pages_follow_each_other_without_repeats_or_gaps(stack: Any, sandbox: Any) -> None:
    ids = dead_writeoffs(stack, sandbox, 7)
    whole = [r["id"] for r in listed(stack, "writeoffs", "dead", limit=1000)]
    paged = [r["id"] for r in listed(stack, "writeoffs", "dead", limit=2)]
    assert paged == whole and len(set(paged)) == len(paged)
    assert set(ids) <= set(paged)
    settled = [r["settled_at"] for r in listed(stack, "writeoffs", "dead", limit=3)]
    assert settled == sorted(settled), "oldest first"


@pytest.mark.parametrize(
    ("query", "parameter"),
    [
        ("", "state"),
        ("state=synced", "state"),
        ("state=dead&limit=0", "limit"),
        ("state=dead&limit=1001", "limit"),
        ("state=dead&limit=ten", "limit"),
        ("state=dead&after=bm90IGEgY3Vyc29y", "after"),
        ("state=dead&after=%25%25", "after"),
        ("state=dead&colour=red", "colour"),
    ],
)
def test_a_bad_listing_is_refused_naming_the_parameter(stack: Any, query: str, parameter: str) -> None:
    answer = call(stack, "GET", f"/v1/writeoffs?{query}")
    assert answer.status_code == 400, answer.text
    body = answer.json()
    assert (body["error"], body["parameter"]) == ("invalid_parameter", parameter)
    assert body["message"].startswith(f"{parameter}: ")


def test_a_cursor_of_one_listing_is_refused_by_another(stack: Any, sandbox: Any) -> None:
    dead_writeoffs(stack, sandbox, 2)
    first = call(stack, "GET", "/v1/writeoffs?state=dead&limit=1").json()
    assert first["has_more"] and first["next"]
    for other in ("/v1/writeoffs?state=unconfirmed", "/v1/risk-records?state=dead"):
        answer = call(stack, "GET", f"{other}&after={first['next']}")
        assert (answer.status_code, answer.json()["parameter"]) == (400, "after")
    assert call(stack, "GET", "/v1/widgets?state=dead").status_code == 404


def test_ops_routes_are_not_taken_for_record_lookups(stack: Any) -> None:
    # API Gateway prefers literal segments: /v1/ops/status is the operators', /v1/{kind}/{id} the intake's.
    assert "kinds" in status(stack)
    unknown = call(stack, "GET", "/v1/ops/anything")
    assert unknown.status_code == 404 and "no such kind of record" in unknown.json()["message"]
    assert call(stack, "GET", "/v1/writeoffs/no-such-id").json()["error"] == "not_found"
