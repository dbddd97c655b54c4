"""The outbox store against moto over HTTP, with the DynamoDB requests it sends counted and inspected.

moto is more lenient than DynamoDB (it takes 26 puts in a batch write, more than 4 MB in a transaction):
the limits are checked here on the requests our code builds, not on what moto lets through. Accepting sends one
conditional PutItem per record, several at once: tests that need one order of requests accept with one put at a
time (``one_put_at_a_time``).
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError, ReadTimeoutError
from moto.server import ThreadedMotoServer

from bridge_local import moto_fixes
from bridge_local.request_counter import RequestCounter
from bridge_local.template import create_local_tables, load_template
from taobao_bridge import dynamo
from taobao_bridge.errors import StorageError
from taobao_bridge.intake import parse_records, public_view
from taobao_bridge.kinds import Kind
from taobao_bridge.outbox import (
    MAX_ACCEPT_ITEM_BYTES,
    AcceptIncomplete,
    Dead,
    OutboxRecord,
    OutboxStore,
    Pause,
    RecordState,
    RecordTooLarge,
    Retry,
    RunControl,
    Synced,
    is_still_due,
    payload_sha256,
)
from taobao_bridge.outbox import accept as accept_module

TABLE = "OutboxTable"
START = datetime(2026, 3, 1, 4, 0, tzinfo=UTC)


# ------------------------------------------------------------------------------------------------ fixtures
class FrozenClock:
    def __init__(self, moment: datetime = START) -> None:
        self.moment = moment

    def __call__(self) -> datetime:
        return self.moment

    def advance(self, **delta: float) -> None:
        self.moment += timedelta(**delta)

    @property
    def ms(self) -> int:
        return int(self.moment.timestamp() * 1000)


class RequestLog:
    """The parameters of every request a client sends, by operation name."""

    def __init__(self, client: Any) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []
        client.meta.events.register("before-parameter-build.dynamodb", self._record)

    def _record(self, params: dict[str, Any], model: Any, **_: Any) -> None:
        self.calls.append((model.name, params))

    def of(self, operation: str) -> list[dict[str, Any]]:
        return [params for name, params in self.calls if name == operation]

    def clear(self) -> None:
        self.calls.clear()


@pytest.fixture(scope="session")
def endpoint() -> Iterator[str]:
    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one line per request otherwise
    moto_fixes.apply()  # the same moto the local stack runs
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


def new_client(endpoint: str) -> Any:
    return boto3.client(
        "dynamodb",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


@pytest.fixture
def client(endpoint: str) -> Any:
    """A client and a fresh OutboxTable built from template.yaml, so every test starts empty."""
    client = new_client(endpoint)
    if TABLE in client.list_tables()["TableNames"]:
        client.delete_table(TableName=TABLE)
    create_local_tables(client, load_template())
    return client


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock()


@pytest.fixture
def counter(client: Any) -> RequestCounter:
    counter = RequestCounter()
    counter.attach(client)
    return counter


@pytest.fixture
def log(client: Any) -> RequestLog:
    return RequestLog(client)


@pytest.fixture
def store(client: Any, clock: FrozenClock) -> OutboxStore:
    return OutboxStore(TABLE, client=client, clock=clock, retention_days=30)


@pytest.fixture
def control(client: Any, clock: FrozenClock) -> RunControl:
    return RunControl(TABLE, client=client, clock=clock)


def writeoff(n: int, **changes: Any) -> dict[str, Any]:
    record: dict[str, Any] = {
        "biz_type": 2,
        "verify_time": "2026-03-01 12:00:00",
        "tb_store_id": 2343432,
        "service_status": 2,
        "service_id": 1111,
        "service_detail_id": 111223,
        "tb_biz_order_id": 3_000_000_000 + n,
        "verify_batch_no": f"B{n}",
        "user_name": "张三",
    }
    record.update(changes)
    return record


def writeoffs(count: int, start: int = 0, **changes: Any) -> list[tuple[str, dict[str, Any]]]:
    return parse_records(Kind.WRITEOFF, [writeoff(n, **changes) for n in range(start, start + count)])


def external_order(idempotent_id: str) -> list[tuple[str, dict[str, Any]]]:
    return parse_records(Kind.EXTERNAL_ORDER, {"idempotent_id": idempotent_id, "buyer_info": {"user_phone": "130"}})


def raw_item(client: Any, pk: str) -> dict[str, Any]:
    return client.get_item(TableName=TABLE, Key={"pk": {"S": pk}}, ConsistentRead=True)["Item"]


# -------------------------------------------------------------------------------------------------- accept
def test_250_records_are_250_conditional_puts_and_stored_due(
    store: OutboxStore, counter: RequestCounter, log: RequestLog, clock: FrozenClock
) -> None:
    records = writeoffs(250)
    results = store.accept(Kind.WRITEOFF, records)

    # One write unit per record: a transaction would bill each item twice.
    assert counter.counts == {"PutItem": 250}
    puts = log.of("PutItem")
    assert sorted(p["Item"]["record_id"]["S"] for p in puts) == sorted(rid for rid, _ in records)
    assert {(p["ConditionExpression"], p["ReturnValuesOnConditionCheckFailure"]) for p in puts} == {
        ("attribute_not_exists(pk)", "ALL_OLD")
    }
    assert [(r.record_id, r.status, r.state) for r in results] == [(rid, "accepted", "due") for rid, _ in records]

    first = store.get(Kind.WRITEOFF, records[0][0])
    assert first is not None
    assert first.payload == records[0][1]
    assert (first.state, first.attempts, first.due_at) == ("due", 0, clock.ms)
    assert first.accepted_at == "2026-03-01T04:00:00.000Z"


def test_accepting_the_same_records_again_changes_nothing(
    store: OutboxStore, client: Any, counter: RequestCounter, clock: FrozenClock
) -> None:
    records = writeoffs(250)
    store.accept(Kind.WRITEOFF, records)
    before = raw_item(client, f"writeoff#{records[7][0]}")
    clock.advance(minutes=5)
    counter.reset()

    # Re-serialised by the caller with another key order: still the same content.
    reordered = [(rid, dict(reversed(list(payload.items())))) for rid, payload in records]
    results = store.accept(Kind.WRITEOFF, reordered)

    assert {(r.status, r.state) for r in results} == {("duplicate", "due")}
    # Each put is refused by its condition with the stored item in the refusal: no read, nothing left to retry.
    assert counter.counts == {"PutItem": 250}
    assert raw_item(client, f"writeoff#{records[7][0]}") == before


def test_changed_content_under_a_stored_key_is_a_conflict(
    store: OutboxStore, client: Any, counter: RequestCounter
) -> None:
    store.accept(Kind.WRITEOFF, writeoffs(5))
    before = raw_item(client, f"writeoff#{writeoffs(1, start=2)[0][0]}")
    counter.reset()

    batch = writeoffs(5) + writeoffs(3, start=5)  # five stored, three new
    batch[2] = (batch[2][0], {**batch[2][1], "service_status": 3})
    results = store.accept(Kind.WRITEOFF, batch)

    assert [r.status for r in results] == ["duplicate"] * 2 + ["conflict"] + ["duplicate"] * 2 + ["accepted"] * 3
    # One put per record, whether it met a stored key or not.
    assert counter.counts == {"PutItem": 8}
    assert results[2].state is None
    assert raw_item(client, f"writeoff#{batch[2][0]}") == before


def test_the_same_key_twice_in_one_call(store: OutboxStore) -> None:
    (one,) = writeoffs(1)
    changed = (one[0], {**one[1], "service_status": 3})
    results = store.accept(Kind.WRITEOFF, [one, one, changed])
    assert [(r.status, r.state) for r in results] == [("accepted", "due"), ("duplicate", "due"), ("conflict", None)]

    # When the first occurrence conflicts with what is stored, a later one equal to the stored content is
    # a duplicate: each occurrence is compared with what is stored.
    results = store.accept(Kind.WRITEOFF, [changed, one])
    assert [r.status for r in results] == ["conflict", "duplicate"]


def test_a_record_over_the_item_limit_refuses_the_call_before_any_write(
    store: OutboxStore, counter: RequestCounter
) -> None:
    small = writeoffs(3)
    (large,) = writeoffs(1, start=3, service_sku_name="x" * MAX_ACCEPT_ITEM_BYTES)
    with pytest.raises(RecordTooLarge) as caught:
        store.accept(Kind.WRITEOFF, [*small, large])

    assert caught.value.record_id == large[0]
    assert caught.value.size > MAX_ACCEPT_ITEM_BYTES
    assert large[0] in str(caught.value) and str(caught.value.size) in str(caught.value)
    assert counter.total == 0
    assert store.get(Kind.WRITEOFF, small[0][0]) is None


def test_a_record_just_under_the_limit_is_stored_and_can_be_settled(store: OutboxStore) -> None:
    (probe,) = writeoffs(1, service_sku_name="")
    overhead = dynamo.item_size(_accepted_item(probe))
    (large,) = writeoffs(1, service_sku_name="x" * (MAX_ACCEPT_ITEM_BYTES - overhead))
    assert dynamo.item_size(_accepted_item(large)) == MAX_ACCEPT_ITEM_BYTES

    (result,) = store.accept(Kind.WRITEOFF, [large])
    assert result.status == "accepted"
    record = store.get(Kind.WRITEOFF, large[0])
    assert record is not None
    store.settle([Synced(record, {"result": {"success": True, "data": "x" * 100_000}})])  # the answer is cut
    settled = store.get(Kind.WRITEOFF, large[0])
    assert settled is not None and settled.state == "synced"
    assert settled.platform_answer is not None and settled.platform_answer.endswith("[truncated]")


def _accepted_item(record: tuple[str, dict[str, Any]], due_at: int = 1772337600000) -> dict[str, Any]:
    from taobao_bridge.dynamo import to_item
    from taobao_bridge.jsonutil import dumps

    record_id, payload = record
    return to_item(
        {
            "pk": f"writeoff#{record_id}",
            "kind": "writeoff",
            "record_id": record_id,
            "payload": dumps(payload),
            "payload_sha256": payload_sha256(payload),
            "state": "due",
            "attempts": 0,
            "accepted_at": "2026-03-01T04:00:00.000Z",
            "due_kind": "writeoff",
            "due_at": due_at,
            "accept_id": "0123456789abcdef",  # 16 characters, like the store's
        }
    )


def test_large_records_are_one_put_each(store: OutboxStore, counter: RequestCounter) -> None:
    records = writeoffs(20, service_sku_name="y" * 300_000)  # about 6 MB in all: no request limit applies
    results = store.accept(Kind.WRITEOFF, records)

    assert {r.status for r in results} == {"accepted"}
    assert counter.counts == {"PutItem": 20}


def test_item_size_counts_as_dynamodb_does() -> None:
    assert dynamo.item_size({"pk": {"S": "ab"}}) == 4
    assert dynamo.item_size({"ä": {"S": "é"}}) == 4  # UTF-8 bytes, names too
    assert dynamo.item_size({"n": {"N": "12345"}}) == 1 + 4  # 1 byte per two significant digits, plus 1
    assert dynamo.item_size({"n": {"N": "1000"}}) == 1 + 2  # trailing zeros are not significant
    assert dynamo.item_size({"b": {"BOOL": True}, "z": {"NULL": True}}) == 4
    assert dynamo.item_size({"m": {"M": {"k": {"S": "v"}}}, "l": {"L": [{"S": "v"}]}}) == (1 + 3 + 1 + 1 + 1) + (
        1 + 3 + 1 + 1
    )


def test_a_throttled_put_is_retried(store: OutboxStore, client: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(dynamo.time, "sleep", lambda _s: None)
    records = writeoffs(3)
    throttled = f"writeoff#{records[1][0]}"
    real = client.put_item
    calls: list[str] = []

    def throttling_once(**kwargs: Any) -> Any:
        calls.append(kwargs["Item"]["pk"]["S"])
        if calls.count(throttled) in (1, 2) and kwargs["Item"]["pk"]["S"] == throttled:
            error = {"Code": "ThrottlingException", "Message": "slow down"}
            raise ClientError({"Error": error, "ResponseMetadata": {"HTTPStatusCode": 400}}, "PutItem")
        return real(**kwargs)

    monkeypatch.setattr(client, "put_item", throttling_once)
    results = store.accept(Kind.WRITEOFF, records)
    assert [r.status for r in results] == ["accepted"] * 3
    assert calls.count(throttled) == 3 and len(calls) == 5, "only the throttled record is sent again"


def test_storage_failures_name_the_operation(client: Any, clock: FrozenClock) -> None:
    missing = OutboxStore("NoSuchTable", client=client, clock=clock)
    with pytest.raises(StorageError, match="PutItem"):
        missing.accept(Kind.WRITEOFF, writeoffs(1))
    with pytest.raises(StorageError, match="Query"):
        missing.due(Kind.WRITEOFF, now_ms=clock.ms, limit=10)
    with pytest.raises(StorageError, match="GetItem"):
        missing.get(Kind.WRITEOFF, "x")


# ----------------------------------------------------------------------------------------------------- due
def test_due_queries_the_index_and_rereads_never_scanning(
    store: OutboxStore, counter: RequestCounter, log: RequestLog, clock: FrozenClock
) -> None:
    for n in range(5):
        store.accept(Kind.WRITEOFF, writeoffs(2, start=2 * n))
        clock.advance(seconds=1)
    store.accept(Kind.RISK, parse_records(Kind.RISK, [_risk(1)]))
    counter.reset()
    log.clear()

    due = store.due(Kind.WRITEOFF, now_ms=clock.ms, limit=7)

    assert counter.counts == {"Query": 1, "BatchGetItem": 1}
    (query,) = log.of("Query")
    assert query["IndexName"] == "due-index" and query["Limit"] == 7 and query["ScanIndexForward"] is True
    (batch_get,) = log.of("BatchGetItem")
    assert batch_get["RequestItems"][TABLE]["ConsistentRead"] is True
    assert [r.record_id for r in due] == [rid for rid, _ in writeoffs(7)]
    assert all(r.kind is Kind.WRITEOFF and r.state == "due" for r in due)
    assert [r.due_at for r in due] == sorted(r.due_at or 0 for r in due)


def test_due_leaves_out_records_whose_time_has_not_come(store: OutboxStore, clock: FrozenClock) -> None:
    store.accept(Kind.WRITEOFF, writeoffs(2))
    assert store.due(Kind.WRITEOFF, now_ms=clock.ms - 1, limit=10) == []
    assert len(store.due(Kind.WRITEOFF, now_ms=clock.ms, limit=10)) == 2
    assert store.due(Kind.WRITEOFF, now_ms=clock.ms, limit=0) == []


def test_due_pages_through_the_index_and_batches_reads_by_100(
    store: OutboxStore, client: Any, counter: RequestCounter, log: RequestLog, clock: FrozenClock
) -> None:
    # Seeded with batch writes: moto's TransactWriteItems copies the whole table once per action, which makes
    # accepting 1,100 records take seconds there (not in DynamoDB).
    items = [_accepted_item(record, due_at=clock.ms - n) for n, record in enumerate(writeoffs(1000))]
    items += [_accepted_item(record, due_at=clock.ms) for record in writeoffs(100, start=1000)]
    for start in range(0, len(items), 25):
        client.batch_write_item(RequestItems={TABLE: [{"PutRequest": {"Item": i}} for i in items[start : start + 25]]})
    counter.reset()
    log.clear()

    due = store.due(Kind.WRITEOFF, now_ms=clock.ms, limit=1050)

    assert len(due) == 1050
    assert [r.due_at for r in due[:3]] == [clock.ms - 999, clock.ms - 998, clock.ms - 997]  # oldest first
    assert [q["Limit"] for q in log.of("Query")] == [1000, 50]
    assert [len(b["RequestItems"][TABLE]["Keys"]) for b in log.of("BatchGetItem")] == [100] * 10 + [50]
    assert counter.counts == {"Query": 2, "BatchGetItem": 11}


class StaleIndexClient:
    """The real client, except that the due index answers with a page recorded earlier (a lagging GSI)."""

    def __init__(self, real: Any, stale_page: dict[str, Any]) -> None:
        self._real = real
        self._stale_page = stale_page

    def query(self, **_: Any) -> dict[str, Any]:
        return self._stale_page

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)


def test_records_settled_after_a_stale_index_read_are_never_returned(
    store: OutboxStore, client: Any, clock: FrozenClock
) -> None:
    records = writeoffs(4)
    store.accept(Kind.WRITEOFF, records)
    stale_page = client.query(
        TableName=TABLE,
        IndexName="due-index",
        KeyConditionExpression="due_kind = :k AND due_at <= :now",
        ExpressionAttributeValues={":k": {"S": "writeoff"}, ":now": {"N": str(clock.ms)}},
        ProjectionExpression="pk",
    )
    assert stale_page["Count"] == 4
    synced, retried, dead, untouched = store.due(Kind.WRITEOFF, now_ms=clock.ms, limit=10)
    store.settle(
        [
            Synced(synced, {"result": {"success": True}}),
            Retry(retried, "isp.timeout", next_due_at=clock.ms + 60_000),
            Dead(dead, "isv.invalid-parameter"),
        ]
    )

    lagging = OutboxStore(TABLE, client=StaleIndexClient(client, stale_page), clock=clock)
    assert [r.record_id for r in lagging.due(Kind.WRITEOFF, now_ms=clock.ms, limit=10)] == [untouched.record_id]


def test_is_still_due_reads_the_fresh_item() -> None:
    assert is_still_due({"state": {"S": "due"}, "due_at": {"N": "100"}}, 100)
    assert not is_still_due({"state": {"S": "due"}, "due_at": {"N": "101"}}, 100)
    assert not is_still_due({"state": {"S": "synced"}}, 100)
    assert not is_still_due({"state": {"S": "dead"}, "due_at": {"N": "1"}}, 100)


# -------------------------------------------------------------------------------------------------- settle
def test_26_settlements_are_two_batch_writes_of_at_most_25(
    store: OutboxStore, counter: RequestCounter, log: RequestLog, clock: FrozenClock
) -> None:
    store.accept(Kind.WRITEOFF, writeoffs(26))
    due = store.due(Kind.WRITEOFF, now_ms=clock.ms, limit=100)
    counter.reset()
    log.clear()

    store.settle([Synced(record, {"result": {"success": True}}) for record in due])

    assert counter.counts == {"BatchWriteItem": 2}
    assert [len(p["RequestItems"][TABLE]) for p in log.of("BatchWriteItem")] == [25, 1]
    assert store.due(Kind.WRITEOFF, now_ms=clock.ms, limit=100) == []


def test_each_settlement_writes_its_outcome(store: OutboxStore, client: Any, clock: FrozenClock) -> None:
    store.accept(Kind.WRITEOFF, writeoffs(4))
    store.accept(Kind.EXTERNAL_ORDER, external_order("EO-1"))
    ok, retry, dead, unsent = store.due(Kind.WRITEOFF, now_ms=clock.ms, limit=10)
    (order,) = store.due(Kind.EXTERNAL_ORDER, now_ms=clock.ms, limit=10)
    clock.advance(seconds=30)
    answer = {"result": {"data": {"order_id": 4356787654345678901}, "success": True}}
    store.settle(
        [
            Synced(ok, {"result": {"success": True}}),
            Retry(retry, "isp.service-unavailable", next_due_at=clock.ms + 60_000),
            Dead(dead, "isv.invalid-parameter: tb_store_id"),
            Dead(unsent, "no longer valid", sent=False),
            Synced(order, answer, platform_order_id=4356787654345678901),
        ]
    )

    settled_at = "2026-03-01T04:00:30.000Z"
    expires_at = int((clock.moment + timedelta(days=30)).timestamp())
    synced = raw_item(client, f"writeoff#{ok.record_id}")
    assert synced["state"] == {"S": "synced"} and synced["attempts"] == {"N": "1"}
    assert synced["settled_at"] == {"S": settled_at} and synced["expires_at"] == {"N": str(expires_at)}
    assert json.loads(synced["platform_answer"]["S"]) == {"result": {"success": True}}
    assert not {"due_kind", "due_at"} & set(synced)
    assert json.loads(synced["payload"]["S"]) == ok.payload

    again = store.get(Kind.WRITEOFF, retry.record_id)
    assert again is not None
    assert (again.state, again.attempts, again.due_at, again.last_error) == (
        "due",
        1,
        clock.ms + 60_000,
        "isp.service-unavailable",
    )
    assert "expires_at" not in raw_item(client, f"writeoff#{retry.record_id}")  # due records never expire

    gone = store.get(Kind.WRITEOFF, dead.record_id)
    assert gone is not None
    assert (gone.state, gone.attempts, gone.dead_reason, gone.last_error) == (
        "dead",
        1,
        "isv.invalid-parameter: tb_store_id",
        "isv.invalid-parameter: tb_store_id",
    )
    assert not {"due_kind", "due_at"} & set(raw_item(client, f"writeoff#{dead.record_id}"))
    not_sent = store.get(Kind.WRITEOFF, unsent.record_id)
    assert not_sent is not None and (not_sent.state, not_sent.attempts) == ("dead", 0)

    stored_order = store.get(Kind.EXTERNAL_ORDER, "EO-1")
    assert stored_order is not None and stored_order.platform_order_id == 4356787654345678901  # 19 digits, exact

    # Settled records are out of the index: only the retry comes back, and only once it is due.
    assert store.due(Kind.WRITEOFF, now_ms=clock.ms, limit=10) == []
    assert [r.record_id for r in store.due(Kind.WRITEOFF, now_ms=clock.ms + 60_000, limit=10)] == [retry.record_id]


def test_settling_a_record_twice_in_one_call_is_refused(store: OutboxStore, clock: FrozenClock) -> None:
    store.accept(Kind.WRITEOFF, writeoffs(1))
    (record,) = store.due(Kind.WRITEOFF, now_ms=clock.ms, limit=1)
    with pytest.raises(ValueError, match="twice"):
        store.settle([Synced(record, {}), Dead(record, "x")])


def test_unprocessed_settlements_are_retried_then_refused(
    store: OutboxStore, client: Any, clock: FrozenClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(dynamo.time, "sleep", lambda _s: None)
    store.accept(Kind.WRITEOFF, writeoffs(3))
    due = store.due(Kind.WRITEOFF, now_ms=clock.ms, limit=10)
    real = client.batch_write_item
    calls = {"n": 0}

    def half_processed(**kwargs: Any) -> dict[str, Any]:
        # The first answer leaves the last item unprocessed, as DynamoDB does under throttling.
        calls["n"] += 1
        requests = kwargs["RequestItems"][TABLE]
        real(RequestItems={TABLE: requests[:-1]} if calls["n"] == 1 else kwargs["RequestItems"])
        return {"UnprocessedItems": {TABLE: requests[-1:]}} if calls["n"] == 1 else {"UnprocessedItems": {}}

    monkeypatch.setattr(client, "batch_write_item", half_processed)
    store.settle([Synced(record, {}) for record in due])
    assert calls["n"] == 2
    assert all(store.get(Kind.WRITEOFF, r.record_id).state == "synced" for r in due)  # type: ignore[union-attr]

    monkeypatch.setattr(client, "batch_write_item", lambda **kw: {"UnprocessedItems": kw["RequestItems"]})
    with pytest.raises(StorageError, match=r"BatchWriteItem.*unprocessed"):
        store.settle([Synced(record, {}) for record in due])


# --------------------------------------------------------------------------------------- leases and flags
def test_lease_acquire_extend_expire_and_release(control: RunControl, clock: FrozenClock) -> None:
    now = clock.ms
    assert control.acquire_lease("sync-writeoff", "run-a", until_ms=now + 60_000, now_ms=now)
    assert not control.acquire_lease("sync-writeoff", "run-b", until_ms=now + 60_000, now_ms=now + 1_000)
    assert control.acquire_lease("sync-writeoff", "run-a", until_ms=now + 120_000, now_ms=now + 1_000)  # extends
    assert not control.acquire_lease("sync-writeoff", "run-b", until_ms=now + 180_000, now_ms=now + 90_000)
    assert control.acquire_lease("other-lease", "run-b", until_ms=now + 60_000, now_ms=now)  # leases are apart

    # Expired: another owner takes it over.
    assert control.acquire_lease("sync-writeoff", "run-b", until_ms=now + 300_000, now_ms=now + 120_001)
    control.release_lease("sync-writeoff", "run-a")  # no longer run-a's: ignored
    assert not control.acquire_lease("sync-writeoff", "run-a", until_ms=now + 400_000, now_ms=now + 130_000)
    control.release_lease("sync-writeoff", "run-b")
    assert control.acquire_lease("sync-writeoff", "run-a", until_ms=now + 400_000, now_ms=now + 130_000)


def test_ban_round_trip_never_shortens_and_ends(control: RunControl, clock: FrozenClock) -> None:
    assert control.ban_until("app") is None
    control.set_ban("app", until_ms=clock.ms + 60_000, reason="accesscontrol.limited-by-api-access-count")
    assert control.ban_until("app") == clock.ms + 60_000
    control.set_ban("app", until_ms=clock.ms + 10_000, reason="shorter")
    assert control.ban_until("app") == clock.ms + 60_000
    assert control.ban_until("other") is None
    clock.advance(seconds=61)
    assert control.ban_until("app") is None
    control.set_ban("app", until_ms=clock.ms + 5_000, reason="again")
    assert control.ban_until("app") == clock.ms + 5_000
    assert control.lift_ban("app") is True and control.ban_until("app") is None
    assert control.lift_ban("app") is False, "nothing to lift"


def test_pause_round_trip(control: RunControl, clock: FrozenClock) -> None:
    assert control.pause("sync-risk") is None
    control.set_pause("sync-risk", reason="session expired (code 27)", fingerprint="abc123")
    assert control.pause("sync-risk") == Pause(
        reason="session expired (code 27)", fingerprint="abc123", since_ms=clock.ms
    )
    assert control.clear_pause("sync-risk") is True
    assert control.pause("sync-risk") is None
    assert control.clear_pause("sync-risk") is False  # clearing twice is fine


def test_control_items_never_show_up_as_records(store: OutboxStore, control: RunControl, clock: FrozenClock) -> None:
    control.acquire_lease("writeoff", "run-a", until_ms=clock.ms + 1, now_ms=clock.ms)
    control.set_pause("writeoff", reason="r", fingerprint="f")
    assert store.due(Kind.WRITEOFF, now_ms=clock.ms + 10**9, limit=10) == []
    assert store.get(Kind.WRITEOFF, "lease") is None


# ------------------------------------------------------------------------------------------------ public
def test_public_view_shows_the_state_but_never_the_payload(store: OutboxStore, clock: FrozenClock) -> None:
    records = writeoffs(1, user_name="李四")
    store.accept(Kind.WRITEOFF, records)
    record = store.get(Kind.WRITEOFF, records[0][0])
    assert record is not None
    public = public_view(record)
    assert public == {
        "kind": "writeoff",
        "id": records[0][0],
        "state": "due",
        "attempts": 0,
        "unknown_outcomes": 0,
        "last_error": None,
        "accepted_at": "2026-03-01T04:00:00.000Z",
        "settled_at": None,
        "dead_reason": None,
        "next_attempt_at": "2026-03-01T04:00:00.000Z",
    }
    assert "李四" not in json.dumps(public, ensure_ascii=False)

    store.accept(Kind.EXTERNAL_ORDER, external_order("EO-9"))
    order = store.get(Kind.EXTERNAL_ORDER, "EO-9")
    assert order is not None
    store.settle([Synced(order, {"ok": True}, platform_order_id=12)])
    settled = store.get(Kind.EXTERNAL_ORDER, "EO-9")
    assert settled is not None
    shown = public_view(settled)
    assert shown["platform_order_id"] == "12" and shown["state"] == "synced" and "next_attempt_at" not in shown
    assert "payload" not in shown and "130" not in json.dumps(shown)


def test_from_settings_reads_the_table_and_retention() -> None:
    from taobao_bridge.settings import ENV, load_settings

    settings = load_settings({ENV.BRIDGE_ENV: "local", ENV.OUTBOX_RETENTION_DAYS: "7"})
    store = OutboxStore.from_settings(settings)
    assert (store.table_name, store.retention_days) == ("OutboxTable", 7)


def _risk(n: int) -> dict[str, Any]:
    return {
        "install_type": 0,
        "buyer_phone": "13012345678",
        "tc_order_id": 3882527336184474047,
        "tc_sub_order_id": 3882527336184474000 + n,
        "buyer_name": "王五",
        "service_use_time": "2026-03-01 10:00:00",
    }


def test_outbox_record_is_frozen() -> None:
    record = OutboxRecord(Kind.RISK, "1", {}, "0", RecordState.DUE, 0, 1, "t", None, None, None, None, None)
    with pytest.raises(AttributeError):
        record.state = RecordState.SYNCED  # type: ignore[misc]


# ------------------------------------------------------------------------------------------------ storage faults
class Faults:
    """Fails chosen DynamoDB requests of a client: before they reach the server, or after it applied them.
    Requests are chosen by number per operation (1-based, in the order they are sent) or, for ``PutItem``, by the
    key they write. Thread-safe: accepting sends several puts at once."""

    def __init__(self, client: Any) -> None:
        self.seen: dict[str, int] = {}
        self.before: dict[str, set[int]] = {}  # operation -> request numbers refused before sending
        self.after: dict[str, set[int]] = {}  # operation -> request numbers that time out after being applied
        self.refused_keys: set[str] = set()  # puts of these keys are refused (a 400: nothing written)
        self.failing_keys: set[str] = set()  # puts of these keys answer a 500 without being applied
        self.lost: dict[str, int] = {}  # key -> how many of its puts are applied, then their answer is lost
        self._lock = threading.Lock()
        client.meta.events.register("before-parameter-build.dynamodb", self._number)
        client.meta.events.register("before-call.dynamodb", self._before)
        client.meta.events.register("after-call.dynamodb", self._after)

    def _number(self, params: dict[str, Any], model: Any, context: dict[str, Any], **_: Any) -> None:
        with self._lock:
            self.seen[model.name] = self.seen.get(model.name, 0) + 1
            context["fault_number"] = self.seen[model.name]
        context["fault_key"] = params.get("Item", {}).get("pk", {}).get("S") if model.name == "PutItem" else None

    def _before(self, model: Any, context: dict[str, Any], **_: Any) -> None:
        key = context.get("fault_key")
        if context["fault_number"] in self.before.get(model.name, set()) or key in self.refused_keys:
            raise ClientError({"Error": {"Code": "ValidationException", "Message": "injected"}}, model.name)
        if key in self.failing_keys:
            error = {"Code": "InternalServerError", "Message": "injected"}
            raise ClientError({"Error": error, "ResponseMetadata": {"HTTPStatusCode": 500}}, model.name)

    def _after(self, model: Any, context: dict[str, Any], **_: Any) -> None:
        key = context.get("fault_key")
        with self._lock:
            lose = self.lost.get(key, 0) > 0 if key else False
            if lose:
                self.lost[key] -= 1
        if lose or context["fault_number"] in self.after.get(model.name, set()):
            raise ReadTimeoutError(endpoint_url="injected")


def stored_ids(client: Any) -> set[str]:
    items = client.scan(TableName=TABLE)["Items"]  # a test may scan; the code never does
    return {item["record_id"]["S"] for item in items if "record_id" in item}


@pytest.fixture
def one_put_at_a_time(monkeypatch: pytest.MonkeyPatch) -> None:
    """Accept with one put in flight, in the records' order, so a test can tell which were sent."""
    monkeypatch.setattr(accept_module, "PARALLEL_PUTS", 1)


