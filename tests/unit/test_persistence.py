"""bridge_local.persistence: the local tables are saved to a file and loaded back at the next start; a table whose
definition changed in template.yaml is loaded as far as it still fits, or starts empty if its key changed.

Each test uses a moto backend object of its own and a file in its temporary directory."""

from __future__ import annotations

import copy
import json
import time
from pathlib import Path
from typing import Any

import pytest
from moto.dynamodb.models import DynamoDBBackend
from moto.dynamodb.models.dynamo_type import DynamoType

from bridge_local import moto_fixes
from bridge_local.persistence import FORMAT, StateKeeper
from bridge_local.stack import PROJECT_ROOT
from bridge_local.template import dynamodb_tables, load_template


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    return load_template(PROJECT_ROOT / "template.yaml")


def new_backend(template: dict[str, Any]) -> DynamoDBBackend:
    moto_fixes.apply()
    backend = DynamoDBBackend("us-east-1", "123456789012")
    for kwargs in dynamodb_tables(template):
        backend.create_table(
            kwargs["TableName"],
            schema=kwargs["KeySchema"],
            throughput=kwargs.get("ProvisionedThroughput"),
            attr=kwargs["AttributeDefinitions"],
            global_indexes=kwargs.get("GlobalSecondaryIndexes", []),
            indexes=kwargs.get("LocalSecondaryIndexes", []),
            streams=None,
            billing_mode=kwargs["BillingMode"],
            sse_specification=None,
            tags=[],
            deletion_protection_enabled=False,
            warm_throughput=None,
        )
    return backend


def keeper(path: Path, template: dict[str, Any], backend: DynamoDBBackend) -> StateKeeper:
    return StateKeeper(path, template, interval_s=0.05, backend=backend)


def put_order(backend: DynamoDBBackend, number: str, expires_at: int | None = None) -> None:
    item = {
        "fulfillment_order_no": {"S": number},
        "payload": {"S": '{"名字":"张三"}'},
        "quantity": {"N": "2"},
        "raw": {"B": "AAE="},  # base64, as the API hands binary values to moto
        "tags": {"SS": ["a", "b"]},
        "nested": {"M": {"list": {"L": [{"S": "x"}, {"NULL": True}, {"BOOL": False}]}}},
    }
    if expires_at is not None:
        item["expires_at"] = {"N": str(expires_at)}
    backend.put_item("FulfillmentOrdersTable", item)


def item_json(backend: DynamoDBBackend, table: str, key: dict[str, Any]) -> dict[str, Any] | None:
    found = backend.get_item(table, key)
    return found.to_json() if found is not None else None


def test_saved_tables_come_back_with_every_attribute_type(tmp_path: Path, template: dict[str, Any]) -> None:
    path = tmp_path / "dynamodb.json"
    first = new_backend(template)
    state = keeper(path, template, first)
    assert state.restore() == [f"no saved tables at {state._shown(path)}: starting empty"]
    put_order(first, "1")
    first.update_item(
        "InventoryTable",
        {"store_id": {"S": "s"}, "item_id": {"S": "i"}},
        update_expression="ADD ordered :q",
        expression_attribute_names={},
        expression_attribute_values={":q": {"N": "3"}},
    )
    assert state.save() is False  # direct backend calls are not requests: nothing looks changed
    assert state.save(force=True) is True

    saved = json.loads(path.read_text(encoding="utf-8"))
    assert saved["format"] == FORMAT and saved["tables"]["FulfillmentOrdersTable"]["count"] == 1

    second = new_backend(template)
    lines = keeper(path, template, second).restore()
    assert "FulfillmentOrdersTable: 1 items loaded" in lines and "InventoryTable: 1 items loaded" in lines
    order_key = {"fulfillment_order_no": {"S": "1"}}
    assert item_json(second, "FulfillmentOrdersTable", order_key) == item_json(
        first, "FulfillmentOrdersTable", order_key
    )
    stock = second.get_item("InventoryTable", {"store_id": {"S": "s"}, "item_id": {"S": "i"}})
    assert stock is not None and stock.attrs["ordered"] == DynamoType({"N": "3"})


