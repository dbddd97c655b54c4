"""Fulfillment orders in DynamoDB: one conditional transaction stores the order and takes inventory.

A new order is one round trip (TransactWriteItems). A replay is answered from the cancellation reason of
that same round trip (``ReturnValuesOnConditionCheckFailure``), so it costs one too. Either both writes
happen or neither does.

Inventory items (``store_id``, ``item_id``) carry ``tracked`` and ``available``. Capacity is enforced only
on items with ``tracked = true`` (set by :meth:`FulfillmentStore.set_capacity`). An item without a
capacity record is created as ``tracked = false`` by its first order, which keeps the write to a single
expression that needs no read first; on such items ``available`` is only a running negative total and
``ordered`` counts what was booked.

Time: the Qimen callback must answer (with JSON) inside its Lambda timeout (6 s, template.yaml) and the caller
wants it within about 3 s. The store therefore has its own DynamoDB client: one attempt is bounded by its connect
and read timeouts and botocore does not retry; :meth:`FulfillmentStore.create` retries conflicts, throttling,
5xx and connection failures itself, but starts no attempt that could end after ``budget_s`` (3 s).

Listing in received order (``received-index``, template.yaml): the order item itself carries ``received_day``
(UTC ``YYYY-MM-DD``, the index's partition: one per day, so no partition grows forever and a reader walks days
forward) and ``received_key`` (:func:`received_key`: the receipt time with fixed-width milliseconds, then ``#`` and
the order number, so it is unique and sorts as received). Both are written by the same Put of the same
transaction: listing costs the callback no extra request. Orders stored before these attributes existed are not
in the index (a GSI only holds items that have its keys); :meth:`FulfillmentStore.get` still finds them.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, HTTPClientError
from botocore.exceptions import ConnectionError as BotoConnectionError

from . import dynamo
from .dynamo import (
    MAX_ITEM_BYTES,
    RETRYABLE_REASONS,
    describe_error,
    from_item,
    is_retryable,
    is_transaction_conflict,
    item_size,
    maybe_applied,
    storage_errors,
    to_item,
)
from .errors import StorageError

__all__ = [
    "CONNECT_TIMEOUT_S",
    "CREATE_BUDGET_S",
    "READ_TIMEOUT_S",
    "RECEIVED_INDEX",
    "Conflict",
    "CreateOutcome",
    "Created",
    "FulfillmentStore",
    "NewOrder",
    "NoInventory",
    "Replayed",
    "TooLarge",
    "day_after",
    "received_day",
    "received_key",
    "store_client",
    "time_key",
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


@dataclass(frozen=True)
class TooLarge:
    """The order breaks a DynamoDB limit (``what``: a key or the item); nothing was sent."""

    what: str
    size: int
    limit: int


CreateOutcome = Created | Replayed | Conflict | NoInventory | TooLarge

CONNECT_TIMEOUT_S = 0.5
READ_TIMEOUT_S = 1.5
CREATE_BUDGET_S = 3.0
"""No attempt starts that could end (connect + read timeout) after this many seconds from the call."""
# DynamoDB's key limits (moto does not enforce them): a partition key value, a sort key value.
_KEY_LIMITS = {"fulfillment_order_no": 2048, "store_id": 2048, "item_id": 1024}
_MAX_ATTEMPTS = 4
_CLIENT_KEY = "dynamodb:fulfillment"
RECEIVED_INDEX = "received-index"
"""The orders table's index by receipt: partition ``received_day``, sort ``received_key`` (template.yaml)."""


def received_day(moment: datetime) -> str:
    """The index partition of an order received at ``moment`` (aware): its UTC day, ``YYYY-MM-DD``."""
    return moment.astimezone(UTC).date().isoformat()


def received_key(moment: datetime, fulfillment_order_no: str) -> str:
    """The index sort key: ``YYYY-MM-DDTHH:MM:SS.mmmZ#<order number>`` in UTC. The time is fixed width, so text
    order is time order; the number makes it unique when two orders share a millisecond."""
    return f"{time_key(moment)}#{fulfillment_order_no}"


def time_key(moment: datetime) -> str:
    """``moment`` (aware) as the time part of :func:`received_key`; any key of an order received before it sorts
    below it, any key at or after it above (the ``#`` suffix makes a key at the same millisecond longer)."""
    utc = moment.astimezone(UTC)
    return f"{utc.date().isoformat()}T{utc:%H:%M:%S}.{utc.microsecond // 1000:03d}Z"


def day_after(day: str) -> str:
    """The UTC day after ``day`` (``YYYY-MM-DD``)."""
    return (date.fromisoformat(day) + timedelta(days=1)).isoformat()


def store_client() -> Any:
    """The container's DynamoDB client for fulfillment orders: tight timeouts, no botocore retries (create()
    retries within its budget). Kept in dynamo's client cache, which the local stack clears when its endpoint
    changes; dynamo's shared client keeps its own, longer settings for the outbox."""
    client = dynamo._clients.get(_CLIENT_KEY)
    if client is None:
        config = Config(
            connect_timeout=CONNECT_TIMEOUT_S,
            read_timeout=READ_TIMEOUT_S,
            retries={"mode": "standard", "total_max_attempts": 1},
        )
        client = dynamo._clients[_CLIENT_KEY] = boto3.client("dynamodb", config=config)
    return client