@pytest.fixture
def no_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(dynamo.time, "sleep", lambda _s: None)


def keys(records: list[tuple[str, dict[str, Any]]]) -> set[str]:
    return {f"writeoff#{record_id}" for record_id, _ in records}


@pytest.mark.usefixtures("one_put_at_a_time")
def test_after_a_refused_put_no_other_put_starts_and_the_rest_is_not_stored(
    store: OutboxStore, client: Any, counter: RequestCounter
) -> None:
    faults = Faults(client)
    records = writeoffs(250)
    faults.refused_keys = keys(records[100:101])
    with pytest.raises(AcceptIncomplete) as raised:
        store.accept(Kind.WRITEOFF, records)
    statuses = [r.status for r in raised.value.results]
    assert statuses == ["accepted"] * 100 + ["not_stored"] * 150
    assert "100 of 250 records are stored" in str(raised.value)
    assert counter.counts == {"PutItem": 101}, "a refused put is known not stored: no read-back"
    assert stored_ids(client) == {rid for rid, _ in records[:100]}, "the answer matches the table"
    # A not-stored record can be corrected without a conflict; sending the same again is safe.
    corrected = [(records[200][0], {**records[200][1], "user_name": "王五"})]
    faults.refused_keys = set()
    assert [r.status for r in store.accept(Kind.WRITEOFF, corrected)] == ["accepted"]
    again = store.accept(Kind.WRITEOFF, records)
    assert [r.status for r in again].count("duplicate") == 100 and again[200].status == "conflict"