def test_items_past_their_ttl_are_not_loaded(tmp_path: Path, template: dict[str, Any]) -> None:
    path = tmp_path / "dynamodb.json"
    first = new_backend(template)
    state = keeper(path, template, first)
    state.restore()
    put_order(first, "old", expires_at=int(time.time()) - 10)
    put_order(first, "new", expires_at=int(time.time()) + 3600)
    state.save(force=True)

    second = new_backend(template)
    lines = keeper(path, template, second).restore()
    assert "FulfillmentOrdersTable: 1 items loaded, 1 past their TTL left out" in lines
    assert second.get_item("FulfillmentOrdersTable", {"fulfillment_order_no": {"S": "old"}}) is None


def test_a_changed_key_schema_starts_that_table_empty_and_keeps_a_backup(
    tmp_path: Path, template: dict[str, Any]
) -> None:
    path = tmp_path / "dynamodb.json"
    first = new_backend(template)
    state = keeper(path, template, first)
    state.restore()
    put_order(first, "1")
    first.put_item("OutboxTable", {"pk": {"S": "writeoff#1"}, "state": {"S": "due"}})
    state.save(force=True)

    changed = copy.deepcopy(template)
    orders = changed["Resources"]["FulfillmentOrdersTable"]["Properties"]
    orders["AttributeDefinitions"] = [{"AttributeName": "order_id", "AttributeType": "S"}]
    orders["KeySchema"] = [{"AttributeName": "order_id", "KeyType": "HASH"}]
    outbox = changed["Resources"]["OutboxTable"]["Properties"]
    outbox["GlobalSecondaryIndexes"][0]["Projection"] = {"ProjectionType": "ALL"}

    second = new_backend(changed)
    lines = keeper(path, changed, second).restore()
    assert (
        "FulfillmentOrdersTable: its key schema in template.yaml changed since the save; "
        "starting it empty (1 saved items not loaded)"
    ) in lines
    assert (
        "OutboxTable: 1 items loaded (its indexes or attributes changed in template.yaml; every item still fits)"
    ) in lines
    assert any(line.startswith("the file as it was is kept as") for line in lines)
    assert json.loads((tmp_path / "dynamodb.json.bak").read_text())["tables"]["FulfillmentOrdersTable"]["count"] == 1
    assert len(second.tables["FulfillmentOrdersTable"].items) == 0


def test_fresh_starts_empty_and_an_unreadable_file_is_kept_aside(tmp_path: Path, template: dict[str, Any]) -> None:
    path = tmp_path / "dynamodb.json"
    first = new_backend(template)
    state = keeper(path, template, first)
    state.restore()
    put_order(first, "1")
    state.save(force=True)

    second = new_backend(template)
    (line,) = keeper(path, template, second).restore(fresh=True)
    assert line.startswith("--fresh: starting empty") and not path.exists()
    assert (tmp_path / "dynamodb.json.bak").exists() and len(second.tables["FulfillmentOrdersTable"].items) == 0

    path.write_text("{not json", encoding="utf-8")
    (line,) = keeper(path, template, new_backend(template)).restore()
    assert line.startswith(f"cannot read {keeper(path, template, second)._shown(path)}") and not path.exists()


def test_the_background_saver_writes_after_changes(
    tmp_path: Path, template: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "dynamodb.json"
    backend = new_backend(template)
    state = keeper(path, template, backend)
    state.restore()
    state.start()
    try:
        put_order(backend, "1")
        monkeypatch.setattr(moto_fixes, "_generation", moto_fixes.write_generation() + 1)  # as a request does
        deadline = time.monotonic() + 5
        while not path.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert path.exists()
    finally:
        state.stop()
