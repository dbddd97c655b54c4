"""Fulfillment orders for merchant systems, pure parts: the index keys, the cursor, the day-by-day walk with its
settle lag (over an in-memory index with DynamoDB's Query semantics), the view without personal data, the events
and the local stream emulation's retry and filter rules."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from bridge_local.apigw import match_route
from bridge_local.stream_mapping import StreamPoller, StreamSource, matches, stream_sources
from bridge_local.template import TEMPLATE_PATH, http_routes, load_template
from taobao_bridge.dynamo import to_item
from taobao_bridge.fulfillment_events import DETAIL_TYPE, SOURCE, publish_new_orders
from taobao_bridge.fulfillment_orders import (
    MAX_LIMIT,
    Cursor,
    FulfillmentOrders,
    InvalidParameter,
    OrderNotFound,
    order_view,
    parse_include,
    parse_limit,
    settle_lag_from_env,
)
from taobao_bridge.fulfillment_store import received_day, received_key, time_key

T0 = datetime(2026, 11, 30, 23, 59, 58, 999_000, tzinfo=UTC)
SEED = {
    "trade_info": {"quantity": 2, "real_amount": 100, "total_amount": 100, "tp_order_no": "1", "tp_sub_order_no": "2"},
    "item_info": {"service_mode": "TO_SHOP", "item_name": "任意洗3件", "category_name": "洗衣", "item_id": "9"},
    "shop_info": {"store_id": "123"},
    "user_info": [
        {"name": "张先生", "mobile": "13911112222", "credentials": {"credential_type": "idCard", "credential_no": "41"}}
    ],
    "fulfillment_info": {
        "address_info": [{"address_detail": "xx街道", "contact_name": "李", "contact_phone": "139", "type": "DEFAULT"}],
        "time_option": {"start": "2022-07-10 12:00", "type": "DAY_TIME"},
        "memo": "call me at 139",
        "quantity": 1,
        "fulfillment_order_no": "1001",
    },
    "buyer_mobile_added_by_the_platform": "13800000000",
}
PERSONAL_VALUES = ("张先生", "13911112222", "41", "xx街道", "李", "139", "call me", "13800000000")


def stored(order_no: str, at: datetime) -> dict[str, Any]:
    payload = json.loads(json.dumps(SEED))
    payload["fulfillment_info"]["fulfillment_order_no"] = order_no
    return {
        "fulfillment_order_no": order_no,
        "partner_order_id": f"p{order_no}",
        "payload": json.dumps(payload, ensure_ascii=False),
        "store_id": "123",
        "item_id": "9",
        "quantity": 1,
        "received_at": at.isoformat(),
        "received_day": received_day(at),
        "received_key": received_key(at, order_no),
        "status": "CREATED",
    }


@dataclass
class IndexStore:
    """The received-index as DynamoDB answers a Query on it: BETWEEN on the sort key (inclusive), ExclusiveStartKey,
    Limit, LastEvaluatedKey when Limit stopped the page."""

    items: list[dict[str, Any]] = field(default_factory=list)
    queries: int = 0

    def add(self, order_no: str, at: datetime) -> None:
        self.items.append(stored(order_no, at))

    def get(self, fulfillment_order_no: str) -> dict[str, Any] | None:
        return next((i for i in self.items if i["fulfillment_order_no"] == fulfillment_order_no), None)

    def received_on(
        self, day: str, *, after_key: str, before_key: str, limit: int, start: dict[str, Any] | None = None
    ) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
        self.queries += 1
        low = after_key or day
        assert low <= before_key, "DynamoDB refuses BETWEEN with its bounds reversed"
        keys = sorted((i for i in self.items if i["received_day"] == day), key=lambda i: i["received_key"].encode())
        in_range = [i for i in keys if low <= i["received_key"] <= before_key]
        begin = start["received_key"] if start else (after_key or None)
        if begin is not None:
            in_range = [i for i in in_range if i["received_key"] > begin]
        page = in_range[:limit]
        last = page[-1] if len(in_range) > limit else None
        next_key = None if last is None else {k: last[k] for k in ("received_day", "received_key")}
        return page, next_key


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def walk(orders: FulfillmentOrders, after: Cursor | None, limit: int) -> tuple[list[str], Cursor]:
    seen: list[str] = []
    for _ in range(100):
        page = orders.list(after, limit=limit)
        seen += [view["fulfillment_order_no"] for view in page.orders]
        after = Cursor.decode(page.to_dict()["next"])
        if not page.has_more:
            return seen, after
    raise AssertionError("the walk did not end")


# ------------------------------------------------------------------------------------------------- index keys
def test_received_keys_sort_as_received_across_seconds_days_and_equal_milliseconds() -> None:
    moments = [T0, T0 + timedelta(milliseconds=1), T0 + timedelta(milliseconds=2), T0 + timedelta(seconds=9)]
    keys = [received_key(m, "5") for m in moments] + [received_key(T0, "10"), received_key(T0, "4")]
    ordered = sorted(keys, key=str.encode)  # DynamoDB compares strings as UTF-8 bytes
    assert ordered[:3] == [received_key(T0, "10"), received_key(T0, "4"), received_key(T0, "5")]
    assert ordered[3:] == keys[1:4]
    assert received_day(T0) == "2026-11-30" and received_day(T0 + timedelta(milliseconds=1001)) == "2026-12-01"
    assert received_key(T0.astimezone(), "5") == received_key(T0, "5")  # any zone: keys are UTC
    # The settled bound of a cutoff: every order before it sorts below, at or after it above.
    assert received_key(T0 - timedelta(milliseconds=1), "z") < time_key(T0) < received_key(T0, "")


# ------------------------------------------------------------------------------------------------- cursor
def test_cursor_round_trips_and_is_url_safe() -> None:
    cursor = Cursor("2026-11-30", received_key(T0, "号/1+"))
    text = cursor.encode()
    assert "=" not in text and "/" not in text and "+" not in text
    assert Cursor.decode(text) == cursor
    assert Cursor.decode(Cursor("2026-11-30").encode()) == Cursor("2026-11-30", "")


@pytest.mark.parametrize(
    "text",
    [
        "",
        "%%%",
        "bm90IGpzb24",  # "not json"
        Cursor("2026-11-30").encode() + "x" * 3000,
        "eyJkIjoiMjAyNi0xMS0zMCJ9",  # {"d": "2026-11-30"}: no key
        Cursor("2026-13-40").encode(),
        Cursor("2026-11-30", "garbage").encode(),
        Cursor("2026-11-29", received_key(T0, "1")).encode(),  # a key of another day
    ],
)
def test_a_bad_cursor_is_refused_naming_after(text: str) -> None:
    with pytest.raises(InvalidParameter) as refused:
        Cursor.decode(text)
    assert refused.value.field == "after" and str(refused.value).startswith("after: ")


def test_limit_include_and_lag_are_checked() -> None:
    assert parse_limit(None) == 100 and parse_limit("1") == 1 and parse_limit(str(MAX_LIMIT)) == MAX_LIMIT
    for bad in ("0", "1001", "-1", "1.5", "ten", "١٢"):
        with pytest.raises(InvalidParameter, match=r"^limit: "):
            parse_limit(bad)
    assert parse_include(None) is False and parse_include("personal") is True
    with pytest.raises(InvalidParameter, match=r"^include: "):
        parse_include("all")
    assert settle_lag_from_env({}) == 10.0 and settle_lag_from_env({"FULFILLMENT_SETTLE_LAG_S": "0"}) == 0.0
    with pytest.raises(Exception, match="FULFILLMENT_SETTLE_LAG_S"):
        settle_lag_from_env({"FULFILLMENT_SETTLE_LAG_S": "-1"})


# ---------------------------------------------------------------------------------------------------- listing
def test_pages_walk_days_in_received_order_without_repeats_or_gaps() -> None:
    store = IndexStore()
    expected = []
    for n in range(23):  # across midnight UTC and three days, two per millisecond at times
        at = T0 + timedelta(milliseconds=(n // 2), hours=20 * (n // 8))
        store.add(f"{n:03d}", at)
        expected.append((received_key(at, f"{n:03d}"), f"{n:03d}"))
    clock = Clock(T0 + timedelta(days=3))
    orders = FulfillmentOrders(store, clock=clock, settle_lag_s=10)
    for limit in (1, 2, 5, 1000):
        seen, _ = walk(orders, None, limit)
        assert seen == [number for _, number in sorted(expected)], limit


def test_recent_orders_wait_for_the_settle_lag_and_one_that_commits_late_is_not_skipped() -> None:
    store = IndexStore()
    clock = Clock(T0 + timedelta(seconds=30))
    orders = FulfillmentOrders(store, clock=clock, settle_lag_s=10)
    store.add("old", T0)
    store.add("fresh", clock.now - timedelta(seconds=5))  # received 5 s ago: inside the lag
    seen, cursor = walk(orders, None, 100)
    assert seen == ["old"]
    # An order stamped 8 s ago whose write lands only now (slow DynamoDB, index lag): before "fresh" in order.
    store.add("late", clock.now - timedelta(seconds=8))
    clock.now += timedelta(seconds=10)
    store.add("new", clock.now)
    seen, cursor = walk(orders, cursor, 100)
    assert seen == ["late", "fresh"]
    clock.now += timedelta(seconds=11)
    assert walk(orders, cursor, 100)[0] == ["new"]


def test_a_page_stops_at_limit_and_says_more_only_when_there_may_be_more() -> None:
    store = IndexStore()
    for n in range(4):
        store.add(str(n), T0 + timedelta(seconds=n))
    orders = FulfillmentOrders(store, clock=Clock(T0 + timedelta(minutes=1)), settle_lag_s=10)
    start = Cursor(received_day(T0))
    first = orders.list(start, limit=2)
    assert [o["fulfillment_order_no"] for o in first.orders] == ["0", "1"] and first.has_more
    second = orders.list(first.next, limit=2)
    assert [o["fulfillment_order_no"] for o in second.orders] == ["2", "3"]
    third = orders.list(second.next, limit=2)
    assert third.orders == [] and not third.has_more and third.next == second.next


def test_long_empty_stretches_are_walked_a_month_per_page() -> None:
    store = IndexStore()
    now = T0 + timedelta(days=100)
    store.add("only", now - timedelta(minutes=1))
    orders = FulfillmentOrders(store, clock=Clock(now), settle_lag_s=10, retention_days=180)
    page = orders.list(None, limit=10)
    assert page.orders == [] and page.has_more
    assert page.next.day == (now.date() - timedelta(days=182 - 31)).isoformat() and page.next.key == ""
    assert store.queries == 31
    seen, cursor = walk(orders, page.next, 10)
    assert seen == ["only"] and cursor.day == received_day(now)


def test_a_page_stops_growing_at_the_size_cap_but_always_holds_one_order() -> None:
    store = IndexStore()
    for n in range(5):
        store.add(str(n), T0 + timedelta(seconds=n))
    size = len(json.dumps(order_view(store.items[0], include_personal=True), ensure_ascii=False).encode())
    orders = FulfillmentOrders(store, clock=Clock(T0 + timedelta(minutes=1)), max_page_bytes=size * 2 + 10)
    page = orders.list(Cursor(received_day(T0)), limit=100, include_personal=True)
    assert [o["fulfillment_order_no"] for o in page.orders] == ["0", "1"] and page.has_more
    tiny = FulfillmentOrders(store, clock=Clock(T0 + timedelta(minutes=1)), max_page_bytes=1)
    assert len(tiny.list(page.next, limit=100).orders) == 1


# ------------------------------------------------------------------------------------------------------ views
def test_the_view_leaves_personal_fields_out_unless_asked() -> None:
    item = stored("1001", T0)
    view = order_view(item, include_personal=False)
    assert view["received_at"] == "2026-11-30T23:59:58.999Z" and view["state"] == "CREATED"
    assert view["partner_order_id"] == "p1001" and view["quantity"] == 1
    text = json.dumps(view, ensure_ascii=False)
    assert not [value for value in PERSONAL_VALUES if value in text]
    assert view["order"]["trade_info"] == SEED["trade_info"] and view["order"]["item_info"] == SEED["item_info"]
    assert view["order"]["user_info"] == [{"credentials": {"credential_type": "idCard"}}]
    assert view["order"]["fulfillment_info"]["address_info"] == [{"type": "DEFAULT"}]
    full = order_view(item, include_personal=True)
    assert full["order"]["user_info"][0]["name"] == "张先生" and full["order"]["fulfillment_info"]["memo"]
    assert full["order"]["buyer_mobile_added_by_the_platform"] == "13800000000"


def test_get_answers_not_found_without_asking_dynamodb_for_impossible_numbers() -> None:
    store = IndexStore()
    store.add("1001", T0)
    orders = FulfillmentOrders(store)
    assert orders.get("1001")["fulfillment_order_no"] == "1001"
    for missing in ("1002", "", "9" * 200):
        with pytest.raises(OrderNotFound, match="fulfillment_order_no"):
            orders.get(missing)


# ----------------------------------------------------------------------------------------------------- events
def record(sequence: int, order_no: str, event_name: str = "INSERT") -> dict[str, Any]:
    return {
        "eventName": event_name,
        "dynamodb": {"SequenceNumber": str(sequence), "NewImage": to_item(stored(order_no, T0))},
    }


class EventsApi:
    """boto3's put_events as EventBridge answers: refuses the entries whose order number is in ``refuse``."""

    def __init__(self, refuse: frozenset[str] = frozenset(), down: bool = False) -> None:
        self.requests: list[list[dict[str, Any]]] = []
        self.refuse, self.down = refuse, down

    def put_events(self, Entries: list[dict[str, Any]]) -> dict[str, Any]:
        from botocore.exceptions import EndpointConnectionError

        self.requests.append(Entries)
        if self.down:
            raise EndpointConnectionError(endpoint_url="http://events")
        results = [
            {"ErrorCode": "InternalFailure", "ErrorMessage": "x"}
            if json.loads(e["Detail"])["fulfillment_order_no"] in self.refuse
            else {"EventId": f"id{n}"}
            for n, e in enumerate(Entries)
        ]
        return {"FailedEntryCount": sum("ErrorCode" in r for r in results), "Entries": results}