def test_a_failure_among_parallel_puts_says_exactly_which_records_are_stored(store: OutboxStore, client: Any) -> None:
    faults = Faults(client)
    records = writeoffs(250)
    faults.refused_keys = keys(records[100:101])
    with pytest.raises(AcceptIncomplete) as raised:
        store.accept(Kind.WRITEOFF, records)
    results = raised.value.results
    assert results[100].status == "not_stored"
    assert {r.status for r in results} <= {"accepted", "not_stored"}
    accepted = {r.record_id for r in results if r.status == "accepted"}
    assert stored_ids(client) == accepted, "puts already under way finish; none starts after the failure"
    assert f"{len(accepted)} of 250 records are stored" in str(raised.value)
    faults.refused_keys = set()
    assert {r.status for r in store.accept(Kind.WRITEOFF, records)} == {"accepted", "duplicate"}


class HoldingClient:
    """The real client, except that no put goes out before the first put of each of ``records`` records was
    made: then no failure can keep a record from starting, whatever the threads' order."""

    def __init__(self, real: Any, records: int) -> None:
        self._real = real
        self._records = records
        self._keys: set[str] = set()
        self._lock = threading.Lock()
        self._all_started = threading.Event()

    def put_item(self, **kwargs: Any) -> Any:
        with self._lock:
            self._keys.add(kwargs["Item"]["pk"]["S"])
            if len(self._keys) >= self._records:
                self._all_started.set()
        assert self._all_started.wait(10)
        return self._real.put_item(**kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)


