"""``FulfillmentOrderReceived``: one EventBridge event per new fulfillment order, for merchant systems to subscribe.

The orders table's DynamoDB stream (new images) feeds ``functions/fulfillment_events``, whose event source lets
only INSERT records through (template.yaml): a replayed Qimen call writes nothing, so it makes no event. Each
record becomes one ``PutEvents`` entry (source :data:`SOURCE`, detail-type :data:`DETAIL_TYPE`), sent ten to a
request (EventBridge's limit). The detail names the order and what a store system needs to pick it up, never the
customer: no name, phone, ID number, address or note (those stay behind ``GET /v1/fulfillment-orders/{no}
?include=personal``).

Delivery is at least once. A record EventBridge refused (``FailedEntryCount``), or a request that failed, is
reported to Lambda as a batch item failure; Lambda retries the batch from the oldest failed record, so records
after it that did get through are published again. Subscribers deduplicate on ``fulfillment_order_no``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final

import boto3
from aws_lambda_powertools import Logger
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from . import dynamo
from .errors import ConfigurationError
from .fulfillment_store import time_key
from .jsonutil import dumps

__all__ = [
    "DETAIL_TYPE",
    "EVENT_BUS_ENV",
    "PUT_EVENTS_MAX_ENTRIES",
    "SOURCE",
    "STAGE_ENV",
    "PublishReport",
    "events_client",
    "order_received_detail",
    "publish_new_orders",
]

logger = Logger(child=True)

SOURCE: Final = "taobao-bridge"
DETAIL_TYPE: Final = "FulfillmentOrderReceived"
PUT_EVENTS_MAX_ENTRIES: Final = 10
"""EventBridge takes at most 10 entries per PutEvents request."""
EVENT_BUS_ENV: Final = "EVENT_BUS_NAME"
STAGE_ENV: Final = "BRIDGE_STAGE"
_CLIENT_KEY = "events"
# Fields of the stored order that go into the detail as they are; received_at is normalised to UTC.
_DETAIL_FIELDS = ("fulfillment_order_no", "partner_order_id", "store_id", "item_id", "quantity")


def events_client() -> Any:
    """The container's EventBridge client (boto3 honours AWS_ENDPOINT_URL_EVENTBRIDGE for the local stack's moto).
    Kept in dynamo's client cache, which the local stack clears when its endpoints change."""
    client = dynamo._clients.get(_CLIENT_KEY)
    if client is None:
        config = Config(connect_timeout=2, read_timeout=5, retries={"mode": "standard", "total_max_attempts": 3})
        client = dynamo._clients[_CLIENT_KEY] = boto3.client("events", config=config)
    return client


@dataclass
class PublishReport:
    """What became of one batch of stream records."""

    published: int = 0
    failed: list[str] = field(default_factory=list)
    """Sequence numbers of the records to report to Lambda as batch item failures."""
    skipped: int = 0
    """Records that are not a new order (not INSERT, or an item without an order's fields): nothing to publish."""

    def batch_response(self) -> dict[str, Any]:
        """The handler's answer under ``ReportBatchItemFailures``."""
        return {"batchItemFailures": [{"itemIdentifier": sequence} for sequence in self.failed]}


def order_received_detail(order: Mapping[str, Any], stage: str) -> dict[str, Any]:
    """The event detail for one stored order (plain values); ``KeyError`` if it lacks an order's fields."""
    detail = {name: order[name] for name in _DETAIL_FIELDS}
    detail["received_at"] = time_key(datetime.fromisoformat(str(order["received_at"])))
    detail["stage"] = stage
    return detail


def _entries(records: Iterable[Mapping[str, Any]], bus_name: str, stage: str, report: PublishReport) -> list[Any]:
    entries = []
    for record in records:
        change = record.get("dynamodb") or {}
        sequence = str(change.get("SequenceNumber", ""))
        if record.get("eventName") != "INSERT" or "NewImage" not in change:
            report.skipped += 1
            continue
        try:
            order = dynamo.from_item(change["NewImage"])
            detail = order_received_detail(order, stage)
            moment = datetime.fromisoformat(str(order["received_at"]))
        except (KeyError, TypeError, ValueError) as exc:
            # Only our code writes this table; an item without an order's fields is not an order to announce.
            logger.warning(
                "stream record is not a fulfillment order", extra={"sequence": sequence, "problem": str(exc)}
            )
            report.skipped += 1
            continue
        entry = {
            "Source": SOURCE,
            "DetailType": DETAIL_TYPE,
            "Detail": dumps(detail),
            "EventBusName": bus_name,
            "Time": moment,
            "Resources": [],
        }
        entries.append((sequence, detail["fulfillment_order_no"], entry))
    return entries


def publish_new_orders(
    records: Iterable[Mapping[str, Any]],
    *,
    bus_name: str,
    stage: str,
    client: Any | None = None,
) -> PublishReport:
    """Publish one event per INSERT record, ten per request; failures are reported per record, never raised."""
    if not bus_name:
        raise ConfigurationError(f"setting {EVENT_BUS_ENV} is missing")
    report = PublishReport()
    entries = _entries(records, bus_name, stage, report)
    send = (client or events_client()).put_events
    for start in range(0, len(entries), PUT_EVENTS_MAX_ENTRIES):
        chunk = entries[start : start + PUT_EVENTS_MAX_ENTRIES]
        try:
            answer = send(Entries=[entry for _, _, entry in chunk])
        except (ClientError, BotoCoreError) as exc:
            logger.warning("PutEvents failed; the records are retried", extra={"problem": str(exc)[:300]})
            report.failed.extend(sequence for sequence, _, _ in chunk)
            continue
        results = answer.get("Entries") or []
        for index, (sequence, order_no, _) in enumerate(chunk):
            result = results[index] if index < len(results) else {"ErrorCode": "NoResult"}
            if result.get("ErrorCode") or not result.get("EventId"):
                logger.warning(
                    "EventBridge refused an order event; it is retried",
                    extra={"order": order_no, "code": result.get("ErrorCode"), "error": result.get("ErrorMessage")},
                )
                report.failed.append(sequence)
            else:
                report.published += 1
    logger.info("order events published", extra={"published": report.published, "failed": len(report.failed)})
    return report
