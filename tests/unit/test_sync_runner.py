"""Every decision of the sync runner, against in-memory fakes of its ports (tests/fakes.py): no moto, no HTTP.

The contract over real HTTP and DynamoDB is tests/integration/test_sync.py; here each test sets up exactly the
platform behaviour it is about and checks what the runner decided.
"""

from __future__ import annotations

import json
import threading
import time
from typing import Any

import pytest

from taobao_bridge.errors import (
    StorageError,
    TopPermanentError,
    TopRateLimited,
    TopSessionExpired,
    TopTransientError,
    UnknownOutcome,
    UnreadableAnswer,
)
from taobao_bridge.kinds import KINDS, Kind
from taobao_bridge.outbox import OperatorPause, RecordState
from taobao_bridge.sync import (
    APP_BAN_SCOPE,
    DAILY_QUOTA_PROBE_S,
    RunStatus,
    SyncConfig,
    SyncRunner,
    session_fingerprint,
)
from tests.fakes import FakeTime, MemoryControl, MemoryOutbox, PlatformCall, ScriptedPlatform, accepted

SESSION = "session-key-1"
PLENTY_S = 600.0


def writeoff(n: int) -> dict[str, Any]:
    return {
        "biz_type": 2,
        "verify_time": "2026-11-23 10:00:00",
        "tb_store_id": 2343432,
        "service_status": 3,
        "service_id": 1111,
        "service_detail_id": 100000 + n,
        "tb_biz_order_id": 4_000_000_000_000_000_000 + n,
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
    return {"idempotent_id": f"YC-{n}", "order_info": {"out_order_id": f"ABC{n}", "total_fee": 100}}


class World:
    """A runner for one kind wired to fakes on one fake timeline."""

    def __init__(self, kind: Kind, **config: Any) -> None:
        self.kind = kind
        self.time = FakeTime()
        self.outbox = MemoryOutbox()
        self.control = MemoryControl(self.time)
        self.platform = ScriptedPlatform(self.time)
        self.config = SyncConfig(**{"deadline_margin_s": 15.0, "retry_base_s": 30.0, **config})
        self.session_key = SESSION

    def runner(self) -> SyncRunner:
        return SyncRunner(
            self.kind,
            self.outbox,
            self.control,
            self.platform,
            session_key=self.session_key,
            config=self.config,
            clock=self.time.clock,
            monotonic=self.time.monotonic,
            rand=lambda: 0.5,
            sleep=self.time.advance,
        )

    def run(self, budget_s: float = PLENTY_S) -> Any:
        self.platform.deadline_end = self.time.monotonic() + budget_s
        return self.runner().run(self.time.remaining_ms(budget_s))


def refuse_records(key: str, bad: set[Any], error: bool = True) -> Any:
    """The platform refuses any call that carries a record whose ``key`` is in ``bad``: as an ``isv`` error, or
    as ``result.success=false`` in an accepted answer."""

    def answer(call: PlatformCall) -> Any:
        if not any(record[key] in bad for record in call.records):
            return accepted(call)
        if error:
            return TopPermanentError(15, "Remote service error", "isv.invalid-parameter", "bad record")
        return {"result": {"success": False, "error_code": "isv.invalid-parameter", "error_msg": "bad record"}}

    return answer


# ------------------------------------------------------------------------------------------------ batching
def test_writeoffs_go_in_batches_of_999_and_are_settled_per_batch() -> None:
    world = World(Kind.WRITEOFF)
    world.outbox.add(Kind.WRITEOFF, [writeoff(n) for n in range(2500)])
    report = world.run()
    assert (report.status, report.calls, report.synced) == (RunStatus.DONE, 3, 2500)
    assert world.platform.sizes() == [999, 999, 502]
    assert [len(call) for call in world.outbox.settle_calls] == [999, 999, 502]
    assert world.outbox.states(Kind.WRITEOFF) == {"synced": 2500}
    assert {call.session for call in world.platform.calls} == {None}, "writeoffs need no session"
    assert world.run().calls == 0, "nothing is due any more"


def test_risk_records_go_in_batches_of_100_with_the_session() -> None:
    world = World(Kind.RISK)
    world.outbox.add(Kind.RISK, [risk_record(n) for n in range(250)])
    report = world.run()
    assert (report.status, report.synced) == (RunStatus.DONE, 250)
    assert world.platform.sizes() == [100, 100, 50]
    assert {call.session for call in world.platform.calls} == {SESSION}


def test_external_orders_go_one_per_call_with_bounded_concurrency_and_keep_the_order_id() -> None:
    world = World(Kind.EXTERNAL_ORDER, external_concurrency=4)
    world.platform.hold_s = 0.01
    ids = world.outbox.add(Kind.EXTERNAL_ORDER, [external_order(n) for n in range(20)])
    report = world.run()
    assert (report.status, report.calls, report.synced) == (RunStatus.DONE, 20, 20)
    assert world.platform.sizes() == [1] * 20
    assert 1 < world.platform.max_in_flight <= 4
    assert world.outbox.get(Kind.EXTERNAL_ORDER, ids[7]).platform_order_id == 10_007


def test_the_batch_sent_is_the_stored_payloads_in_due_order() -> None:
    world = World(Kind.WRITEOFF)
    world.outbox.add(Kind.WRITEOFF, [writeoff(2)], due_at=world.time.now_ms - 10)
    world.outbox.add(Kind.WRITEOFF, [writeoff(1)], due_at=world.time.now_ms - 20)
    world.outbox.add(Kind.WRITEOFF, [writeoff(3)], due_at=world.time.now_ms + 60_000)  # not yet
    world.run()
    (call,) = world.platform.calls
    assert [r["service_detail_id"] for r in call.records] == [100001, 100002]
    assert call.records[0] == world.outbox.get(Kind.WRITEOFF, "4000000000000000001-100001-bB1").payload


# ------------------------------------------------------------------------------------------------ isolation
@pytest.mark.parametrize("as_error", [True, False], ids=["isv-error", "result-success-false"])
def test_a_refused_record_is_isolated_and_dead_while_its_batch_mates_sync(as_error: bool) -> None:
    world = World(Kind.WRITEOFF)
    payloads = [writeoff(n) for n in range(999)]
    ids = world.outbox.add(Kind.WRITEOFF, payloads)
    world.platform.answer = refuse_records("tb_biz_order_id", {payloads[617]["tb_biz_order_id"]}, error=as_error)
    report = world.run()
    assert (report.synced, report.dead) == (998, 1)
    assert report.calls <= 1 + 2 * 10, "a binary split needs about 2 log2(999) calls"
    dead = world.outbox.get(Kind.WRITEOFF, ids[617])
    assert dead.state is RecordState.DEAD and "isv.invalid-parameter" in (dead.dead_reason or "")
    assert dead.attempts == 1
    assert world.outbox.states(Kind.WRITEOFF) == {"synced": 998, "dead": 1}


def test_an_external_order_refused_in_its_result_is_dead_with_the_code() -> None:
    world = World(Kind.EXTERNAL_ORDER)
    ids = world.outbox.add(Kind.EXTERNAL_ORDER, [external_order(n) for n in range(3)])

    def answer(call: PlatformCall) -> Any:
        if call.records[0]["idempotent_id"] == ids[1]:
            return {"result": {"success": False, "msg_code": "SELLER_NOT_EXIST", "msg_info": "no seller"}}
        return accepted(call)

    world.platform.answer = answer
    report = world.run()
    assert (report.synced, report.dead) == (2, 1)
    assert "SELLER_NOT_EXIST" in (world.outbox.get(Kind.EXTERNAL_ORDER, ids[1]).dead_reason or "")


def test_a_stored_payload_that_no_longer_validates_is_dead_without_a_call() -> None:
    world = World(Kind.WRITEOFF)
    ids = world.outbox.add(Kind.WRITEOFF, [writeoff(n) for n in range(4)])
    broken = {**writeoff(9), "biz_type": 7}  # not a biz_type the model allows
    world.outbox.add_raw(Kind.WRITEOFF, "broken", broken)
    report = world.run()
    assert (report.synced, report.dead) == (4, 1)
    sent = [r["service_detail_id"] for call in world.platform.calls for r in call.records]
    assert sorted(sent) == [100000, 100001, 100002, 100003], "the broken record is never sent"
    dead = world.outbox.get(Kind.WRITEOFF, "broken")
    assert dead.state is RecordState.DEAD and dead.attempts == 0, "no attempt was made"
    assert "biz_type" in (dead.dead_reason or "")
    assert all(world.outbox.get(Kind.WRITEOFF, i).state is RecordState.SYNCED for i in ids)


# ------------------------------------------------------------------------------------------------ retry and dead
@pytest.mark.parametrize(
    "failure",
    [TopTransientError(7, "isp.service-unavailable"), UnknownOutcome("timed out after sending")],
    ids=["isp", "unknown-outcome"],
)
def test_a_transient_failure_is_retried_later_with_backoff(failure: Exception) -> None:
    world = World(Kind.WRITEOFF, retry_base_s=30.0)
    ids = world.outbox.add(Kind.WRITEOFF, [writeoff(n) for n in range(5)], attempts=2)
    world.platform.answer = lambda call: failure
    report = world.run()
    assert (report.retried, report.dead, report.synced) == (5, 0, 0)
    record = world.outbox.get(Kind.WRITEOFF, ids[0])
    assert record.state is RecordState.DUE and record.attempts == 3 and record.last_error
    # base * 2**attempts = 120 s, jittered into [60, 120] s; rand() = 0.5 gives 90 s after the call.
    call_ended_ms = world.time.now_ms
    assert record.due_at is not None and abs(record.due_at - (call_ended_ms + 90_000)) <= 1000
    assert world.run().calls == 0, "not due again before its backoff"
    world.time.advance(91)
    world.platform.answer = accepted
    assert world.run().synced == 5


def test_a_record_out_of_attempts_is_dead_with_the_last_error() -> None:
    world = World(Kind.WRITEOFF, max_attempts=3)
    ids = world.outbox.add(Kind.WRITEOFF, [writeoff(1)], attempts=2)
    world.platform.answer = lambda call: TopTransientError(7, "isp.service-unavailable")
    report = world.run()
    assert (report.retried, report.dead) == (0, 1)
    dead = world.outbox.get(Kind.WRITEOFF, ids[0])
    assert dead.state is RecordState.DEAD and dead.attempts == 3
    assert "gave up after 3 attempts" in (dead.dead_reason or "") and "7" in (dead.dead_reason or "")


# ------------------------------------------------------------------------------------------------ bans
def test_a_rate_limit_stops_the_run_stores_a_ban_and_keeps_records_due_without_an_attempt() -> None:
    world = World(Kind.WRITEOFF)
    ids = world.outbox.add(Kind.WRITEOFF, [writeoff(n) for n in range(10)])
    world.platform.answer = lambda call: TopRateLimited(
        7, "limited", "accesscontrol.limited-by-api-access-count", retry_after_s=60
    )
    report = world.run()
    assert report.status is RunStatus.RATE_LIMITED and "60 s" in report.detail
    assert (report.rate_limited_calls, report.daily_quota_calls) == (1, 0)
    assert world.control.ban_until(Kind.WRITEOFF.value) == pytest.approx(world.time.now_ms + 60_000, abs=1000)
    assert world.outbox.get(Kind.WRITEOFF, ids[0]).attempts == 0, "a ban is not the record's fault"
    assert world.outbox.states(Kind.WRITEOFF) == {"due": 10}

    world.platform.answer = accepted
    banned = world.run()
    assert (banned.status, banned.calls) == (RunStatus.BANNED, 0)
    world.time.advance(61)
    assert (world.run().status, world.outbox.states(Kind.WRITEOFF)) == (RunStatus.DONE, {"synced": 10})


def test_the_daily_quota_bans_every_kind() -> None:
    world = World(Kind.WRITEOFF)
    world.outbox.add(Kind.WRITEOFF, [writeoff(1)])
    world.platform.answer = lambda call: TopRateLimited(
        7, "limited", "accesscontrol.limited-by-app-access-count", retry_after_s=3600, daily_quota=True
    )
    report = world.run()
    assert (report.status, report.daily_quota_calls) == (RunStatus.RATE_LIMITED, 1)
    assert world.control.ban_until(APP_BAN_SCOPE) is not None
    other = World(Kind.RISK)
    other.control, other.time = world.control, world.time
    other.outbox.add(Kind.RISK, [risk_record(1)])
    assert (other.run().status, other.platform.calls) == (RunStatus.BANNED, [])


# ------------------------------------------------------------------------------------------------ session
def test_an_expired_session_pauses_the_flow_until_the_key_changes() -> None:
    world = World(Kind.RISK, session_recheck_s=3600)
    world.outbox.add(Kind.RISK, [risk_record(n) for n in range(5)])
    world.platform.answer = lambda call: TopSessionExpired(27, "Invalid session", "invalid-sessionkey")
    first = world.run()
    assert (first.status, first.calls, first.session_alerts) == (RunStatus.SESSION_EXPIRED, 1, 1)
    pause = world.control.pause(Kind.RISK.value)
    assert pause is not None and pause.fingerprint == session_fingerprint(SESSION)
    assert SESSION not in pause.reason and SESSION not in pause.fingerprint
    assert world.outbox.states(Kind.RISK) == {"due": 5}

    world.platform.answer = accepted
    paused = world.run()
    assert (paused.status, paused.calls) == (RunStatus.PAUSED, 0), "same key: no call at all"
    world.session_key = "session-key-2"
    resumed = world.run()
    assert (resumed.status, resumed.synced) == (RunStatus.DONE, 5)
    assert world.control.pause(Kind.RISK.value) is None


def test_a_paused_flow_probes_the_same_key_again_after_the_recheck_interval() -> None:
    world = World(Kind.RISK, session_recheck_s=3600)
    world.outbox.add(Kind.RISK, [risk_record(1)])
    world.control.set_pause(Kind.RISK.value, reason="27: Invalid session", fingerprint=session_fingerprint(SESSION))
    world.time.advance(3599)
    assert world.run().status is RunStatus.PAUSED
    world.time.advance(2)
    assert (world.run().status, world.outbox.states(Kind.RISK)) == (RunStatus.DONE, {"synced": 1})


def test_no_session_key_pauses_risk_sync_and_alerts_but_leaves_writeoffs_alone() -> None:
    world = World(Kind.RISK)
    world.session_key = ""
    world.outbox.add(Kind.RISK, [risk_record(1)])
    report = world.run()
    assert (report.status, report.calls, report.session_alerts) == (RunStatus.PAUSED, 0, 1)
    assert ("TopSessionExpired", "Count", 1) in report.metric_values()
    writeoffs = World(Kind.WRITEOFF)
    writeoffs.session_key = ""
    writeoffs.outbox.add(Kind.WRITEOFF, [writeoff(1)])
    assert writeoffs.run().synced == 1


# ------------------------------------------------------------------------------------------------ deadline
def test_the_run_stops_before_the_deadline_and_the_rest_stays_due() -> None:
    world = World(Kind.RISK, deadline_margin_s=15.0)
    world.outbox.add(Kind.RISK, [risk_record(n) for n in range(1000)])
    world.platform.latency_s = 9.0
    report = world.run(budget_s=56.0)
    assert report.status is RunStatus.DEADLINE
    assert report.calls == 5, "calls start at 56, 47, 38, 29 and 20 s left; at 11 s the run stops"
    assert all(call.started_left_s is not None and call.started_left_s >= 15.0 for call in world.platform.calls)
    assert world.outbox.states(Kind.RISK) == {"synced": 500, "due": 500}


def test_isolation_never_starts_a_call_inside_the_deadline_margin() -> None:
    world = World(Kind.WRITEOFF, deadline_margin_s=15.0)
    payloads = [writeoff(n) for n in range(999)]
    world.outbox.add(Kind.WRITEOFF, payloads)
    world.platform.answer = refuse_records("tb_biz_order_id", {payloads[3]["tb_biz_order_id"]})
    world.platform.latency_s = 9.0
    report = world.run(budget_s=40.0)
    assert all(call.started_left_s is not None and call.started_left_s >= 15.0 for call in world.platform.calls)
    assert report.synced + report.dead + world.outbox.states(Kind.WRITEOFF).get("due", 0) == 999
    assert report.dead == 0, "not isolated to one record yet: nothing is declared dead on a hunch"


# ------------------------------------------------------------------------------------------------ lease
def test_a_run_holds_the_kinds_lease_beyond_its_deadline_and_gives_it_back() -> None:
    world = World(Kind.WRITEOFF, lease_margin_s=30.0)
    world.outbox.add(Kind.WRITEOFF, [writeoff(1)])
    started_ms = world.time.now_ms
    world.run(budget_s=120.0)
    ((name, _, until_ms),) = world.control.lease_history
    assert name == Kind.WRITEOFF.value and until_ms == started_ms + 150_000
    assert world.control.leases == {}, "released at the end"


def test_a_run_finding_the_lease_held_sends_nothing() -> None:
    world = World(Kind.WRITEOFF)
    world.outbox.add(Kind.WRITEOFF, [writeoff(1)])
    world.control.acquire_lease(Kind.WRITEOFF.value, "other-run", until_ms=world.time.now_ms + 60_000, now_ms=0)
    report = world.run()
    assert (report.status, report.calls, world.outbox.due_calls) == (RunStatus.LEASED_ELSEWHERE, 0, 0)
    assert world.control.leases[Kind.WRITEOFF.value][0] == "other-run", "someone else's lease is left alone"


def test_a_flow_paused_by_an_operator_sends_nothing_and_takes_no_lease_until_resumed() -> None:
    world = World(Kind.WRITEOFF)
    ids = world.outbox.add(Kind.WRITEOFF, [writeoff(1), writeoff(2)])
    world.control.operator_pauses[Kind.WRITEOFF.value] = OperatorPause("fixing store ids", world.time.now_ms)
    report = world.run()
    assert (report.status, report.calls, world.outbox.due_calls) == (RunStatus.PAUSED_BY_OPERATOR, 0, 0)
    assert "fixing store ids" in report.detail
    assert world.control.lease_history == [], "a paused run never takes the lease"
    assert world.outbox.states(Kind.WRITEOFF) == {"due": 2}
    # Another kind's flow is not paused; this one runs again once resumed.
    other = World(Kind.RISK)
    other.control = world.control
    other.outbox.add(Kind.RISK, [risk_record(1)])
    assert other.run().status == RunStatus.DONE
    del world.control.operator_pauses[Kind.WRITEOFF.value]
    resumed = world.run()
    assert (resumed.status, resumed.synced) == (RunStatus.DONE, 2)
    assert {world.outbox.get(Kind.WRITEOFF, i).state for i in ids} == {RecordState.SYNCED}


# ------------------------------------------------------------------------------------------------ report
def test_the_report_carries_what_the_handler_emits() -> None:
    world = World(Kind.WRITEOFF, max_attempts=2)
    payloads = [writeoff(n) for n in range(3)]
    world.outbox.add(Kind.WRITEOFF, payloads)
    world.platform.answer = refuse_records("tb_biz_order_id", {payloads[0]["tb_biz_order_id"]})
    report = world.run()
    values = report.metric_values()
    totals = {name: value for name, _, value in values if name.startswith(("Records", "TopCalls"))}
    assert totals == {
        "RecordsSent": report.sent,
        "RecordsSynced": 2,
        "RecordsRetried": 0,
        "RecordsDead": 1,
        "RecordsUnconfirmed": 0,
        "TopCalls": report.calls,
    }
    assert [value for name, _, value in values if name == "BatchSize"] == world.platform.sizes()
    accepted_calls = report.calls - 2  # the whole batch and the poisoned record alone were refused
    assert len([name for name, _, _ in values if name == "PlatformLatency"]) == accepted_calls
    assert report.as_dict()["status"] == "done" and "batch_sizes" not in report.as_dict()
    assert KINDS[Kind.WRITEOFF].method == world.platform.calls[0].method


# ------------------------------------------------------------------------------------------------ odd answers
def only_for(key: str, value: Any, odd: Any) -> Any:
    """Answer ``odd`` (a body or an exception) to calls carrying the record whose ``key`` is ``value``."""
    return lambda call: odd if any(r[key] == value for r in call.records) else accepted(call)


@pytest.mark.parametrize(
    ("body", "state"),
    [
        ({"result": {"success": True, "data": {"material_id": 1}}}, RecordState.SYNCED),  # data not a Boolean
        ({"result": {"success": "true", "data": True}}, RecordState.SYNCED),  # a Boolean as text
        ({"data": 1234, "piggyback": "x"}, RecordState.UNCONFIRMED),  # the refund API's shape: no result
        ({"result": "ok"}, RecordState.UNCONFIRMED),
        ({}, RecordState.UNCONFIRMED),
        ({"success": False, "error_code": "isv.x", "error_msg": "no"}, RecordState.DEAD),  # a refusal, elsewhere
    ],
)
def test_an_odd_writeoff_answer_never_blocks_the_records_behind_it(body: dict[str, Any], state: RecordState) -> None:
    world = World(Kind.WRITEOFF)
    first = world.outbox.add(Kind.WRITEOFF, [writeoff(n) for n in range(999)], due_at=1)
    behind = world.outbox.add(Kind.WRITEOFF, [writeoff(n) for n in range(1000, 1501)], due_at=2)
    world.platform.answer = only_for("service_detail_id", 100000, body)
    report = world.run()
    assert report.status is RunStatus.DONE
    record = world.outbox.get(Kind.WRITEOFF, first[0])
    assert record.state is state
    if state is RecordState.UNCONFIRMED:
        assert report.unconfirmed == 999 and record.attempts == 1 and record.unknown_outcomes == 1
        assert json.loads(record.platform_answer or "null") == body, "the answer is kept as proof"
        assert "not understood" in (record.last_error or "")
    assert all(world.outbox.get(Kind.WRITEOFF, i).state is RecordState.SYNCED for i in behind)
    calls = len(world.platform.calls)
    assert world.run().calls == 0 and len(world.platform.calls) == calls, "nothing is re-sent automatically"


@pytest.mark.parametrize("order_id", ["abc", 12.5, -3, {"id": 1}, None])
def test_an_order_taken_without_a_readable_id_is_unconfirmed_with_the_answer(order_id: Any) -> None:
    world = World(Kind.EXTERNAL_ORDER)
    ids = world.outbox.add(Kind.EXTERNAL_ORDER, [external_order(1), external_order(2)])
    odd = {"result": {"success": True, "data": {"order_id": order_id}}}
    world.platform.answer = lambda call: odd if call.records[0]["idempotent_id"] == ids[0] else accepted(call)
    report = world.run()
    assert (report.synced, report.unconfirmed, len(world.platform.calls)) == (1, 1, 2)
    record = world.outbox.get(Kind.EXTERNAL_ORDER, ids[0])
    assert record.state is RecordState.UNCONFIRMED and record.platform_order_id is None
    assert "no readable platform order id" in (record.last_error or "") and record.platform_answer
    assert record.unknown_outcomes == 0, "the platform took it: only its id is unknown"
    world.time.advance(3600)
    world.run()
    assert len(world.platform.calls) == 2, "never sent again on its own"
    assert world.outbox.get(Kind.EXTERNAL_ORDER, ids[1]).platform_order_id == 10_002


def test_an_unreadable_order_answer_leaves_the_rest_of_the_round_going() -> None:
    world = World(Kind.EXTERNAL_ORDER, external_concurrency=4)
    ids = world.outbox.add(Kind.EXTERNAL_ORDER, [external_order(n) for n in range(31)])
    world.platform.answer = only_for("idempotent_id", ids[2], UnreadableAnswer("answered HTTP 200 with HTML", "<html>"))
    report = world.run()
    assert (report.status, report.synced, report.unconfirmed) == (RunStatus.DONE, 30, 1)
    odd = world.outbox.get(Kind.EXTERNAL_ORDER, ids[2])
    assert odd.state is RecordState.UNCONFIRMED and odd.platform_answer == "<html>"


def test_a_failure_in_one_order_call_never_leaves_the_others_unsettled() -> None:
    world = World(Kind.EXTERNAL_ORDER, external_concurrency=4)
    ids = world.outbox.add(Kind.EXTERNAL_ORDER, [external_order(n) for n in range(8)])
    world.platform.answer = only_for("idempotent_id", ids[5], RuntimeError("a bug"))
    with pytest.raises(RuntimeError, match="a bug"):
        world.run()
    states = {i: world.outbox.get(Kind.EXTERNAL_ORDER, i).state for i in ids}
    assert states.pop(ids[5]) is RecordState.DUE
    assert set(states.values()) == {RecordState.SYNCED}
    assert world.control.leases == {}, "the lease is released"


# ------------------------------------------------------------------------------------------------ unknown outcomes
def test_unknown_outcomes_are_counted_get_longer_timeouts_and_end_unconfirmed_not_dead() -> None:
    world = World(Kind.WRITEOFF, max_attempts=3, call_timeout_s=10.0, call_timeout_cap_s=40.0)
    ids = world.outbox.add(Kind.WRITEOFF, [writeoff(1)])
    world.platform.answer = lambda call: UnknownOutcome("timed out after 10 s; outcome unknown")
    for _ in range(3):
        world.run()
        world.time.advance(3600)
    record = world.outbox.get(Kind.WRITEOFF, ids[0])
    assert record.state is RecordState.UNCONFIRMED and record.unknown_outcomes == 3 and record.attempts == 3
    assert "3 with unknown outcome" in (record.last_error or "")
    assert [call.timeout_s for call in world.platform.calls] == [None, 20.0, 40.0], "None: the client's own"
    assert {call.retry_unknown for call in world.platform.calls} == {False}, "writeoffs are not deduped"


def test_external_orders_may_be_resent_inside_a_call_the_platform_dedupes_them() -> None:
    world = World(Kind.EXTERNAL_ORDER)
    world.outbox.add(Kind.EXTERNAL_ORDER, [external_order(1)])
    world.run()
    assert [call.retry_unknown for call in world.platform.calls] == [True]


def test_a_record_out_of_attempts_without_unknown_outcomes_is_dead() -> None:
    world = World(Kind.WRITEOFF, max_attempts=2)
    ids = world.outbox.add(Kind.WRITEOFF, [writeoff(1)], attempts=1)
    world.platform.answer = lambda call: TopTransientError(15, "Remote service error", "isp.remote-service-error")
    world.run()
    assert world.outbox.get(Kind.WRITEOFF, ids[0]).state is RecordState.DEAD


# ------------------------------------------------------------------------------------------------ time
def test_every_call_is_told_the_margin_and_the_settle_reserve() -> None:
    world = World(Kind.WRITEOFF, deadline_margin_s=15.0)
    world.outbox.add(Kind.WRITEOFF, [writeoff(1)])
    world.run(budget_s=100.0)
    (call,) = world.platform.calls
    end = world.platform.deadline_end
    assert end is not None and call.start_by == end - 15.0 and call.deadline == end - 5.0


# ------------------------------------------------------------------------------------------------ settling
def test_a_settle_write_that_fails_is_retried_and_nothing_is_resent() -> None:
    world = World(Kind.WRITEOFF)
    world.outbox.add(Kind.WRITEOFF, [writeoff(n) for n in range(1500)])
    world.outbox.fail_settles = 2
    report = world.run()
    assert (report.status, report.synced, world.outbox.failed_settles) == (RunStatus.DONE, 1500, 2)
    assert world.platform.sizes() == [999, 501], "each record sent once"


def test_a_settle_that_keeps_failing_stops_the_run_naming_it_and_only_the_unsettled_stay_due() -> None:
    world = World(Kind.WRITEOFF)
    world.outbox.add(Kind.WRITEOFF, [writeoff(n) for n in range(1500)])
    sizes: list[int] = []

    def fail_from_the_second(call: PlatformCall) -> Any:
        sizes.append(len(call.records))
        if len(sizes) == 2:  # the first batch is settled while the second is at the platform: let it finish
            assert world.outbox.wait_until(lambda: len(world.outbox.settle_calls) == 1)
            world.outbox.fail_settles = 10**6
        return accepted(call)

    world.platform.answer = fail_from_the_second
    report = world.run(budget_s=60.0)
    assert report.status is RunStatus.STORAGE_FAILED and report.detail.startswith("settling 501 records failed")
    assert world.outbox.states(Kind.WRITEOFF) == {"synced": 999, "due": 501}
    assert world.control.leases == {}
    assert ("SyncStorageFailed", "Count", 1) in report.metric_values()


def test_storage_failing_before_any_call_ends_the_run_as_a_storage_failure() -> None:
    world = World(Kind.WRITEOFF)
    world.outbox.add(Kind.WRITEOFF, [writeoff(1)])

    def broken(kind: Kind, *, now_ms: int, limit: int, held: Any = ()) -> Any:
        raise StorageError("reading due records (Query) failed: InternalServerError")

    world.outbox.due = broken  # type: ignore[method-assign]
    report = world.run()
    assert (report.status, report.calls) == (RunStatus.STORAGE_FAILED, 0) and "Query" in report.detail
    assert world.control.leases == {}


def test_a_daily_quota_ban_is_probed_again_within_the_hour() -> None:
    world = World(Kind.WRITEOFF)
    world.outbox.add(Kind.WRITEOFF, [writeoff(1)])
    world.platform.answer = lambda call: TopRateLimited(
        7, "limited", "accesscontrol.limited-by-app-access-count", retry_after_s=14 * 3600, daily_quota=True
    )
    world.run()
    assert world.control.ban_until(APP_BAN_SCOPE) == world.time.now_ms + int(DAILY_QUOTA_PROBE_S * 1000)
    world.platform.answer = accepted
    world.time.advance(DAILY_QUOTA_PROBE_S + 1)
    assert world.run().synced == 1


# ------------------------------------------------------------------------------------------------ overlap
def test_while_a_batch_is_at_the_platform_the_next_is_read_and_the_previous_settled() -> None:
    world = World(Kind.WRITEOFF)
    world.outbox.add(Kind.WRITEOFF, [writeoff(n) for n in range(3000)])
    overlapped: list[bool] = []

    def answer(call: PlatformCall) -> Any:
        number = len(world.platform.calls)
        # Call N waits (real time) for the read of batch N+1 and the settle of batch N-1: it returns only when
        # both happened while it was in flight, or after 5 s if the runner does them one after the other.
        overlapped.append(
            world.outbox.wait_until(
                lambda: world.outbox.due_calls > number and len(world.outbox.settle_calls) >= number - 1
            )
        )
        return accepted(call)

    world.platform.answer = answer
    report = world.run()
    assert (report.status, report.synced, world.platform.sizes()) == (RunStatus.DONE, 3000, [999, 999, 999, 3])
    assert overlapped == [True] * 4
    assert world.outbox.due_calls == 5, "four batches, and the read ahead of the last one came back empty"


def test_a_read_ahead_never_returns_records_the_run_still_holds() -> None:
    world = World(Kind.WRITEOFF)
    world.outbox.add(Kind.WRITEOFF, [writeoff(n) for n in range(3000)])
    # The first batch's settle waits until the third batch was read: at that moment batch 1 is still due in the
    # outbox (not settled) and batch 2 is at the platform, and both are the oldest due records.
    first_settle = True

    def hold_the_first_settle(settlements: Any) -> None:
        nonlocal first_settle
        if first_settle:
            first_settle = False
            assert world.outbox.wait_until(lambda: world.outbox.due_calls >= 3)

    world.outbox.before_settle = hold_the_first_settle
    report = world.run()
    assert (report.status, report.synced) == (RunStatus.DONE, 3000)
    sent = [r["service_detail_id"] for call in world.platform.calls for r in call.records]
    assert len(sent) == len(set(sent)) == 3000, "no record sent twice"
    read = [record_id for answer in world.outbox.due_answers for record_id in answer]
    assert len(read) == len(set(read)) == 3000, "no record read twice"


def test_a_settle_failing_for_the_previous_batch_while_one_is_in_flight_stops_after_settling_that_one() -> None:
    world = World(Kind.WRITEOFF)
    ids = world.outbox.add(Kind.WRITEOFF, [writeoff(n) for n in range(3000)])
    first_batch = set(ids[:999])
    world.outbox.refuse_settle = lambda settlements: settlements[0].record.record_id in first_batch
    # Batch 1's settle starts once batch 2 is at the platform (its retries use up the run's time).
    world.outbox.before_settle = lambda settlements: world.outbox.wait_until(lambda: len(world.platform.calls) >= 2)

    def answer(call: PlatformCall) -> Any:
        if len(world.platform.calls) == 2:  # batch 1's settle fails for good while batch 2 is at the platform
            assert world.outbox.wait_until(lambda: world.outbox.failed_settles >= 1)
        return accepted(call)

    world.platform.answer = answer
    report = world.run(budget_s=60.0)
    assert report.status is RunStatus.STORAGE_FAILED
    assert report.detail.startswith("settling 999 records failed"), "names the settle that failed"
    assert world.platform.sizes() == [999, 999], "no call after the failure was known"
    states = {i: world.outbox.get(Kind.WRITEOFF, i).state for i in ids}
    assert {states[i] for i in ids[:999]} == {RecordState.DUE}, "batch 1: sent, not settled, still due"
    assert {states[i] for i in ids[999:1998]} == {RecordState.SYNCED}, "batch 2 in flight was settled"
    assert {states[i] for i in ids[1998:]} == {RecordState.DUE}, "batch 3 read ahead, never sent"
    assert report.synced == 999 and world.control.leases == {}


def test_a_stop_while_a_batch_is_in_flight_still_settles_the_previous_batch() -> None:
    world = World(Kind.WRITEOFF)
    ids = world.outbox.add(Kind.WRITEOFF, [writeoff(n) for n in range(3000)])

    def answer(call: PlatformCall) -> Any:
        if len(world.platform.calls) == 2:
            return TopRateLimited(7, "limited", "accesscontrol.limited-by-api-access-count", retry_after_s=60)
        return accepted(call)

    world.platform.answer = answer
    report = world.run()
    assert report.status is RunStatus.RATE_LIMITED
    assert world.outbox.states(Kind.WRITEOFF) == {"synced": 999, "due": 2001}
    assert all(world.outbox.get(Kind.WRITEOFF, i).attempts == 0 for i in ids[999:])


def test_on_a_ban_every_order_worker_stops_taking_orders_at_once() -> None:
    world = World(Kind.EXTERNAL_ORDER, external_concurrency=8)
    world.platform.hold_s = 0.01
    ids = world.outbox.add(Kind.EXTERNAL_ORDER, [external_order(n) for n in range(200)])
    ban_at: list[int] = []  # calls started when the platform answered with the ban
    refused: list[str] = []

    def answer(call: PlatformCall) -> Any:
        # The ban meets the call of order 20 and every call started after it; calls the platform had already
        # received complete.
        record_id = call.records[0]["idempotent_id"]
        position = world.platform.calls.index(call)
        if record_id == ids[20] and not ban_at:
            ban_at.append(len(world.platform.calls))
        if not ban_at or (position < ban_at[0] and record_id != ids[20]):
            return accepted(call)
        refused.append(record_id)
        return TopRateLimited(7, "limited", "accesscontrol.limited-by-api-access-count", retry_after_s=60)

    store_ban = world.control.set_ban

    def slow_set_ban(scope: str, *, until_ms: int, reason: str) -> None:
        threading.Event().wait(0.3)  # storing the ban takes a while: the other workers must not go on meanwhile
        store_ban(scope, until_ms=until_ms, reason=reason)

    world.control.set_ban = slow_set_ban  # type: ignore[method-assign]
    world.platform.answer = answer
    report = world.run()
    assert report.status is RunStatus.RATE_LIMITED
    # Only calls already in flight go on. (One may slip in between the ban's answer and the workers being told:
    # microseconds, against the 0.3 s each worker would otherwise keep taking orders.)
    assert len(world.platform.calls) - ban_at[0] <= 1
    assert world.control.ban_until(Kind.EXTERNAL_ORDER.value) is not None
    assert world.outbox.states(Kind.EXTERNAL_ORDER) == {"synced": report.synced, "due": 200 - report.synced}
    assert all(world.outbox.get(Kind.EXTERNAL_ORDER, i).attempts == 0 for i in refused), "a ban is no attempt"


def test_a_run_stopping_at_the_deadline_does_not_wait_for_a_read_ahead_it_will_not_use() -> None:
    world = World(Kind.RISK, deadline_margin_s=15.0)
    world.outbox.add(Kind.RISK, [risk_record(n) for n in range(300)])
    world.platform.latency_s = 30.0  # the first call leaves too little time for a second one
    read = world.outbox.due
    release = threading.Event()

    def slow_read_ahead(kind: Kind, *, now_ms: int, limit: int, held: Any = ()) -> Any:
        if held:
            release.wait(10)  # real seconds: DynamoDB slow to answer
        return read(kind, now_ms=now_ms, limit=limit, held=held)

    world.outbox.due = slow_read_ahead  # type: ignore[method-assign]
    started = time.monotonic()
    report = world.run(budget_s=40.0)
    elapsed = time.monotonic() - started
    release.set()
    assert (report.status, report.calls, report.synced) == (RunStatus.DEADLINE, 1, 100)
    assert elapsed < 5, "the run returned without the read it no longer needed"