class FulfillmentStore:
    def __init__(
        self,
        orders_table: str,
        inventory_table: str,
        *,
        retention_days: int = 180,
        client: Any | None = None,
        budget_s: float = CREATE_BUDGET_S,
        monotonic: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.orders_table = orders_table
        self.inventory_table = inventory_table
        self.retention_days = retention_days
        self.budget_s = budget_s
        self._client = client
        self._monotonic = monotonic
        self._sleep = sleep

    @property
    def client(self) -> Any:
        if self._client is None:
            self._client = store_client()
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
                "received_day": received_day(order.received_at),
                "received_key": received_key(order.received_at, order.fulfillment_order_no),
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
        too_large = _too_large(order, order_item)
        if too_large is not None:
            return too_large
        return self._transact(items, order)

    def _transact(self, items: list[dict[str, Any]], order: NewOrder) -> CreateOutcome:
        # Retried: a conflict with a concurrent duplicate (after a pause the winner's item is visible and the retry
        # is a replay), throttling, a 5xx, a connection failure. A write that may have landed (read timeout, 5xx)
        # is safe to send again: the retry finds our own order and replays its answer.
        deadline = self._monotonic() + self.budget_s
        attempt_worst = CONNECT_TIMEOUT_S + READ_TIMEOUT_S
        applied = False
        for attempt in range(1, _MAX_ATTEMPTS + 1):
            try:
                self.client.transact_write_items(TransactItems=items)
                return Created(order.partner_order_id)
            except ClientError as exc:
                outcome = self._explain_cancellation(exc, order)
                if outcome is not None:
                    return outcome
                applied |= maybe_applied(exc)
                problem = describe_error(exc)
                if not (is_transaction_conflict(exc) or is_retryable(exc) or _throttled(exc)):
                    raise StorageError(f"storing fulfillment order failed: {problem}", maybe_applied=applied) from exc
                failure: Exception = exc
            except (BotoConnectionError, HTTPClientError) as exc:  # not connected, timed out, connection dropped
                applied |= not isinstance(exc, BotoConnectionError)
                problem, failure = str(exc), exc
            except BotoCoreError as exc:  # a request botocore refused to send
                raise StorageError(f"storing fulfillment order failed: {exc}", maybe_applied=applied) from exc
            pause = 0.02 * attempt + random.uniform(0, 0.02)
            if attempt == _MAX_ATTEMPTS or self._monotonic() + pause + attempt_worst > deadline:
                raise StorageError(
                    f"storing fulfillment order failed after {attempt} attempt(s) in {self.budget_s} s: {problem}",
                    maybe_applied=applied,
                ) from failure
            self._sleep(pause)
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

    def received_on(
        self, day: str, *, after_key: str, before_key: str, limit: int, start: dict[str, Any] | None = None
    ) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
        """One Query page of the orders received on ``day`` whose ``received_key`` is above ``after_key`` and
        below ``before_key``, in received order, at most ``limit``; and the key to pass as ``start`` for the next
        page (None: the range is exhausted). Eventually consistent, like every index read."""
        # after_key is exclusive: BETWEEN is inclusive, so the page starts after it through ExclusiveStartKey, which
        # for an index names the index key and the table key (the order number, after the "#").
        if start is None and after_key:
            start = {"received_day": day, "received_key": after_key, "fulfillment_order_no": _order_no_of(after_key)}
        request: dict[str, Any] = {
            "TableName": self.orders_table,
            "IndexName": RECEIVED_INDEX,
            "KeyConditionExpression": "received_day = :day AND received_key BETWEEN :low AND :high",
            "ExpressionAttributeValues": to_item({":day": day, ":low": after_key or day, ":high": before_key}),
            "Limit": limit,
        }
        if start is not None:
            request["ExclusiveStartKey"] = to_item(start)
        with storage_errors("listing fulfillment orders (Query)"):
            page = self.client.query(**request)
        last = page.get("LastEvaluatedKey")
        return [from_item(item) for item in page.get("Items", [])], (from_item(last) if last else None)

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


def _order_no_of(key: str) -> str:
    return key.partition("#")[2]


def _throttled(exc: ClientError) -> bool:
    return any(reason.get("Code") in RETRYABLE_REASONS for reason in exc.response.get("CancellationReasons") or [])


def _too_large(order: NewOrder, order_item: dict[str, Any]) -> TooLarge | None:
    # The model limits keys far below these; this holds for any caller of the store.
    for name, limit in _KEY_LIMITS.items():
        size = len(str(getattr(order, name)).encode("utf-8"))
        if size == 0 or size > limit:
            return TooLarge(name, size, limit)
    size = item_size(order_item)
    return TooLarge("order", size, MAX_ITEM_BYTES) if size > MAX_ITEM_BYTES else None