@pytest.mark.usefixtures("no_backoff")
def test_refused_puts_are_not_stored_and_maybe_applied_ones_are_read_back(
    client: Any, clock: FrozenClock, counter: RequestCounter, log: RequestLog
) -> None:
    faults = Faults(client)
    records = writeoffs(6)
    ok, lost, failing, refused = records[:3], records[3:4], records[4:5], records[5:]
    faults.lost = dict.fromkeys(keys(lost), 99)  # applied, every answer lost: only a read-back can tell
    faults.failing_keys = keys(failing)  # a 500 each time: DynamoDB may have applied it (here it did not)
    faults.refused_keys = keys(refused)  # a 400: certainly not stored
    store = OutboxStore(TABLE, client=HoldingClient(client, records=6), clock=clock)
    with pytest.raises(AcceptIncomplete) as raised:
        store.accept(Kind.WRITEOFF, records)

    assert [r.status for r in raised.value.results] == ["accepted"] * 4 + ["not_stored"] * 2
    assert "4 of 6 records are stored; 3 records' writes failed" in str(raised.value)
    # The failing and timed-out ones were tried five times, the refused one once; only the first two are read back.
    assert counter.counts == {"PutItem": 3 + 5 + 5 + 1, "BatchGetItem": 1}
    (read_back,) = log.of("BatchGetItem")
    assert {k["pk"]["S"] for k in read_back["RequestItems"][TABLE]["Keys"]} == keys(lost) | keys(failing)
    assert stored_ids(client) == {rid for rid, _ in ok + lost}


