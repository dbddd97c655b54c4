"""The outbox: records accepted from merchants wait here until a sync run settles them (DESIGN.md).

One DynamoDB table (``OutboxTable`` in template.yaml), hash key ``pk``:

- a record is ``pk = "<kind>#<record_id>"`` with its wire payload (JSON text), ``payload_sha256``, ``state``
  (``due`` | ``synced`` | ``dead``), ``attempts`` and ``accepted_at``. While due it also carries ``due_kind``
  and ``due_at`` (epoch ms), the keys of the sparse ``due-index``: settling removes them, so the index only
  ever holds work. Settled records keep their outcome (``platform_answer``, ``platform_order_id``,
  ``last_error``, ``dead_reason``, ``settled_at``) until ``expires_at`` (TTL, ``retention_days`` later);
  due records never expire.
- control items without due keys: leases ``lease#<name>``, bans ``ban#<scope>``, pauses ``pause#<name>``.

Cost, in DynamoDB requests (the project's headline figure): accepting N records is ceil(N / 100)
``TransactWriteItems`` (one more per chunk that met existing keys); reading due work is one ``Query`` page
per 1,000 index entries plus one ``BatchGetItem`` per 100 records; settling is one ``BatchWriteItem`` per
25 records. Nothing here ever scans.

DynamoDB limits are enforced here, because moto (the local server) does not: 100 actions and 4 MB per
transaction, 25 puts per batch write, 100 keys per batch get, 400 KB per item.
"""

from __future__ import annotations

import hashlib
import json
import random
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from botocore.exceptions import BotoCoreError, ClientError

from .clock import Clock, system_clock
from .dynamo import dynamodb_client, from_item, to_item
from .errors import BridgeError, StorageError
from .jsonutil import dumps
from .kinds import Kind

__all__ = [
    "DUE_INDEX",
    "MAX_ACCEPT_ITEM_BYTES",
    "MAX_BATCH_GET_KEYS",
    "MAX_BATCH_WRITE_ITEMS",
    "MAX_ITEM_BYTES",
    "MAX_TRANSACT_BYTES",
    "MAX_TRANSACT_ITEMS",
    "STATE_DEAD",
    "STATE_DUE",
    "STATE_SYNCED",
    "AcceptResult",
    "Dead",
    "OutboxRecord",
    "OutboxStore",
    "RecordTooLarge",
    "Retry",
    "Settlement",
    "Synced",
    "is_still_due",
    "item_size",
    "payload_sha256",
]

STATE_DUE = "due"
STATE_SYNCED = "synced"
STATE_DEAD = "dead"
DUE_INDEX = "due-index"

# DynamoDB's limits (moto accepts more of each).
MAX_ITEM_BYTES = 400 * 1024
MAX_TRANSACT_ITEMS = 100
MAX_TRANSACT_BYTES = 4_000_000  # aggregate item size per transaction: 4 MB, less a margin for the request
MAX_BATCH_WRITE_ITEMS = 25
MAX_BATCH_GET_KEYS = 100
MAX_QUERY_LIMIT = 1000
MAX_KEY_BYTES = 2048  # a partition key value

# Settling adds attributes (the platform's answer, errors, timestamps): an accepted item leaves room for
# them, so that the settle write of a record that was accepted can never be refused for its size.
SETTLEMENT_RESERVE_BYTES = 24 * 1024
MAX_ACCEPT_ITEM_BYTES = MAX_ITEM_BYTES - SETTLEMENT_RESERVE_BYTES
_MAX_ANSWER_BYTES = 16 * 1024
_MAX_ERROR_BYTES = 2 * 1024

# Retries of our own (botocore's standard mode already retries throttled requests a little).
_CONFLICT_RETRIES = 4  # TransactionConflict: another writer touched one of the keys at the same moment
_UNPROCESSED_RETRIES = 8  # rounds of UnprocessedItems / UnprocessedKeys before giving up
_RETRYABLE_CODES = frozenset(
    {
        "TransactionConflictException",
        "TransactionInProgressException",
        "ThrottlingException",
        "ProvisionedThroughputExceededException",
        "RequestLimitExceeded",
        "InternalServerError",
    }
)
_RETRYABLE_REASONS = frozenset({"TransactionConflict", "ThrottlingError", "ProvisionedThroughputExceeded"})
_DAY_MS = 86_400_000


