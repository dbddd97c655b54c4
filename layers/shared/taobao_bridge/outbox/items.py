"""How outbox records and their settlements are stored as DynamoDB items, and read back."""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from ..dynamo import from_item, to_item, truncate_utf8
from ..jsonutil import dumps
from ..kinds import Kind
from .records import Dead, OutboxRecord, RecordState, Retry, Settlement, Synced, Unconfirmed

__all__ = [
    "ATTENTION_STATES",
    "accept_put",
    "attention_key",
    "is_still_due",
    "new_item",
    "pk",
    "record_from_item",
    "settled_item",
]

# Settled states an operator must look at. Records in them carry ``attention_key`` ("<kind>#<state>") and
# ``attention_at`` (settled, epoch ms), the keys of the sparse ``attention-index``; no other record has them, so
# the index holds exactly the records that wait for an operator (outbox.operations lists and counts them).
ATTENTION_STATES = (RecordState.DEAD, RecordState.UNCONFIRMED)

MAX_ANSWER_BYTES = 16 * 1024
MAX_ERROR_BYTES = 2 * 1024


def pk(kind: Kind, record_id: str) -> str:
    """A record's key: ``<kind>#<record_id>``."""
    return f"{kind.value}#{record_id}"


def attention_key(kind: Kind, state: RecordState) -> str:
    """The ``attention-index`` partition of ``kind``'s records in ``state`` (one of ``ATTENTION_STATES``)."""
    return f"{kind.value}#{state.value}"


def new_item(
    kind: Kind, record_id: str, payload: Mapping[str, Any], sha: str, now: datetime, accept_id: str
) -> dict[str, Any]:
    """A record as accepted: due now. ``accept_id`` names the accept call that wrote it (until it is settled)."""
    return to_item(
        {
            "pk": pk(kind, record_id),
            "kind": kind.value,
            "record_id": record_id,
            "payload": dumps(payload),
            "payload_sha256": sha,
            "state": RecordState.DUE.value,
            "attempts": 0,
            "accepted_at": iso(now),
            "due_kind": kind.value,
            "due_at": int(now.timestamp() * 1000),
            "accept_id": accept_id,
        }
    )


def accept_put(table_name: str, item: Mapping[str, Any], replaces: str | None) -> dict[str, Any]:
    """The conditional PutItem of ``new_item``'s ``item``: only if the key is absent, or, when it ``replaces`` a dead
    record (the sha of its content), only if that record is still dead with that content (a retry or another
    replacement meanwhile wins). A replacement carries ``replaced_sha256``: a read-back after a lost answer then
    knows this accept call replaced the record rather than stored it first."""
    request: dict[str, Any] = {
        "TableName": table_name,
        "Item": dict(item) if replaces is None else {**item, "replaced_sha256": {"S": replaces}},
        "ConditionExpression": "attribute_not_exists(pk)",
        "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
    }
    if replaces is not None:
        request["ConditionExpression"] = "#state = :dead AND payload_sha256 = :old"
        request["ExpressionAttributeNames"] = {"#state": "state"}
        request["ExpressionAttributeValues"] = to_item({":dead": RecordState.DEAD.value, ":old": replaces})
    return request


def settled_item(settlement: Settlement, now: datetime, retention_days: int) -> dict[str, Any]:
    """The whole item a settlement writes (settling rewrites the item: the run's lease makes it the only writer)."""
    record = settlement.record
    values: dict[str, Any] = {
        "pk": pk(record.kind, record.record_id),
        "kind": record.kind.value,
        "record_id": record.record_id,
        "payload": dumps(record.payload),
        "payload_sha256": record.payload_sha256,
        "attempts": record.attempts + 1,
        "accepted_at": record.accepted_at,
        "last_error": record.last_error,
        "unknown_outcomes": record.unknown_outcomes or None,
        "replays": record.replays or None,
    }
    expires_at = int((now + timedelta(days=retention_days)).timestamp())
    if isinstance(settlement, Synced):
        values.update(
            state=RecordState.SYNCED.value,
            platform_answer=truncate_utf8(dumps(settlement.answer), MAX_ANSWER_BYTES),
            platform_order_id=settlement.platform_order_id,
            settled_at=iso(now),
            expires_at=expires_at,
        )
    elif isinstance(settlement, Retry):
        values.update(
            state=RecordState.DUE.value,
            last_error=truncate_utf8(settlement.error, MAX_ERROR_BYTES),
            due_kind=record.kind.value,
            due_at=settlement.next_due_at,
        )
        if settlement.unknown_outcome:
            values["unknown_outcomes"] = record.unknown_outcomes + 1
    elif isinstance(settlement, Unconfirmed):
        reason = truncate_utf8(settlement.reason, MAX_ERROR_BYTES)
        answer = settlement.answer
        values.update(
            state=RecordState.UNCONFIRMED.value,
            last_error=reason,
            platform_answer=None
            if answer is None
            else truncate_utf8(answer if isinstance(answer, str) else dumps(answer), MAX_ANSWER_BYTES),
            settled_at=iso(now),
            expires_at=expires_at,
            attention_key=attention_key(record.kind, RecordState.UNCONFIRMED),
            attention_at=int(now.timestamp() * 1000),
        )
        if settlement.unknown_outcome:
            values["unknown_outcomes"] = record.unknown_outcomes + 1
    elif isinstance(settlement, Dead):
        reason = truncate_utf8(settlement.reason, MAX_ERROR_BYTES)
        values.update(
            state=RecordState.DEAD.value,
            dead_reason=reason,
            last_error=reason,
            settled_at=iso(now),
            expires_at=expires_at,
            attention_key=attention_key(record.kind, RecordState.DEAD),
            attention_at=int(now.timestamp() * 1000),
        )
        if not settlement.sent:
            values["attempts"] = record.attempts
    else:  # pragma: no cover - the type checker sees all three
        raise TypeError(f"not a settlement: {settlement!r}")
    return to_item(values)


def is_still_due(item: Mapping[str, Any], now_ms: int) -> bool:
    """Whether a freshly read item (DynamoDB form) is a record that is due at ``now_ms``.

    What the due index says is not enough: it lags behind writes, so a record settled (or retried with a
    later ``due_at``) a moment ago may still be listed there.
    """
    state = item.get("state", {}).get("S")
    due_at = item.get("due_at", {}).get("N")
    return state == RecordState.DUE.value and due_at is not None and int(due_at) <= now_ms


def record_from_item(item: Mapping[str, Any]) -> OutboxRecord:
    """A stored record (DynamoDB form) as an ``OutboxRecord``."""
    values = from_item(dict(item))
    order_id = values.get("platform_order_id")
    return OutboxRecord(
        kind=Kind(values["kind"]),
        record_id=str(values["record_id"]),
        payload=json.loads(values["payload"]),
        payload_sha256=str(values["payload_sha256"]),
        state=RecordState(values["state"]),
        attempts=int(values.get("attempts", 0)),
        due_at=int(values["due_at"]) if values.get("due_at") is not None else None,
        accepted_at=str(values.get("accepted_at", "")),
        settled_at=values.get("settled_at"),
        last_error=values.get("last_error"),
        platform_answer=values.get("platform_answer"),
        platform_order_id=int(order_id) if order_id is not None else None,
        dead_reason=values.get("dead_reason"),
        unknown_outcomes=int(values.get("unknown_outcomes") or 0),
        replays=int(values.get("replays") or 0),
    )


def iso(moment: datetime) -> str:
    """A moment as ISO 8601 UTC with milliseconds, as stored."""
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
