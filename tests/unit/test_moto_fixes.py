"""bridge_local.moto_fixes: one DynamoDB request at a time, a cancelled transaction undoes exactly its own writes,
and stored items are replaced rather than changed in place.

The backend tests use a backend object of their own (not moto's process-wide registry, which the integration
stack uses); the lock test goes through a moto server, as the local stack does.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from moto.dynamodb.exceptions import TransactionCanceledException
from moto.dynamodb.models import DynamoDBBackend
from moto.dynamodb.models.dynamo_type import DynamoType, Item
from moto.server import ThreadedMotoServer

from bridge_local import moto_fixes


@pytest.fixture
def backend() -> DynamoDBBackend:
    moto_fixes.apply()
    found = DynamoDBBackend("us-east-1", "123456789012")
    for name, schema, attr in (
        ("Orders", [{"AttributeName": "id", "KeyType": "HASH"}], [{"AttributeName": "id", "AttributeType": "S"}]),
        (
            "Stock",
            [{"AttributeName": "store", "KeyType": "HASH"}, {"AttributeName": "item", "KeyType": "RANGE"}],
            [{"AttributeName": "store", "AttributeType": "S"}, {"AttributeName": "item", "AttributeType": "S"}],
        ),
    ):
        found.create_table(
            name,
            schema=schema,
            throughput=None,
            attr=attr,
            global_indexes=[],
            indexes=[],
            streams=None,
            billing_mode="PAY_PER_REQUEST",
            sse_specification=None,
            tags=[],
            deletion_protection_enabled=False,
            warm_throughput=None,
        )
    return found


def order(order_id: str, **attrs: Any) -> dict[str, Any]:
    return {"id": {"S": order_id}, **{k: {"S": v} for k, v in attrs.items()}}


def stock_key(store: str, item: str) -> dict[str, Any]:
    return {"store": {"S": store}, "item": {"S": item}}


def take(backend: DynamoDBBackend, order_id: str, store: str = "s1", item: str = "i1") -> None:
    """The Qimen store's transaction: the order if new, and one more ordered on its stock item."""
    backend.transact_write_items(
        [
            {
                "Put": {
                    "TableName": "Orders",
                    "Item": order(order_id),
                    "ConditionExpression": "attribute_not_exists(id)",
                }
            },
            {
                "Update": {
                    "TableName": "Stock",
                    "Key": stock_key(store, item),
                    "UpdateExpression": "ADD ordered :one",
                    "ExpressionAttributeValues": {":one": {"N": "1"}},
                }
            },
        ]
    )


def ordered(backend: DynamoDBBackend, store: str = "s1", item: str = "i1") -> int:
    found = backend.get_item("Stock", stock_key(store, item))
    return int(found.attrs["ordered"].value) if found else 0


def test_a_cancelled_transaction_undoes_only_its_own_writes(backend: DynamoDBBackend) -> None:
    tables = dict(backend.tables)
    take(backend, "o1")
    backend.put_item("Orders", order("other", note="written by someone else"))
    with pytest.raises(TransactionCanceledException):
        take(backend, "o1")  # a replay: the order exists, so the stock update it made is undone
    assert ordered(backend) == 1
    assert backend.get_item("Orders", {"id": {"S": "other"}}) is not None  # moto used to restore the whole table
    take(backend, "o2", item="i2")
    with pytest.raises(TransactionCanceledException):
        take(backend, "o2", item="i3")  # the stock item it created is removed again, with its hash bucket
    assert ordered(backend, item="i3") == 0
    assert ordered(backend, item="i2") == 1
    # The tables were never swapped for copies: writes that other requests made meanwhile could not be lost.
    assert all(backend.tables[name] is table for name, table in tables.items())


def test_a_new_item_created_by_a_cancelled_transaction_is_removed(backend: DynamoDBBackend) -> None:
    with pytest.raises(TransactionCanceledException):
        backend.transact_write_items(
            [
                {"Put": {"TableName": "Orders", "Item": order("fresh")}},
                {
                    "Update": {
                        "TableName": "Stock",
                        "Key": stock_key("s9", "i9"),
                        "UpdateExpression": "ADD ordered :one",
                        "ExpressionAttributeValues": {":one": {"N": "1"}},
                    }
                },
                {
                    "ConditionCheck": {
                        "TableName": "Orders",
                        "Key": {"id": {"S": "missing"}},
                        "ConditionExpression": "attribute_exists(id)",
                    }
                },
            ]
        )
    assert backend.get_item("Orders", {"id": {"S": "fresh"}}) is None
    assert DynamoType({"S": "s9"}) not in backend.tables["Stock"].items  # nor the store's (new) hash bucket


def test_an_update_replaces_the_stored_item(backend: DynamoDBBackend) -> None:
    backend.put_item("Orders", order("o1", state="new"))
    before = backend.get_item("Orders", {"id": {"S": "o1"}})
    listed = moto_fixes.stored_items(backend.tables["Orders"])
    backend.update_item(
        "Orders",
        {"id": {"S": "o1"}},
        update_expression="SET #s = :done",
        expression_attribute_names={"#s": "state"},
        expression_attribute_values={":done": {"S": "done"}},
    )
    after = backend.get_item("Orders", {"id": {"S": "o1"}})
    assert before is not None and after is not None and after is not before
    assert before.attrs["state"].value == "new" and listed == [before]  # what a snapshot listed stays as it was
    assert after.attrs["state"].value == "done"


@pytest.fixture
def client() -> Iterator[Any]:
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    moto_fixes.apply()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield boto3.client(
            "dynamodb",
            endpoint_url=f"http://{host}:{port}",
            region_name="us-east-1",
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )
    finally:
        server.stop()


def test_every_request_runs_under_the_lock_and_writes_are_counted(client: Any) -> None:
    table = f"t-{uuid.uuid4().hex}"
    client.create_table(
        TableName=table,
        KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    held: list[bool] = []
    original = DynamoDBBackend.get_item

    def get_item(self: Any, *args: Any, **kwargs: Any) -> Any:
        # Another thread cannot take the lock while a request is being answered.
        def try_lock() -> None:
            taken = moto_fixes.DYNAMODB_LOCK.acquire(blocking=False)
            if taken:
                moto_fixes.DYNAMODB_LOCK.release()
            held.append(not taken)

        probe = threading.Thread(target=try_lock)
        probe.start()
        probe.join()
        return original(self, *args, **kwargs)

    before = moto_fixes.write_generation()
    client.put_item(TableName=table, Item={"id": {"S": "a"}})
    assert moto_fixes.write_generation() > before
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(DynamoDBBackend, "get_item", get_item)
        after_write = moto_fixes.write_generation()
        client.get_item(TableName=table, Key={"id": {"S": "a"}})
    assert held == [True]
    assert moto_fixes.write_generation() == after_write  # reads do not make the state look changed


def test_read_only_actions() -> None:
    assert all(moto_fixes.is_read_only(a) for a in ("GetItem", "Query", "Scan", "BatchGetItem", "DescribeTable"))
    assert not any(moto_fixes.is_read_only(a) for a in ("PutItem", "UpdateItem", "TransactWriteItems", ""))


def test_items_moto_made_and_dropped_are_not_kept(backend: DynamoDBBackend) -> None:
    # moto's BaseModel used to append every item it ever made (copies included) to a class-level list.
    for n in range(20):
        take(backend, f"o{n}")
        with pytest.raises(TransactionCanceledException):
            take(backend, f"o{n}")
    assert getattr(Item, "instances_tracked", []) == []
    assert ordered(backend) == 20
