"""The benchmark's cost arithmetic (bench/cost.py, bench/ceiling.py): request units as on-demand DynamoDB bills
them, Lambda GB-seconds, dollars, and the throughput ceiling. Pure: no server, no clock."""

from __future__ import annotations

import pytest

from bench.ceiling import CeilingInputs, ceilings
from bench.cost import (
    CapacityLedger,
    IndexSpec,
    Prices,
    TableSpec,
    dollars_per_million,
    lambda_gb_seconds,
    read_units,
    write_units,
)
from bridge_local.stack import PROJECT_ROOT
from bridge_local.template import dynamodb_tables, load_template

OUTBOX = TableSpec("Outbox", ("pk",), (IndexSpec("due-index", ("due_kind", "due_at")),))


def record(n: int, *, due: bool = True, padding: int = 0, due_at: int = 1_796_000_000_000) -> dict:
    """An outbox item in DynamoDB JSON; ``padding`` extra bytes of payload."""
    item = {"pk": {"S": f"writeoff#{n}"}, "payload": {"S": "x" * padding}, "state": {"S": "due" if due else "synced"}}
    if due:
        item |= {"due_kind": {"S": "writeoff"}, "due_at": {"N": str(due_at)}}
    return item


def accept(ledger: CapacityLedger, *items: dict) -> None:
    actions = [{"Put": {"TableName": "Outbox", "Item": item}} for item in items]
    ledger.observe("TransactWriteItems", {"TransactItems": actions}, {})


def settle(ledger: CapacityLedger, *items: dict, unprocessed: list | None = None) -> None:
    requests = [{"PutRequest": {"Item": item}} for item in items]
    answer = {"UnprocessedItems": {"Outbox": unprocessed}} if unprocessed else {}
    ledger.observe("BatchWriteItem", {"RequestItems": {"Outbox": requests}}, answer)


@pytest.mark.parametrize(("size", "units"), [(0, 1), (1, 1), (1024, 1), (1025, 2), (4096, 4), (400 * 1024, 400)])
def test_write_units_are_one_per_kilobyte_rounded_up(size: int, units: int) -> None:
    assert write_units(size) == units


@pytest.mark.parametrize(
    ("size", "consistent", "units"), [(0, True, 1), (4096, True, 1), (4097, True, 2), (4097, False, 1), (1, False, 0.5)]
)
def test_read_units_are_per_four_kilobytes_and_half_when_eventually_consistent(
    size: int, consistent: bool, units: float
) -> None:
    assert read_units(size, consistent=consistent) == units


def test_a_writeoff_accepted_and_synced_costs_five_write_units() -> None:
    # The count for the design as it stood: 2 (transactional accept) + 2 (index entry in and out) + 1 (settle).
    ledger = CapacityLedger([OUTBOX])
    accept(ledger, record(1))
    settle(ledger, record(1, due=False))
    assert ledger.writes == {"TransactWriteItems": 2, "index due-index": 2, "BatchWriteItem": 1}
    assert ledger.write_total == 5


def test_an_item_is_billed_at_the_larger_of_its_sizes_before_and_after() -> None:
    ledger = CapacityLedger([OUTBOX])
    accept(ledger, record(1, padding=2500))  # about 2.5 KB: 3 units, doubled
    settle(ledger, record(1, due=False))  # small now, but it replaces a 2.5 KB item
    assert ledger.writes["TransactWriteItems"] == 6
    assert ledger.writes["BatchWriteItem"] == 3


def test_a_retry_moves_the_index_entry_delete_and_put() -> None:
    ledger = CapacityLedger([OUTBOX])
    accept(ledger, record(1))
    settle(ledger, record(1, due_at=1_796_000_060_000))
    assert ledger.writes["index due-index"] == 1 + 2
    settle(ledger, record(1, due_at=1_796_000_060_000))  # same index key again: KEYS_ONLY entry untouched
    assert ledger.writes["index due-index"] == 3


def test_unprocessed_items_are_not_billed_until_they_are_written() -> None:
    ledger = CapacityLedger([OUTBOX])
    left = [{"PutRequest": {"Item": record(2, due=False)}}]
    settle(ledger, record(1, due=False), record(2, due=False), unprocessed=left)
    assert ledger.writes["BatchWriteItem"] == 1


def test_a_failed_condition_is_billed_and_changes_nothing() -> None:
    ledger = CapacityLedger([OUTBOX])
    accept(ledger, record(1))
    failed = {"Error": {"Code": "TransactionCanceledException"}}
    ledger.observe(
        "TransactWriteItems", {"TransactItems": [{"Put": {"TableName": "Outbox", "Item": record(1)}}]}, failed
    )
    assert ledger.writes["TransactWriteItems"] == 4
    assert ledger.writes["index due-index"] == 1  # the entry exists once