def test_events_go_ten_per_request_without_personal_data_and_failures_are_reported_per_record() -> None:
    api = EventsApi(refuse=frozenset({"7", "12"}))
    records = [record(n, str(n)) for n in range(23)] + [record(99, "x", event_name="MODIFY")]
    report = publish_new_orders(records, bus_name="bus", stage="dev", client=api)
    assert [len(request) for request in api.requests] == [10, 10, 3]
    assert report.published == 21 and report.skipped == 1
    assert report.batch_response() == {"batchItemFailures": [{"itemIdentifier": "7"}, {"itemIdentifier": "12"}]}
    entry = api.requests[0][0]
    assert (entry["Source"], entry["DetailType"], entry["EventBusName"]) == (SOURCE, DETAIL_TYPE, "bus")
    detail = json.loads(entry["Detail"])
    assert set(detail) == {
        "fulfillment_order_no", "partner_order_id", "store_id", "item_id", "quantity", "received_at", "stage"
    }  # fmt: skip
    assert detail["received_at"] == "2026-11-30T23:59:58.999Z" and detail["stage"] == "dev"


def test_a_failed_put_events_request_fails_its_records_only() -> None:
    report = publish_new_orders(
        [record(n, str(n)) for n in range(3)], bus_name="b", stage="d", client=EventsApi(down=True)
    )
    assert report.failed == ["0", "1", "2"] and report.published == 0