class RecordTooLarge(BridgeError):
    """Raised by ``accept`` before anything is written when a record's item would exceed DynamoDB's 400 KB
    (less the room kept for its sync outcome). Split or shorten the record; retrying will not help."""

    def __init__(self, record_id: str, size: int, limit: int = MAX_ACCEPT_ITEM_BYTES) -> None:
        self.record_id = record_id
        self.size = size
        self.limit = limit
        super().__init__(
            f"record {record_id}: stored item would be {size} bytes; the limit is {limit} bytes "
            f"(DynamoDB's 400 KB less {MAX_ITEM_BYTES - limit} bytes kept for the sync outcome)"
        )


@dataclass(frozen=True)
class OutboxRecord:
    """One record as stored. ``payload`` is the wire form (JSON types) that the sync run sends."""

    kind: Kind
    record_id: str
    payload: dict[str, Any]
    payload_sha256: str
    state: str  # "due" | "synced" | "dead"
    attempts: int
    due_at: int | None  # epoch ms, while due
    accepted_at: str
    settled_at: str | None
    last_error: str | None
    platform_answer: str | None  # JSON text, once synced
    platform_order_id: int | None  # external orders, once synced
    dead_reason: str | None

    def to_public(self) -> dict[str, Any]:
        """What ``GET /v1/{kind}/{id}`` shows. Never the payload: it holds personal data."""
        public: dict[str, Any] = {
            "kind": self.kind.value,
            "id": self.record_id,
            "state": self.state,
            "attempts": self.attempts,
            "last_error": self.last_error,
            "accepted_at": self.accepted_at,
            "settled_at": self.settled_at,
            "dead_reason": self.dead_reason,
        }
        if self.kind is Kind.EXTERNAL_ORDER:
            public["platform_order_id"] = self.platform_order_id
        if self.state == STATE_DUE and self.due_at is not None:
            public["next_attempt_at"] = _iso_from_ms(self.due_at)
        return public


@dataclass(frozen=True)
class AcceptResult:
    """The outcome for one submitted record, in the order submitted.

    ``status``: ``accepted`` (stored now), ``duplicate`` (the same key with the same content is already
    stored: nothing changed) or ``conflict`` (the same key is stored with different content: refused).
    ``state`` is the record's state now for accepted and duplicate records, None for conflicts.
    """

    record_id: str
    status: str
    state: str | None


@dataclass(frozen=True)
class Synced:
    """The platform took the record; ``answer`` is kept as its proof."""

    record: OutboxRecord
    answer: dict[str, Any]
    platform_order_id: int | None = None


@dataclass(frozen=True)
class Retry:
    """The attempt failed in a way that may pass: try again at ``next_due_at`` (epoch ms)."""

    record: OutboxRecord
    error: str
    next_due_at: int


@dataclass(frozen=True)
class Dead:
    """The record cannot be synced (caller error, or out of attempts): it stays visible with the reason.

    ``sent`` (an addition to the brief's fields, default True) says whether an attempt was made: a record
    given up without a call (say, it no longer validates) does not count an attempt.
    """

    record: OutboxRecord
    reason: str
    sent: bool = True


Settlement = Synced | Retry | Dead


@dataclass(frozen=True)
class _NewItem:
    index: int
    record_id: str
    sha: str
    item: dict[str, Any]
    size: int


