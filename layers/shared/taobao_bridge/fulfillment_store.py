"""Fulfillment orders in DynamoDB: one conditional transaction stores the order and takes inventory.

A new order is one round trip (TransactWriteItems). A replay is answered from the cancellation reason of
that same round trip (``ReturnValuesOnConditionCheckFailure``), so it costs one too. Either both writes
happen or neither does.

Inventory items (``store_id``, ``item_id``) carry ``tracked`` and ``available``. Capacity is enforced only
on items with ``tracked = true`` (set by :meth:`FulfillmentStore.set_capacity`). An item without a
capacity record is created as ``tracked = false`` by its first order, which keeps the write to a single
expression that needs no read first; on such items ``available`` is only a running negative total and
``ordered`` counts what was booked.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from .dynamo import describe_error, dynamodb_client, from_item, is_transaction_conflict, storage_errors, to_item
from .errors import StorageError

__all__ = [
    "Conflict",
    "CreateOutcome",
    "Created",
    "FulfillmentStore",
    "NewOrder",
    "NoInventory",
    "Replayed",
]


@dataclass(frozen=True)
class NewOrder:
    fulfillment_order_no: str
    payload_sha256: str
    payload_json: str
    partner_order_id: str
    answer_json: str
    store_id: str
    item_id: str
    quantity: int
    received_at: datetime


@dataclass(frozen=True)
class Created:
    partner_order_id: str


@dataclass(frozen=True)
class Replayed:
    """The same order number with the same payload: the first answer, as stored."""

    answer_json: str


@dataclass(frozen=True)
class Conflict:
    """The same order number with a different payload."""

    first_received_at: str


@dataclass(frozen=True)
class NoInventory:
    available: int


CreateOutcome = Created | Replayed | Conflict | NoInventory

# Concurrent duplicates can cancel each other in DynamoDB (TransactionConflict); after a short pause the
# winner's item is visible and the retry becomes a replay.
_CONFLICT_RETRIES = 3


class FulfillmentStore:
    def __init__(
        self,
        orders_table: str,
        inventory_table: str,
        *,
        retention_days: int = 180,
        client: Any | None = None,
    ) -> None:
        self.orders_table = orders_table
        self.inventory_table = inventory_table
        self.retention_days = retention_days
        self._client = client

    @property
    def client(self) -> Any:
        if self._client is None:
            self._client = dynamodb_client()
        return self._client

    def create(self, order: NewOrder) -> CreateOutcome:
        """Store ``order`` and take its inventory atomically, or say why not. Raises ``StorageError``."""
        expires_at = int((order.received_at + timedelta(days=self.retention_days)).timestamp())
        order_item = to_item(
            {
                "fulfillment_order_no": order.fulfillment_order_no,
                "partner_order_id": order.partner_order_id,
                "payload_sha256": order.payload_sha256,
                "payload": order.payload_json,
                "answer": order.answer_json,
                "store_id": order.store_id,
                "item_id": order.item_id,
                "quantity": order.quantity,
                "received_at": order.received_at.isoformat(),
                "status": "CREATED",
                "expires_at": expires_at,
            }
        )
        items = [
            {
                "Put": {
                    "TableName": self.orders_table,
                    "Item": order_item,
                    "ConditionExpression": "attribute_not_exists(fulfillment_order_no)",
                    "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
                }
            },
            {
                "Update": {
                    "TableName": self.inventory_table,
                    "Key": to_item({"store_id": order.store_id, "item_id": order.item_id}),
                    "UpdateExpression": "SET tracked = if_not_exists(tracked, :false) ADD available :taken, ordered :q",
                    "ConditionExpression": "attribute_not_exists(tracked) OR tracked = :false OR available >= :q",
                    "ExpressionAttributeValues": to_item(
                        {":false": False, ":q": order.quantity, ":taken": -order.quantity}
                    ),
                    "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
                }
            },
        ]
        for attempt in range(_CONFLICT_RETRIES + 1):
            try:
                self.client.transact_write_items(TransactItems=items)
                return Created(order.partner_order_id)
            except ClientError as exc:
                outcome = self._explain_cancellation(exc, order)
                if outcome is not None:
                    return outcome
                if attempt == _CONFLICT_RETRIES or not is_transaction_conflict(exc):
                    raise StorageError(f"storing fulfillment order failed: {describe_error(exc)}") from exc
                time.sleep(0.02 * (attempt + 1) + random.uniform(0, 0.02))
            except BotoCoreError as exc:
                raise StorageError(f"storing fulfillment order failed: {exc}") from exc
        raise AssertionError("unreachable")  # the loop returns or raises

    @staticmethod
    def _explain_cancellation(exc: ClientError, order: NewOrder) -> CreateOutcome | None:
        if exc.response.get("Error", {}).get("Code") != "TransactionCanceledException":
            return None
        reasons = exc.response.get("CancellationReasons") or []
        order_reason = reasons[0] if reasons else {}
        inventory_reason = reasons[1] if len(reasons) > 1 else {}
        if order_reason.get("Code") == "ConditionalCheckFailed" and "Item" in order_reason:
            first = from_item(order_reason["Item"])
            if first.get("payload_sha256") == order.payload_sha256:
                return Replayed(str(first["answer"]))
            return Conflict(str(first.get("received_at", "")))
        if inventory_reason.get("Code") == "ConditionalCheckFailed":
            old = from_item(inventory_reason.get("Item") or {})
            return NoInventory(int(old.get("available", 0)))
        return None

    def get(self, fulfillment_order_no: str) -> dict[str, Any] | None:
        """The stored order as plain values, or None."""
        with storage_errors("reading fulfillment order (GetItem)"):
            found = self.client.get_item(
                TableName=self.orders_table,
                Key=to_item({"fulfillment_order_no": fulfillment_order_no}),
                ConsistentRead=True,
            )
        return from_item(found["Item"]) if "Item" in found else None

    def set_capacity(self, store_id: str, item_id: str, available: int) -> None:
        """Start (or reset) enforcing capacity for one store and item."""
        if available < 0:
            raise ValueError("available must be >= 0")
        with storage_errors("setting capacity (UpdateItem)"):
            self.client.update_item(
                TableName=self.inventory_table,
                Key=to_item({"store_id": store_id, "item_id": item_id}),
                UpdateExpression="SET tracked = :true, available = :available",
                ExpressionAttributeValues=to_item({":true": True, ":available": available}),
            )

    def get_capacity(self, store_id: str, item_id: str) -> dict[str, Any] | None:
        with storage_errors("reading capacity (GetItem)"):
            found = self.client.get_item(
                TableName=self.inventory_table,
                Key=to_item({"store_id": store_id, "item_id": item_id}),
                ConsistentRead=True,
            )
        return from_item(found["Item"]) if "Item" in found else None