# -------------------------------------------------------------------------------------- local stream mapping
def test_the_template_stream_source_is_read_with_its_filter() -> None:
    (source,) = stream_sources(load_template(TEMPLATE_PATH))
    assert (source.function_id, source.table) == ("FulfillmentEventsFunction", "FulfillmentOrdersTable")
    assert source.report_batch_item_failures and source.batch_size == 100 and source.maximum_retry_attempts == 10
    assert source.filters == [{"eventName": ["INSERT"]}]
    assert matches(source.filters[0], {"eventName": "INSERT", "dynamodb": {}})
    assert not matches(source.filters[0], {"eventName": "MODIFY"})
    assert matches({"dynamodb": {"NewImage": {"status": {"S": ["CREATED"]}}}}, record(1, "1") | {"dynamodb": {
        "NewImage": {"status": {"S": "CREATED"}}}})  # fmt: skip


def test_the_poller_retries_from_the_oldest_reported_failure_then_gives_up() -> None:
    calls: list[list[str]] = []

    def invoke(function_id: str, event: dict[str, Any], timeout_s: float, memory_mb: int) -> dict[str, Any]:
        sequences = [r["dynamodb"]["SequenceNumber"] for r in event["Records"]]
        calls.append(sequences)
        failing = [s for s in sequences if s in {"3", "5"}] if len(calls) < 3 else []
        return {"batchItemFailures": [{"itemIdentifier": s} for s in reversed(failing)]}

    source = StreamSource("F", "f/", "app.h", "T", report_batch_item_failures=True, maximum_retry_attempts=1)
    poller = StreamPoller([source], None, None, invoke, retry_pause_s=0)
    poller._deliver(source, [record(n, str(n)) for n in range(1, 7)], None)
    assert calls == [["1", "2", "3", "4", "5", "6"], ["3", "4", "5", "6"]]
    assert poller.given_up == [{"function": "F", "sequence_numbers": ["3", "4", "5", "6"]}]