def test_throttled_requests_cost_nothing() -> None:
    ledger = CapacityLedger([OUTBOX])
    throttled = {"Error": {"Code": "ProvisionedThroughputExceededException"}}
    ledger.observe("PutItem", {"TableName": "Outbox", "Item": record(1)}, throttled)
    assert ledger.write_total == 0
    assert ledger.requests["PutItem"] == 1


def test_batch_get_rounds_each_item_and_charges_missing_keys() -> None:
    ledger = CapacityLedger([OUTBOX])
    keys = [{"pk": {"S": f"writeoff#{n}"}} for n in range(3)]
    found = [record(0, padding=1000), record(1, padding=1000)]  # 1 KB each: one unit each, not one for both
    params = {"RequestItems": {"Outbox": {"Keys": keys, "ConsistentRead": True}}}
    ledger.observe("BatchGetItem", params, {"Responses": {"Outbox": found}})
    assert ledger.reads["BatchGetItem"] == 3


def test_an_index_query_page_is_rounded_as_a_whole_and_eventually_consistent() -> None:
    ledger = CapacityLedger([OUTBOX])
    items = [{"pk": {"S": f"writeoff#{n:05d}"}} for n in range(200)]  # about 60 bytes an entry: 12 KB
    params = {"TableName": "Outbox", "IndexName": "due-index", "ProjectionExpression": "pk"}
    ledger.observe("Query", params, {"Items": items})
    assert ledger.reads["Query"] == 1.5  # 3 units of 4 KB, halved


def test_update_item_setting_index_keys_adds_the_entry() -> None:
    ledger = CapacityLedger([OUTBOX])
    settle(ledger, record(1, due=False))
    params = {
        "TableName": "Outbox",
        "Key": {"pk": {"S": "writeoff#1"}},
        "UpdateExpression": "SET #k = :k, due_at = :t REMOVE settled_at",
        "ExpressionAttributeNames": {"#k": "due_kind"},
        "ExpressionAttributeValues": {":k": {"S": "writeoff"}, ":t": {"N": "1796000000000"}},
    }
    ledger.observe("UpdateItem", params, {})
    assert ledger.writes["UpdateItem"] == 1
    assert ledger.writes["index due-index"] == 1


def test_table_shapes_come_from_the_template() -> None:
    tables = {
        t["TableName"]: TableSpec.from_create_table(t)
        for t in dynamodb_tables(load_template(PROJECT_ROOT / "template.yaml"))
    }
    outbox = tables["OutboxTable"]
    assert outbox.keys == ("pk",)
    assert ("due-index", ("due_kind", "due_at"), "KEYS_ONLY") in [
        (i.name, i.keys, i.projection) for i in outbox.indexes
    ]


def test_lambda_bills_each_invocation_rounded_up_to_the_millisecond() -> None:
    assert lambda_gb_seconds([1000.2, 0.1], 512) == pytest.approx((1001 + 1) / 1000 / 2)


def test_dollars_per_million_records_at_the_stated_prices() -> None:
    prices = Prices()
    parts = dollars_per_million(
        write_units_per_record=5, read_units_per_record=1, gb_seconds_per_record=0.001, invocations_per_record=0.001
    )
    assert parts["dynamodb_writes"] == pytest.approx(5 * prices.dynamodb_write_per_million)
    assert parts["dynamodb_reads"] == pytest.approx(0.125)
    assert parts["lambda_duration"] == pytest.approx(1000 * prices.lambda_gb_second)
    assert parts["lambda_requests"] == pytest.approx(0.0002)
    assert parts["total"] == pytest.approx(3.125 + 0.125 + 0.0133334 + 0.0002)


def test_one_kind_tops_out_at_the_lowest_limit_and_shards_multiply_the_partition_and_the_runs() -> None:
    limit = ceilings(
        CeilingInputs(index_writes_per_record=2, in_run_records_per_s=900, records_per_call=999, top_calls_per_day=1e6)
    )
    assert limit.index_partition == 500
    assert limit.schedule == pytest.approx(900 * 40 / 60)
    assert limit.top_quota == pytest.approx(1e6 * 999 / 86_400)
    assert (limit.one_kind, limit.binding) == (500, "due-index partition")
    assert limit.sharded == pytest.approx(min(5000, 6000, 1e6 * 999 / 86_400))
    assert limit.sharded_binding == "due-index partitions"


def test_one_record_per_call_is_bound_by_the_quota_whatever_the_shards() -> None:
    limit = ceilings(
        CeilingInputs(index_writes_per_record=2, in_run_records_per_s=60, records_per_call=1, top_calls_per_day=1e6)
    )
    assert limit.binding == "TOP quota"
    assert limit.sharded == limit.top_quota