class OutboxStore:
    """The outbox table. Thread-compatible; one per container is enough (the client is shared)."""

    def __init__(
        self,
        table_name: str,
        *,
        client: Any | None = None,
        clock: Clock = system_clock,
        retention_days: int = 30,
    ) -> None:
        if retention_days < 1:
            raise ValueError("retention_days must be >= 1")
        self.table_name = table_name
        self.clock = clock
        self.retention_days = retention_days
        self._client = client

    @classmethod
    def from_settings(cls, settings: Any) -> OutboxStore:
        """The store named by ``OUTBOX_TABLE``, keeping outcomes ``OUTBOX_RETENTION_DAYS``."""
        return cls(settings.require("outbox_table"), retention_days=settings.outbox_retention_days)

    @property
    def client(self) -> Any:
        if self._client is None:
            self._client = dynamodb_client()
        return self._client

    # ------------------------------------------------------------------------------------------------ accept
    def accept(self, kind: Kind, records: Sequence[tuple[str, dict[str, Any]]]) -> list[AcceptResult]:
        """Store new records due now; one result per record, in order. Idempotent: submitting the same
        records again changes nothing and answers ``duplicate``.

        Raises ``RecordTooLarge`` (before any write) and ``StorageError`` (safe to retry: records already
        stored by the failed call answer ``duplicate`` the next time).
        """
        now = self.clock()
        now_ms = _epoch_ms(now)
        accepted_at = _iso(now)
        first_seen: dict[str, int] = {}
        repeats: list[tuple[int, str, str]] = []  # (index, record_id, sha) of keys seen earlier in this call
        new_items: list[_NewItem] = []
        for index, (record_id, payload) in enumerate(records):
            pk = _pk(kind, record_id)
            if not record_id or len(pk.encode("utf-8")) > MAX_KEY_BYTES:
                raise ValueError(f"record id {record_id[:80]!r}: empty or longer than a DynamoDB key allows")
            sha = payload_sha256(payload)
            if record_id in first_seen:
                repeats.append((index, record_id, sha))
                continue
            first_seen[record_id] = index
            item = to_item(
                {
                    "pk": pk,
                    "kind": kind.value,
                    "record_id": record_id,
                    "payload": dumps(payload),
                    "payload_sha256": sha,
                    "state": STATE_DUE,
                    "attempts": 0,
                    "accepted_at": accepted_at,
                    "due_kind": kind.value,
                    "due_at": now_ms,
                }
            )
            size = item_size(item)
            if size > MAX_ACCEPT_ITEM_BYTES:
                raise RecordTooLarge(record_id, size)
            new_items.append(_NewItem(index, record_id, sha, item, size))

        # record_id -> (status of its first occurrence, sha of the stored content, state now)
        outcome: dict[str, tuple[str, str, str | None]] = {}
        for chunk in _chunks(new_items, MAX_TRANSACT_ITEMS, MAX_TRANSACT_BYTES, size=lambda new: new.size):
            self._put_new(chunk, outcome)

        results: list[AcceptResult | None] = [None] * len(records)
        for new in new_items:
            status, _, state = outcome[new.record_id]
            results[new.index] = AcceptResult(new.record_id, status, None if status == "conflict" else state)
        for index, record_id, sha in repeats:
            # Compared with what is stored now, which is the first occurrence unless that one conflicted.
            _, stored_sha, state = outcome[record_id]
            same = sha == stored_sha
            results[index] = AcceptResult(record_id, "duplicate" if same else "conflict", state if same else None)
        return [result for result in results if result is not None]

    def _put_new(self, chunk: list[_NewItem], outcome: dict[str, tuple[str, str, str | None]]) -> None:
        """Write ``chunk`` in one transaction; keys that exist are classified and dropped, and the rest is
        written again until it commits or nothing is left."""
        remaining = chunk
        failures = 0
        while remaining:
            actions = [
                {
                    "Put": {
                        "TableName": self.table_name,
                        "Item": new.item,
                        "ConditionExpression": "attribute_not_exists(pk)",
                        "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
                    }
                }
                for new in remaining
            ]
            try:
                self.client.transact_write_items(TransactItems=actions)
            except ClientError as exc:
                code = _error_code(exc)
                reasons = exc.response.get("CancellationReasons") or []
                if code == "TransactionCanceledException" and reasons:
                    existing = self._classify_existing(remaining, reasons)
                    if existing:
                        outcome.update(existing)
                        remaining = [new for new in remaining if new.record_id not in existing]
                        continue  # progress: no backoff
                    retryable = any(reason.get("Code") in _RETRYABLE_REASONS for reason in reasons)
                else:
                    retryable = code in _RETRYABLE_CODES
                failures += 1
                if not retryable or failures > _CONFLICT_RETRIES:
                    raise StorageError(f"accepting records (TransactWriteItems) failed: {_describe(exc)}") from exc
                time.sleep(0.05 * failures + random.uniform(0, 0.05))
            except BotoCoreError as exc:
                raise StorageError(f"accepting records (TransactWriteItems) failed: {exc}") from exc
            else:
                for new in remaining:
                    outcome[new.record_id] = ("accepted", new.sha, STATE_DUE)
                remaining = []

    def _classify_existing(
        self, remaining: list[_NewItem], reasons: list[dict[str, Any]]
    ) -> dict[str, tuple[str, str, str | None]]:
        existing: dict[str, tuple[str, str, str | None]] = {}
        for new, reason in zip(remaining, reasons, strict=False):
            if reason.get("Code") != "ConditionalCheckFailed":
                continue
            old = reason.get("Item")
            if old is None:  # DynamoDB names the item; read it if a server did not
                old = self._get_raw(_pk_of(new.item), "accepting records (GetItem)")
                if old is None:
                    continue  # gone again (expired): written on the next round
            stored = from_item(old)
            stored_sha = str(stored.get("payload_sha256", ""))
            status = "duplicate" if stored_sha == new.sha else "conflict"
            existing[new.record_id] = (status, stored_sha, stored.get("state"))
        return existing

    # --------------------------------------------------------------------------------------------- reading
    def get(self, kind: Kind, record_id: str) -> OutboxRecord | None:
        """The record as stored now (strongly consistent), or None."""
        item = self._get_raw(_pk(kind, record_id), "reading a record (GetItem)")
        return _record_from_item(item) if item is not None and "record_id" in item else None

    def due(self, kind: Kind, *, now_ms: int, limit: int) -> list[OutboxRecord]:
        """Up to ``limit`` records of ``kind`` due at ``now_ms``, oldest due first.

        The index is eventually consistent: every candidate is re-read strongly consistently and kept only
        if it is still due and its ``due_at`` has come, so a record settled a moment ago is never returned.
        A page can therefore hold fewer than ``limit`` records while more are due; the next run gets them.
        """
        if limit <= 0:
            return []
        keys: list[str] = []
        start_key: dict[str, Any] | None = None
        with _storage("reading due records (Query)"):
            while len(keys) < limit:
                request: dict[str, Any] = {
                    "TableName": self.table_name,
                    "IndexName": DUE_INDEX,
                    "KeyConditionExpression": "due_kind = :kind AND due_at <= :now",
                    "ExpressionAttributeValues": to_item({":kind": kind.value, ":now": now_ms}),
                    # Only the key travels back: the items are read again below anyway.
                    "ProjectionExpression": "pk",
                    "ScanIndexForward": True,
                    "Limit": min(limit - len(keys), MAX_QUERY_LIMIT),
                }
                if start_key is not None:
                    request["ExclusiveStartKey"] = start_key
                page = self.client.query(**request)
                keys.extend(item["pk"]["S"] for item in page.get("Items", []))
                start_key = page.get("LastEvaluatedKey")
                if start_key is None:
                    break
        order = {pk: position for position, pk in enumerate(dict.fromkeys(keys[:limit]))}
        fresh = self._batch_get(list(order))
        records = [_record_from_item(item) for item in fresh.values() if is_still_due(item, now_ms)]
        records.sort(key=lambda record: (record.due_at or 0, order[_pk(record.kind, record.record_id)]))
        return records

    def _batch_get(self, pks: list[str]) -> dict[str, dict[str, Any]]:
        found: dict[str, dict[str, Any]] = {}
        for chunk in _chunks(pks, MAX_BATCH_GET_KEYS):
            request: dict[str, Any] = {"Keys": [to_item({"pk": pk}) for pk in chunk], "ConsistentRead": True}
            rounds = 0
            while True:
                with _storage("re-reading due records (BatchGetItem)"):
                    answer = self.client.batch_get_item(RequestItems={self.table_name: request})
                for item in answer.get("Responses", {}).get(self.table_name, []):
                    found[item["pk"]["S"]] = item
                unprocessed = (answer.get("UnprocessedKeys") or {}).get(self.table_name)
                if not unprocessed or not unprocessed.get("Keys"):
                    break
                rounds += 1
                if rounds > _UNPROCESSED_RETRIES:
                    raise StorageError(
                        f"re-reading due records (BatchGetItem) failed: {len(unprocessed['Keys'])} keys "
                        f"stayed unprocessed after {rounds} rounds"
                    )
                _backoff(rounds)
                request = {**unprocessed, "ConsistentRead": True}
        return found

    # ---------------------------------------------------------------------------------------------- settle
    def settle(self, settlements: Sequence[Settlement]) -> None:
        """Write the outcome of sync attempts, 25 records per request.

        Each item is written whole, built from the record as it was read: the sync run holds the kind's
        lease, so it is the only writer of these items. Writing the same settlements again writes the same
        items, so after a ``StorageError`` (some chunks may be written) the call can simply be repeated.
        """
        now = self.clock()
        items = [self._settled_item(settlement, now) for settlement in settlements]
        keys = [item["pk"]["S"] for item in items]
        if len(set(keys)) != len(keys):
            raise ValueError("settle: the same record appears twice; settle each record once per call")
        for chunk in _chunks(items, MAX_BATCH_WRITE_ITEMS):
            self._batch_put(chunk)

    def _settled_item(self, settlement: Settlement, now: datetime) -> dict[str, Any]:
        record = settlement.record
        values: dict[str, Any] = {
            "pk": _pk(record.kind, record.record_id),
            "kind": record.kind.value,
            "record_id": record.record_id,
            "payload": dumps(record.payload),
            "payload_sha256": record.payload_sha256,
            "attempts": record.attempts + 1,
            "accepted_at": record.accepted_at,
            "last_error": record.last_error,
        }
        expires_at = int((now + timedelta(days=self.retention_days)).timestamp())
        if isinstance(settlement, Synced):
            values.update(
                state=STATE_SYNCED,
                platform_answer=_truncate(dumps(settlement.answer), _MAX_ANSWER_BYTES),
                platform_order_id=settlement.platform_order_id,
                settled_at=_iso(now),
                expires_at=expires_at,
            )
        elif isinstance(settlement, Retry):
            values.update(
                state=STATE_DUE,
                last_error=_truncate(settlement.error, _MAX_ERROR_BYTES),
                due_kind=record.kind.value,
                due_at=settlement.next_due_at,
            )
        elif isinstance(settlement, Dead):
            reason = _truncate(settlement.reason, _MAX_ERROR_BYTES)
            values.update(
                state=STATE_DEAD,
                dead_reason=reason,
                last_error=reason,
                settled_at=_iso(now),
                expires_at=expires_at,
            )
            if not settlement.sent:
                values["attempts"] = record.attempts
        else:  # pragma: no cover - the type checker sees all three
            raise TypeError(f"not a settlement: {settlement!r}")
        return to_item(values)

    def _batch_put(self, items: list[dict[str, Any]]) -> None:
        requests = [{"PutRequest": {"Item": item}} for item in items]
        rounds = 0
        while requests:
            with _storage("settling records (BatchWriteItem)"):
                answer = self.client.batch_write_item(RequestItems={self.table_name: requests})
            requests = (answer.get("UnprocessedItems") or {}).get(self.table_name) or []
            if not requests:
                return
            rounds += 1
            if rounds > _UNPROCESSED_RETRIES:
                raise StorageError(
                    f"settling records (BatchWriteItem) failed: {len(requests)} items stayed unprocessed "
                    f"after {rounds} rounds"
                )
            _backoff(rounds)

    # ------------------------------------------------------------------------------------ leases and flags
    def acquire_lease(self, name: str, owner: str, *, until_ms: int, now_ms: int) -> bool:
        """Take (or extend, or take over an expired) lease ``name`` for ``owner`` until ``until_ms``.
        False when another owner holds it."""
        try:
            self.client.put_item(
                TableName=self.table_name,
                Item=to_item(
                    {
                        "pk": f"lease#{name}",
                        "owner": owner,
                        "until": until_ms,
                        "expires_at": until_ms // 1000 + 86_400,  # the item tidies itself away
                    }
                ),
                ConditionExpression="attribute_not_exists(pk) OR #until < :now OR #owner = :owner",
                ExpressionAttributeNames={"#until": "until", "#owner": "owner"},
                ExpressionAttributeValues=to_item({":now": now_ms, ":owner": owner}),
            )
        except ClientError as exc:
            if _error_code(exc) == "ConditionalCheckFailedException":
                return False
            raise StorageError(f"acquiring lease {name} (PutItem) failed: {_describe(exc)}") from exc
        except BotoCoreError as exc:
            raise StorageError(f"acquiring lease {name} (PutItem) failed: {exc}") from exc
        return True

    def release_lease(self, name: str, owner: str) -> None:
        """Give lease ``name`` up if ``owner`` still holds it; someone else's lease is left alone."""
        try:
            self.client.delete_item(
                TableName=self.table_name,
                Key=to_item({"pk": f"lease#{name}"}),
                ConditionExpression="#owner = :owner",
                ExpressionAttributeNames={"#owner": "owner"},
                ExpressionAttributeValues=to_item({":owner": owner}),
            )
        except ClientError as exc:
            if _error_code(exc) == "ConditionalCheckFailedException":
                return
            raise StorageError(f"releasing lease {name} (DeleteItem) failed: {_describe(exc)}") from exc
        except BotoCoreError as exc:
            raise StorageError(f"releasing lease {name} (DeleteItem) failed: {exc}") from exc

    def ban_until(self, scope: str) -> int | None:
        """When the platform's ban on ``scope`` ends (epoch ms), or None if there is none now."""
        item = self._get_raw(f"ban#{scope}", f"reading ban {scope} (GetItem)")
        if item is None:
            return None
        until = from_item(item).get("until")
        return until if isinstance(until, int) and until > _epoch_ms(self.clock()) else None

    def set_ban(self, scope: str, *, until_ms: int, reason: str) -> None:
        """Record a ban on ``scope`` until ``until_ms``. Never shortens a longer ban stored meanwhile."""
        try:
            self.client.update_item(
                TableName=self.table_name,
                Key=to_item({"pk": f"ban#{scope}"}),
                UpdateExpression="SET #until = :until, reason = :reason, expires_at = :expires",
                ConditionExpression="attribute_not_exists(pk) OR #until < :until",
                ExpressionAttributeNames={"#until": "until"},
                ExpressionAttributeValues=to_item(
                    {
                        ":until": until_ms,
                        ":reason": _truncate(reason, _MAX_ERROR_BYTES),
                        ":expires": until_ms // 1000 + 86_400,
                    }
                ),
            )
        except ClientError as exc:
            if _error_code(exc) == "ConditionalCheckFailedException":
                return  # a longer ban is already stored
            raise StorageError(f"setting ban {scope} (UpdateItem) failed: {_describe(exc)}") from exc
        except BotoCoreError as exc:
            raise StorageError(f"setting ban {scope} (UpdateItem) failed: {exc}") from exc

    def pause(self, name: str) -> dict[str, Any] | None:
        """``{"reason", "fingerprint", "since"}`` of pause ``name`` (``since`` in epoch ms, like every time in
        the control items), or None when not paused."""
        item = self._get_raw(f"pause#{name}", f"reading pause {name} (GetItem)")
        if item is None:
            return None
        values = from_item(item)
        return {key: values.get(key) for key in ("reason", "fingerprint", "since")}

    def set_pause(self, name: str, *, reason: str, fingerprint: str) -> None:
        """Pause ``name`` (``since`` is now, epoch ms). Stays until ``clear_pause``: pauses do not expire."""
        with _storage(f"setting pause {name} (PutItem)"):
            self.client.put_item(
                TableName=self.table_name,
                Item=to_item(
                    {
                        "pk": f"pause#{name}",
                        "reason": _truncate(reason, _MAX_ERROR_BYTES),
                        "fingerprint": fingerprint,
                        "since": _epoch_ms(self.clock()),
                    }
                ),
            )

    def clear_pause(self, name: str) -> None:
        with _storage(f"clearing pause {name} (DeleteItem)"):
            self.client.delete_item(TableName=self.table_name, Key=to_item({"pk": f"pause#{name}"}))

    # ------------------------------------------------------------------------------------------- plumbing
    def _get_raw(self, pk: str, operation: str) -> dict[str, Any] | None:
        with _storage(operation):
            found = self.client.get_item(TableName=self.table_name, Key=to_item({"pk": pk}), ConsistentRead=True)
        item = found.get("Item")
        return dict(item) if item else None


