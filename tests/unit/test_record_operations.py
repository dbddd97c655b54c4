"""Operators' record operations against moto over HTTP (table from template.yaml): the sparse attention index,
listing by state with a cursor, retry and bulk retry, replacement of a dead record on intake, counts, the operator
pause and the synced counters. The routes over the local stack are tests/integration/test_operations.py."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime
from typing import Any

import pytest
from botocore.exceptions import ReadTimeoutError

from taobao_bridge.kinds import Kind
from taobao_bridge.operations import InvalidParameter, Operations, operator_view
from taobao_bridge.outbox import (
    AcceptIncomplete,
    AcceptStatus,
    Dead,
    InvalidCursor,
    NotRetryable,
    OutboxStore,
    RecordOperations,
    RecordState,
    Retry,
    RunControl,
    Settlement,
    Synced,
    Unconfirmed,
)
from taobao_bridge.outbox.items import record_from_item, settled_item
from taobao_bridge.outbox.operations import decode_cursor, encode_cursor
from taobao_bridge.sync import SyncRunner
from taobao_bridge.sync.scheduled import CountingOutbox
from tests.fakes import ScriptedPlatform
from tests.unit.test_outbox import (  # noqa: F401 - pytest fixtures
    START,
    TABLE,
    FrozenClock,
    RequestLog,
    client,
    clock,
    control,
    endpoint,
    external_order,
    raw_item,
    store,
    writeoff,
    writeoffs,
)


@pytest.fixture
def ops(client: Any, clock: FrozenClock) -> RecordOperations:  # noqa: F811
    return RecordOperations(TABLE, client=client, clock=clock)


def settle_dead(store: OutboxStore, records: list[tuple[str, dict[str, Any]]], reason: str = "isv.bad: no") -> None:  # noqa: F811
    store.accept(Kind.WRITEOFF, records)
    found = [store.get(Kind.WRITEOFF, record_id) for record_id, _ in records]
    store.settle([Dead(record, reason) for record in found if record is not None])


# ---------------------------------------------------------------------------------------- items and cursors
def test_only_dead_and_unconfirmed_records_carry_the_attention_keys() -> None:
    records = writeoffs(1)
    item = settled_item(Synced(record_from_item(_due_item(records[0])), {"ok": True}), START, retention_days=30)
    assert "attention_key" not in item and "attention_at" not in item
    record = record_from_item(_due_item(records[0]))
    cases: list[tuple[Settlement, str]] = [
        (Dead(record, "isv.x"), "writeoff#dead"),
        (Unconfirmed(record, "unreadable", "<html>"), "writeoff#unconfirmed"),
    ]
    for settlement, key in cases:
        item = settled_item(settlement, START, retention_days=30)
        assert item["attention_key"] == {"S": key}
        assert item["attention_at"] == {"N": str(int(START.timestamp() * 1000))}
    retried = settled_item(Retry(record, "isp.busy", 1), START, retention_days=30)
    assert "attention_key" not in retried and retried["due_kind"] == {"S": "writeoff"}


def _due_item(record: tuple[str, dict[str, Any]]) -> dict[str, Any]:
    from taobao_bridge.outbox.items import new_item
    from taobao_bridge.outbox.records import payload_sha256

    record_id, payload = record
    return new_item(Kind.WRITEOFF, record_id, payload, payload_sha256(payload), START, "a1")


def test_a_cursor_reads_back_only_for_its_kind_and_state() -> None:
    key = {"pk": {"S": "writeoff#1-2-bB"}, "attention_key": {"S": "writeoff#dead"}, "attention_at": {"N": "17"}}
    cursor = encode_cursor(RecordState.DEAD, key)
    assert "=" not in cursor and "/" not in cursor and "+" not in cursor  # safe in a query string as is
    assert decode_cursor(cursor, Kind.WRITEOFF, RecordState.DEAD) == key
    with pytest.raises(InvalidCursor, match="state"):
        decode_cursor(cursor, Kind.WRITEOFF, RecordState.UNCONFIRMED)
    with pytest.raises(InvalidCursor, match="kind"):
        decode_cursor(cursor, Kind.RISK, RecordState.DEAD)

    def forged(document: Any) -> str:
        return base64.urlsafe_b64encode(json.dumps(document).encode()).decode().rstrip("=")

    bad = [
        "",
        "not base64!",
        "x" * 5000,
        forged([1]),
        forged({"state": "dead"}),
        forged({"state": "dead", "key": {"pk": "writeoff#1", "attention_key": "writeoff#dead"}}),
        forged({"state": "dead", "key": {"pk": "risk#1", "attention_key": "writeoff#dead", "attention_at": 1}}),
        forged({"state": "dead", "key": {"pk": "writeoff#1", "attention_key": "writeoff#dead", "attention_at": "1"}}),
        forged({"state": "dead", "key": {"pk": "writeoff#1", "attention_key": "writeoff#dead", "attention_at": True}}),
    ]
    for cursor in bad:
        with pytest.raises(InvalidCursor):
            decode_cursor(cursor, Kind.WRITEOFF, RecordState.DEAD)


# ------------------------------------------------------------------------------------------------ listing
def test_dead_records_are_listed_oldest_first_across_pages_without_a_scan(
    store: OutboxStore,  # noqa: F811
    ops: RecordOperations,
    clock: FrozenClock,  # noqa: F811
    client: Any,  # noqa: F811
) -> None:
    ids = []
    for n in range(23):
        records = writeoffs(1, start=n)
        settle_dead(store, records, reason=f"isv.bad: {n}")
        ids.append(records[0][0])
        clock.advance(seconds=1)
    log = RequestLog(client)
    seen: list[str] = []
    pages = 0
    after = None
    while True:
        page = ops.list(Kind.WRITEOFF, RecordState.DEAD, after=after, limit=10)
        pages += 1
        seen += [record.record_id for record in page.records]
        if not page.has_more:
            assert page.next is None
            break
        after = page.next
    assert seen == ids and pages == 3
    assert {name for name, _ in log.calls} == {"Query", "BatchGetItem"}
    assert all(params["IndexName"] == "attention-index" for params in log.of("Query"))
    assert ops.list(Kind.WRITEOFF, RecordState.UNCONFIRMED).records == []
    assert ops.list(Kind.RISK, RecordState.DEAD).records == []


def test_an_exact_page_says_there_is_nothing_more(store: OutboxStore, ops: RecordOperations) -> None:  # noqa: F811
    settle_dead(store, writeoffs(5))
    page = ops.list(Kind.WRITEOFF, RecordState.DEAD, limit=5)
    assert (len(page.records), page.has_more, page.next) == (5, False, None)


def test_a_listed_record_that_left_the_state_is_dropped(
    store: OutboxStore,  # noqa: F811
    ops: RecordOperations,
    client: Any,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    settle_dead(store, writeoffs(3))
    synced = store.get(Kind.WRITEOFF, writeoffs(1, start=1)[0][0])
    assert synced is not None
    original = client.query

    def lagging(**request: Any) -> Any:  # the index still lists a record that was just retried and synced
        answer = original(**request)
        store.settle([Synced(synced, {"ok": True})])
        return answer

    monkeypatch.setattr(client, "query", lagging)
    page = ops.list(Kind.WRITEOFF, RecordState.DEAD)
    assert [r.record_id for r in page.records] == [writeoffs(1, start=n)[0][0] for n in (0, 2)]


def test_due_records_are_listed_from_the_due_index(store: OutboxStore, ops: RecordOperations) -> None:  # noqa: F811
    store.accept(Kind.WRITEOFF, writeoffs(3))
    page = ops.list(Kind.WRITEOFF, RecordState.DUE, limit=2)
    assert len(page.records) == 2 and page.has_more
    rest = ops.list(Kind.WRITEOFF, RecordState.DUE, after=page.next, limit=2)
    assert len(rest.records) == 1 and not rest.has_more
    with pytest.raises(InvalidCursor):  # a due cursor is not a dead one
        ops.list(Kind.WRITEOFF, RecordState.DEAD, after=page.next)


# ------------------------------------------------------------------------------------------------- retry
def test_a_retry_makes_a_dead_record_due_now_and_keeps_its_last_error(
    store: OutboxStore,  # noqa: F811
    ops: RecordOperations,
    client: Any,  # noqa: F811
    clock: FrozenClock,  # noqa: F811
) -> None:
    records = writeoffs(1)
    settle_dead(store, records, reason="isv.invalid-parameter: bad store")
    record_id = records[0][0]
    clock.advance(minutes=5)
    retried = ops.retry(Kind.WRITEOFF, record_id)
    assert retried is not None
    assert (retried.state, retried.attempts, retried.replays, retried.due_at) == ("due", 0, 1, clock.ms)
    assert retried.last_error == "isv.invalid-parameter: bad store" and retried.dead_reason is None
    item = raw_item(client, f"writeoff#{record_id}")
    assert not {"attention_key", "attention_at", "expires_at", "settled_at"} & set(item), "due records never expire"
    assert [r.record_id for r in store.due(Kind.WRITEOFF, now_ms=clock.ms, limit=10)] == [record_id]
    assert ops.list(Kind.WRITEOFF, RecordState.DEAD).records == []
    # Dead again and retried again: the replays add up (settling keeps them).
    again = store.get(Kind.WRITEOFF, record_id)
    assert again is not None
    store.settle([Dead(again, "isv.x")])
    assert ops.retry(Kind.WRITEOFF, record_id).replays == 2  # type: ignore[union-attr]
    assert operator_view(store.get(Kind.WRITEOFF, record_id))["replays"] == 2  # type: ignore[arg-type]


def test_only_dead_or_unconfirmed_records_are_retried(store: OutboxStore, ops: RecordOperations) -> None:  # noqa: F811
    records = writeoffs(2)
    store.accept(Kind.WRITEOFF, records)
    with pytest.raises(NotRetryable) as due:
        ops.retry(Kind.WRITEOFF, records[0][0])
    assert due.value.state == "due"
    synced = store.get(Kind.WRITEOFF, records[1][0])
    store.settle([Synced(synced, {"ok": True})])  # type: ignore[arg-type]
    with pytest.raises(NotRetryable) as done:
        ops.retry(Kind.WRITEOFF, records[1][0])
    assert done.value.state == "synced"
    assert ops.retry(Kind.WRITEOFF, "no-such-record") is None
    assert ops.retry(Kind.RISK, records[0][0]) is None  # another kind's key


def test_an_unconfirmed_record_is_retried_keeping_its_unknown_outcomes(
    store: OutboxStore,  # noqa: F811
    ops: RecordOperations,
) -> None:
    records = writeoffs(1)
    store.accept(Kind.WRITEOFF, records)
    record = store.get(Kind.WRITEOFF, records[0][0])
    store.settle([Unconfirmed(record, "answer unreadable", "<html>")])  # type: ignore[arg-type]
    (listed,) = ops.list(Kind.WRITEOFF, RecordState.UNCONFIRMED).records
    assert operator_view(listed)["platform_answer"] == "<html>"
    retried = ops.retry(Kind.WRITEOFF, records[0][0])
    assert retried is not None and (retried.state, retried.unknown_outcomes) == ("due", 1)


def test_a_bulk_dry_run_changes_nothing_and_a_real_one_retries_oldest_first(
    store: OutboxStore,  # noqa: F811
    ops: RecordOperations,
    clock: FrozenClock,  # noqa: F811
) -> None:
    ids = []
    for n in range(5):
        records = writeoffs(1, start=n)
        settle_dead(store, records)
        ids.append(records[0][0])
        clock.advance(seconds=1)
    dry = ops.retry_state(Kind.WRITEOFF, RecordState.DEAD, limit=3, dry_run=True)
    assert (dry.matched, dry.retried, dry.ids, dry.has_more) == (3, 0, ids[:3], True)
    assert ops.counts(Kind.WRITEOFF).dead == 5
    done = ops.retry_state(Kind.WRITEOFF, RecordState.DEAD, limit=3, dry_run=False)
    assert (done.matched, done.retried, sorted(done.ids)) == (3, 3, sorted(ids[:3]))
    counts = ops.counts(Kind.WRITEOFF)
    assert (counts.dead, counts.due) == (2, 3)
    with pytest.raises(ValueError):
        ops.retry_state(Kind.WRITEOFF, RecordState.DUE, dry_run=True)


# ------------------------------------------------------------------------------------------- replacement
def test_corrected_content_replaces_a_dead_record_and_only_a_dead_one(
    store: OutboxStore,  # noqa: F811
    ops: RecordOperations,
    client: Any,  # noqa: F811
) -> None:
    dead = writeoffs(1, tb_store_id=1)
    settle_dead(store, dead)
    record_id = dead[0][0]
    assert store.accept(Kind.WRITEOFF, dead)[0].status is AcceptStatus.DUPLICATE  # same content: retry is the way
    corrected = writeoffs(1)
    assert corrected[0][0] == record_id
    (result,) = store.accept(Kind.WRITEOFF, corrected)
    assert (result.status, result.state) == (AcceptStatus.REPLACED, RecordState.DUE)
    stored = store.get(Kind.WRITEOFF, record_id)
    assert stored is not None and stored.payload["tb_store_id"] == 2343432 and stored.attempts == 0
    assert "attention_key" not in raw_item(client, f"writeoff#{record_id}")
    assert ops.counts(Kind.WRITEOFF).dead == 0
    # Now due: other content is a conflict again; the same content a duplicate.
    assert store.accept(Kind.WRITEOFF, writeoffs(1, service_status=3))[0].status is AcceptStatus.CONFLICT
    assert store.accept(Kind.WRITEOFF, corrected)[0].status is AcceptStatus.DUPLICATE
    # Synced and unconfirmed records keep refusing changed content.
    store.settle([Synced(stored, {"ok": True})])
    assert store.accept(Kind.WRITEOFF, writeoffs(1, service_status=3))[0].status is AcceptStatus.CONFLICT
    other = writeoffs(1, start=7)
    store.accept(Kind.WRITEOFF, other)
    store.settle([Unconfirmed(store.get(Kind.WRITEOFF, other[0][0]), "unreadable")])  # type: ignore[arg-type]
    assert store.accept(Kind.WRITEOFF, writeoffs(1, start=7, tb_store_id=1))[0].status is AcceptStatus.CONFLICT


def test_a_replacement_among_new_records_and_repeats_in_one_call(store: OutboxStore) -> None:  # noqa: F811
    settle_dead(store, writeoffs(1, tb_store_id=1))
    corrected = writeoffs(1)
    batch = [*writeoffs(2, start=10), corrected[0], corrected[0], writeoffs(1, tb_store_id=5)[0]]
    statuses = [r.status for r in store.accept(Kind.WRITEOFF, batch)]
    assert statuses == ["accepted", "accepted", "replaced", "duplicate", "conflict"]


def test_a_replacement_whose_answer_was_lost_still_answers_replaced(
    store: OutboxStore,  # noqa: F811
    client: Any,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    settle_dead(store, writeoffs(1, tb_store_id=1))
    original = client.put_item
    calls = []

    def applied_then_lost(**request: Any) -> Any:
        calls.append(request)
        answer = original(**request)
        if len(calls) == 2:  # the replacement itself: applied, but its answer never arrives
            raise ReadTimeoutError(endpoint_url="http://dynamodb")
        return answer

    monkeypatch.setattr(client, "put_item", applied_then_lost)
    (result,) = store.accept(Kind.WRITEOFF, writeoffs(1))
    assert result.status is AcceptStatus.REPLACED and len(calls) == 3


def test_an_accept_that_fails_on_a_dead_record_says_not_stored(
    store: OutboxStore,  # noqa: F811
    client: Any,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    settle_dead(store, writeoffs(1, tb_store_id=1))

    def down(**request: Any) -> Any:
        raise ReadTimeoutError(endpoint_url="http://dynamodb")

    monkeypatch.setattr(client, "put_item", down)
    with pytest.raises(AcceptIncomplete) as failed:
        store.accept(Kind.WRITEOFF, writeoffs(1))
    assert [r.status for r in failed.value.results] == [AcceptStatus.NOT_STORED]  # the dead one is still there


# ------------------------------------------------------------------------------------------------ counts
def test_counts_come_from_index_counts_and_the_oldest_due_record(
    store: OutboxStore,  # noqa: F811
    ops: RecordOperations,
    clock: FrozenClock,  # noqa: F811
    client: Any,  # noqa: F811
) -> None:
    store.accept(Kind.WRITEOFF, writeoffs(4))
    first_due = clock.ms
    later = store.get(Kind.WRITEOFF, writeoffs(1, start=3)[0][0])
    store.settle([Retry(later, "isp.busy", first_due + 3_600_000)])  # type: ignore[arg-type]
    settle_dead(store, writeoffs(2, start=10))
    unconfirmed = writeoffs(1, start=20)
    store.accept(Kind.WRITEOFF, unconfirmed)
    store.settle([Unconfirmed(store.get(Kind.WRITEOFF, unconfirmed[0][0]), "?")])  # type: ignore[arg-type]
    clock.advance(seconds=90)
    log = RequestLog(client)
    counts = ops.counts(Kind.WRITEOFF)
    assert (counts.due, counts.due_now, counts.dead, counts.unconfirmed) == (4, 3, 2, 1)
    assert counts.oldest_due_at == first_due
    assert {name for name, _ in log.calls} == {"Query"}
    assert sum(params.get("Select") == "COUNT" for params in log.of("Query")) == 4
    empty = ops.counts(Kind.RISK)
    assert (empty.due, empty.dead, empty.oldest_due_at) == (0, 0, None)


def test_synced_counters_add_once_per_settle_and_sum_over_the_retention(
    store: OutboxStore,  # noqa: F811
    control: RunControl,  # noqa: F811
    clock: FrozenClock,  # noqa: F811
    client: Any,  # noqa: F811
) -> None:
    outbox = CountingOutbox(store, control)
    log = RequestLog(client)
    for day in range(3):
        records = writeoffs(2, start=10 * day)
        store.accept(Kind.WRITEOFF, records)
        found = [store.get(Kind.WRITEOFF, record_id) for record_id, _ in records]
        log.clear()
        outbox.settle([Synced(found[0], {"ok": True}), Dead(found[1], "isv.x")])  # type: ignore[arg-type]
        assert [params["Key"]["pk"]["S"] for params in log.of("UpdateItem")] == [f"count#writeoff#{clock():%Y-%m-%d}"]
        clock.advance(days=1)
    assert control.synced_counts(["writeoff", "risk"], days=30) == {"writeoff": 3, "risk": 0}
    assert control.synced_counts(["writeoff"], days=1) == {"writeoff": 1}, "today (nothing yet) and yesterday"
    item = raw_item(client, f"count#writeoff#{START:%Y-%m-%d}")
    # Kept as long as the records synced that day: 30 days after the day ends.
    assert int(item["expires_at"]["N"]) == int(datetime(2026, 4, 1, tzinfo=UTC).timestamp())


# -------------------------------------------------------------------------------------------- control
def test_an_operator_pause_is_apart_from_the_session_pause(control: RunControl, clock: FrozenClock) -> None:  # noqa: F811
    assert control.operator_pause("writeoff") is None
    control.set_operator_pause("writeoff", reason="store ids being fixed")
    clock.advance(minutes=1)
    control.set_operator_pause("writeoff", reason="still fixing")
    pause = control.operator_pause("writeoff")
    assert pause is not None and pause.reason == "still fixing" and pause.since_ms == clock.ms - 60_000
    assert control.pause("writeoff") is None, "not a session pause"
    control.set_pause("writeoff", reason="session", fingerprint="f")
    assert control.clear_operator_pause("writeoff") is True
    assert control.clear_operator_pause("writeoff") is False
    assert control.pause("writeoff") is not None, "the session pause is left alone"


def test_a_run_of_a_flow_paused_by_an_operator_reads_one_item_and_sends_nothing(
    store: OutboxStore,  # noqa: F811
    control: RunControl,  # noqa: F811
    client: Any,  # noqa: F811
) -> None:
    from tests.fakes import FakeTime

    store.accept(Kind.WRITEOFF, writeoffs(2))
    control.set_operator_pause("writeoff", reason="hold")
    platform = ScriptedPlatform(FakeTime())
    log = RequestLog(client)
    report = SyncRunner(Kind.WRITEOFF, store, control, platform).run(lambda: 60_000)
    assert (report.status, platform.calls) == ("paused_by_operator", [])
    assert [name for name, _ in log.calls] == ["GetItem"]


# ------------------------------------------------------------------------------------------- parameters
def test_operations_name_the_parameter_they_refuse(ops: RecordOperations, control: RunControl) -> None:  # noqa: F811
    operations = Operations(ops, control, retention_days=30)
    cases: list[tuple[Any, str]] = [
        (lambda: operations.list_records("writeoffs", {}), "state"),
        (lambda: operations.list_records("writeoffs", {"state": "synced"}), "state"),
        (lambda: operations.list_records("writeoffs", {"state": "dead", "limit": "0"}), "limit"),
        (lambda: operations.list_records("writeoffs", {"state": "dead", "limit": "1001"}), "limit"),
        (lambda: operations.list_records("writeoffs", {"state": "dead", "limit": "-1"}), "limit"),
        (lambda: operations.list_records("writeoffs", {"state": "dead", "after": "%%"}), "after"),
        (lambda: operations.list_records("writeoffs", {"state": "dead", "sate": "x"}), "sate"),
        (lambda: operations.retry_records("writeoffs", b'{"state":"due"}'), "state"),
        (lambda: operations.retry_records("writeoffs", b'{"state":"dead","dry_run":"yes"}'), "dry_run"),
        (lambda: operations.retry_records("writeoffs", b'{"state":"dead","limit":"5"}'), "limit"),
        (lambda: operations.retry_records("writeoffs", b'{"state":"dead","limt":5}'), "limt"),
        (lambda: operations.retry_records("writeoffs", b"[1]"), "body"),
        (lambda: operations.pause_flow("writeoff", b"{}"), "reason"),
        (lambda: operations.pause_flow("writeoff", b'{"reason":"  "}'), "reason"),
    ]
    for call, parameter in cases:
        with pytest.raises(InvalidParameter) as refused:
            call()
        assert refused.value.parameter == parameter
        assert str(refused.value).startswith(f"{parameter}: ")