def test_a_lost_stream_iterator_resumes_after_the_last_record_read() -> None:
    from botocore.exceptions import ClientError

    from bridge_local.stream_mapping import _Shard

    class Streams:  # moto's answers, and the error it gives for an iterator it no longer knows
        def __init__(self) -> None:
            self.positions: list[dict[str, Any]] = []
            self.lose_next = False

        def get_records(self, ShardIterator: str, Limit: int) -> dict[str, Any]:
            if self.lose_next:
                self.lose_next = False
                raise ClientError({"Error": {"Code": "ExpiredIteratorException"}}, "GetRecords")
            if ShardIterator == "first":
                return {"NextShardIterator": "second", "Records": [record(7, "A-7"), record(8, "A-8")]}
            return {"NextShardIterator": ShardIterator, "Records": []}

        def get_shard_iterator(self, **position: Any) -> dict[str, str]:
            self.positions.append(position)
            return {"ShardIterator": "resumed"}

    delivered: list[str] = []

    def invoke(function_id: str, event: dict[str, Any], timeout_s: float, memory_mb: int) -> None:
        delivered.extend(r["dynamodb"]["SequenceNumber"] for r in event["Records"])

    source = StreamSource("F", "f/", "app.h", "T")
    streams = Streams()
    poller = StreamPoller([source], None, streams, invoke, retry_pause_s=0)
    poller._shards = [_Shard(source, "arn:stream", "shard-1", "first")]
    assert poller.poll_once() == 2 and delivered == ["7", "8"]
    streams.lose_next = True
    assert poller.poll_once() == 0
    assert streams.positions == [
        {
            "StreamArn": "arn:stream",
            "ShardId": "shard-1",
            "ShardIteratorType": "AFTER_SEQUENCE_NUMBER",
            "SequenceNumber": "8",
        }
    ]
    assert poller._shards[0].iterator == "resumed" and delivered == ["7", "8"]


def test_the_literal_routes_win_over_the_intake_parameters() -> None:
    routes = http_routes(load_template(TEMPLATE_PATH))
    for path, function_id in (
        ("/v1/fulfillment-orders/123", "FulfillmentOrdersFunction"),
        ("/v1/fulfillment-orders", "FulfillmentOrdersFunction"),
        ("/v1/writeoffs/123", "IntakeFunction"),
    ):
        found = match_route(routes, "GET", path)
        assert found is not None and found[0].function_id == function_id, path
    found = match_route(routes, "GET", "/v1/fulfillment-orders/12%2034")
    assert found is not None and found[1] == {"fulfillment_order_no": "12 34"}