@pytest.mark.usefixtures("no_backoff")
def test_a_timeout_after_the_write_is_retried_and_the_write_recognised_as_ours(
    store: OutboxStore, client: Any, counter: RequestCounter
) -> None:
    faults = Faults(client)
    records = writeoffs(3)
    faults.lost = dict.fromkeys(keys(records), 1)  # applied, then the answer is lost; the retry meets our own items
    assert [r.status for r in store.accept(Kind.WRITEOFF, records)] == ["accepted"] * 3
    assert counter.counts == {"PutItem": 6}
    assert [r.status for r in store.accept(Kind.WRITEOFF, records)] == ["duplicate"] * 3, "a later call's are not"


@pytest.mark.usefixtures("no_backoff")
def test_a_write_applied_before_a_timeout_is_reported_stored(store: OutboxStore, client: Any) -> None:
    faults = Faults(client)
    records = writeoffs(3)
    faults.lost = dict.fromkeys(keys(records), 99)  # applied, but the answer never arrives
    with pytest.raises(AcceptIncomplete) as raised:
        store.accept(Kind.WRITEOFF, records)
    assert [r.status for r in raised.value.results] == ["accepted"] * 3
    assert stored_ids(client) == {rid for rid, _ in records}


def test_a_refused_write_is_not_stored_without_a_read_back(
    store: OutboxStore, client: Any, counter: RequestCounter
) -> None:
    faults = Faults(client)
    records = writeoffs(2)
    faults.refused_keys = keys(records)  # refused by DynamoDB: an error answer, nothing written
    faults.before["BatchGetItem"] = {1}
    with pytest.raises(AcceptIncomplete) as raised:
        store.accept(Kind.WRITEOFF, records)
    assert [r.status for r in raised.value.results] == ["not_stored", "not_stored"]
    assert "BatchGetItem" not in counter.counts