# ---------------------------------------------------------------------------------------------- functions
def payload_sha256(payload: Mapping[str, Any]) -> str:
    """SHA-256 of the payload in a canonical form (sorted keys): key order and whitespace do not matter."""
    canonical = json.dumps(payload, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def is_still_due(item: Mapping[str, Any], now_ms: int) -> bool:
    """Whether a freshly read item (DynamoDB form) is a record that is due at ``now_ms``.

    What the due index says is not enough: it lags behind writes, so a record settled (or retried with a
    later ``due_at``) a moment ago may still be listed there.
    """
    state = item.get("state", {}).get("S")
    due_at = item.get("due_at", {}).get("N")
    return state == STATE_DUE and due_at is not None and int(due_at) <= now_ms


def item_size(item: Mapping[str, Any]) -> int:
    """The size DynamoDB counts for an item (DynamoDB JSON): attribute names plus values, UTF-8.

    Numbers count 1 byte per two significant digits plus 1; lists and maps 3 bytes plus 1 per element.
    """
    return sum(len(name.encode("utf-8")) + _value_size(value) for name, value in item.items())


def _value_size(value: Mapping[str, Any]) -> int:
    ((kind, content),) = value.items()
    if kind == "S":
        return len(content.encode("utf-8"))
    if kind == "N":
        return _number_size(content)
    if kind == "B":
        return len(content)
    if kind in ("BOOL", "NULL"):
        return 1
    if kind == "SS":
        return sum(len(text.encode("utf-8")) for text in content)
    if kind == "NS":
        return sum(_number_size(text) for text in content)
    if kind == "BS":
        return sum(len(blob) for blob in content)
    if kind == "L":
        return 3 + sum(1 + _value_size(element) for element in content)
    if kind == "M":
        return 3 + sum(1 + len(key.encode("utf-8")) + _value_size(element) for key, element in content.items())
    raise ValueError(f"unknown DynamoDB type {kind!r}")


def _number_size(text: str) -> int:
    mantissa = text.lstrip("+-").lower().split("e", 1)[0].replace(".", "")
    significant = mantissa.strip("0") or "0"
    return (len(significant) + 1) // 2 + 1


def _record_from_item(item: Mapping[str, Any]) -> OutboxRecord:
    values = from_item(dict(item))
    order_id = values.get("platform_order_id")
    return OutboxRecord(
        kind=Kind(values["kind"]),
        record_id=str(values["record_id"]),
        payload=json.loads(values["payload"]),
        payload_sha256=str(values["payload_sha256"]),
        state=str(values["state"]),
        attempts=int(values.get("attempts", 0)),
        due_at=int(values["due_at"]) if values.get("due_at") is not None else None,
        accepted_at=str(values.get("accepted_at", "")),
        settled_at=values.get("settled_at"),
        last_error=values.get("last_error"),
        platform_answer=values.get("platform_answer"),
        platform_order_id=int(order_id) if order_id is not None else None,
        dead_reason=values.get("dead_reason"),
    )


def _pk(kind: Kind, record_id: str) -> str:
    return f"{kind.value}#{record_id}"


def _pk_of(item: Mapping[str, Any]) -> str:
    return str(item["pk"]["S"])


_T = TypeVar("_T")


def _chunks(
    values: Sequence[_T], max_count: int, max_bytes: int | None = None, *, size: Callable[[_T], int] | None = None
) -> Iterator[list[_T]]:
    """Consecutive runs of at most ``max_count`` values and (with ``size``) at most ``max_bytes`` in all."""
    chunk: list[_T] = []
    total = 0
    for value in values:
        weight = size(value) if size is not None else 0
        if chunk and (len(chunk) >= max_count or (max_bytes is not None and total + weight > max_bytes)):
            yield chunk
            chunk, total = [], 0
        chunk.append(value)
        total += weight
    if chunk:
        yield chunk


def _truncate(text: str, max_bytes: int) -> str:
    encoded = text.encode("utf-8")
    if len(encoded) <= max_bytes:
        return text
    marker = "…[truncated]"
    keep = max_bytes - len(marker.encode("utf-8"))
    return encoded[:keep].decode("utf-8", errors="ignore") + marker


def _backoff(attempt: int) -> None:
    time.sleep(min(2.0, 0.05 * 2 ** (attempt - 1)) * random.uniform(0.5, 1.0))


def _epoch_ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _iso_from_ms(epoch_ms: int) -> str:
    return _iso(datetime.fromtimestamp(epoch_ms / 1000, UTC))


def _error_code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def _describe(exc: ClientError) -> str:
    error = exc.response.get("Error", {})
    return f"{error.get('Code', 'unknown')}: {error.get('Message', '')}".strip()


@contextmanager
def _storage(operation: str) -> Iterator[None]:
    """Every boto error inside becomes ``StorageError`` naming ``operation``."""
    try:
        yield
    except ClientError as exc:
        raise StorageError(f"{operation} failed: {_describe(exc)}") from exc
    except BotoCoreError as exc:
        raise StorageError(f"{operation} failed: {exc}") from exc