@pytest.mark.usefixtures("no_backoff")
def test_a_write_that_cannot_be_checked_is_reported_unknown(store: OutboxStore, client: Any) -> None:
    faults = Faults(client)
    records = writeoffs(2)
    faults.lost = dict.fromkeys(keys(records), 99)  # every attempt times out after being sent
    faults.before["BatchGetItem"] = {1}
    with pytest.raises(AcceptIncomplete) as raised:
        store.accept(Kind.WRITEOFF, records + writeoffs(1))
    assert [r.status for r in raised.value.results] == ["unknown", "unknown", "unknown"]


@pytest.mark.usefixtures("no_backoff")
def test_a_put_refused_after_a_timeout_is_still_read_back(store: OutboxStore, client: Any) -> None:
    # The first attempt may have been applied: a later refusal does not prove the record absent.
    real = client.put_item
    attempts: list[int] = []

    def lost_then_refused(**kwargs: Any) -> Any:
        attempts.append(1)
        if len(attempts) == 1:
            real(**kwargs)
            raise ReadTimeoutError(endpoint_url="injected")
        raise ClientError({"Error": {"Code": "ValidationException", "Message": "injected"}}, "PutItem")

    client.put_item = lost_then_refused
    with pytest.raises(AcceptIncomplete) as raised:
        store.accept(Kind.WRITEOFF, writeoffs(1))
    assert [r.status for r in raised.value.results] == ["accepted"]
