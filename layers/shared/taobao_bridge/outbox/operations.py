"""What operators do with outbox records: list them by state with a cursor, make dead or unconfirmed records due
again (one, or a state's records in bulk, with a dry run), and count them per state (docs/ARCHITECTURE.md,
"Outbound flow"). Nothing here scans.

- ``due`` records are read from the sparse ``due-index`` (``due_kind``, ``due_at``);
- ``dead`` and ``unconfirmed`` records from the sparse ``attention-index``: only records in those states carry
  its keys, ``attention_key`` = ``"<kind>#<state>"`` and ``attention_at`` (settled, epoch ms), written by
  ``items.settled_item`` and removed by a retry or a replacement. Keys only: an entry costs one write unit when a
  record dies (or ends unconfirmed) and one when it leaves the state, whatever the record's size;
- an index lags behind writes, so every key read there is re-read (``BatchGetItem``, strongly consistent) and
  dropped if the record is no longer in that state.

Cursors are opaque to callers: URL-safe base64 of the JSON of the last listed entry's index key, bound to the kind
and state they were made for.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from ..dynamo import (
    MAX_BATCH_GET_KEYS,
    MAX_QUERY_LIMIT,
    chunks,
    describe_error,
    error_code,
    from_item,
    storage_errors,
    to_item,
)
from ..errors import BridgeError, StorageError
from ..jsonutil import dumps
from ..kinds import Kind
from .items import ATTENTION_STATES, attention_key, pk, record_from_item
from .records import OutboxRecord, RecordState
from .store import DUE_INDEX
from .table import OutboxTable

__all__ = [
    "ATTENTION_INDEX",
    "LISTABLE_STATES",
    "MAX_PAGE",
    "BulkRetry",
    "InvalidCursor",
    "NotRetryable",
    "RecordOperations",
    "RecordPage",
    "StateCounts",
    "decode_cursor",
    "encode_cursor",
]

ATTENTION_INDEX = "attention-index"
LISTABLE_STATES = (RecordState.DUE, *ATTENTION_STATES)
MAX_PAGE = 1000
_MAX_CURSOR_CHARS = 4096  # a key is at most 2 KB, its base64 JSON well under this
_RETRY_WORKERS = 8  # bulk retries are one conditional UpdateItem each: a few in flight keep 1000 within seconds


class InvalidCursor(BridgeError):
    """Raised when an ``after`` cursor is not one this listing made (damaged, or for another kind or state)."""


class NotRetryable(BridgeError):
    """Raised when a record to retry is not dead or unconfirmed; ``state`` says what it is."""

    def __init__(self, record_id: str, state: str) -> None:
        self.record_id = record_id
        self.state = state
        super().__init__(f"record {record_id} is {state}: only dead or unconfirmed records can be retried")


@dataclass(frozen=True)
class RecordPage:
    """One page of a listing: records oldest first; ``next`` continues after them (None when ``has_more`` is
    false). A page may hold fewer records than asked while more follow: those that left the state are dropped."""

    records: list[OutboxRecord]
    next: str | None
    has_more: bool


@dataclass(frozen=True)
class BulkRetry:
    """What a bulk retry found (``matched``, their ``ids``, oldest first) and made due again (``retried``: 0 on a
    dry run; fewer than matched when some changed state meanwhile). ``has_more``: more records wait in that state."""

    matched: int
    retried: int
    ids: list[str]
    has_more: bool


@dataclass(frozen=True)
class StateCounts:
    """A kind's records per state from the indexes (Query ``Select=COUNT``): eventually consistent."""

    due: int
    due_now: int
    dead: int
    unconfirmed: int
    oldest_due_at: int | None  # epoch ms of the earliest due_at, None when nothing is due


# ------------------------------------------------------------------------------------------------- cursors
def _key_names(state: RecordState) -> tuple[str, str]:
    return ("due_kind", "due_at") if state is RecordState.DUE else ("attention_key", "attention_at")


def _partition(kind: Kind, state: RecordState) -> str:
    return kind.value if state is RecordState.DUE else attention_key(kind, state)


def encode_cursor(state: RecordState, key: dict[str, Any]) -> str:
    """The cursor after the index entry ``key`` (DynamoDB form: the index keys and ``pk``)."""
    document = dumps({"state": state.value, "key": from_item(key)})
    return base64.urlsafe_b64encode(document.encode("utf-8")).decode("ascii").rstrip("=")


def decode_cursor(cursor: str, kind: Kind, state: RecordState) -> dict[str, Any]:
    """The ``ExclusiveStartKey`` a cursor of ``encode_cursor`` stands for; ``InvalidCursor`` unless it was made for
    this kind and state and holds exactly an index key of it."""
    if not cursor or len(cursor) > _MAX_CURSOR_CHARS:
        raise InvalidCursor(f"empty or longer than {_MAX_CURSOR_CHARS} characters")
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        document = json.loads(raw.decode("utf-8"))
    except (binascii.Error, ValueError):
        raise InvalidCursor("not a cursor this API made (pass back the 'next' of the previous page)") from None
    if not isinstance(document, dict) or set(document) != {"state", "key"}:
        raise InvalidCursor("not a cursor this API made (pass back the 'next' of the previous page)")
    if document["state"] != state.value:
        raise InvalidCursor(f"made for state {document['state']!r}, not {state.value!r}")
    partition_name, sort_name = _key_names(state)
    key = document["key"]
    if not isinstance(key, dict) or set(key) != {"pk", partition_name, sort_name}:
        raise InvalidCursor("its key is damaged")
    record_pk, partition, sort = key["pk"], key[partition_name], key[sort_name]
    if partition != _partition(kind, state) or not isinstance(record_pk, str):
        raise InvalidCursor(f"made for another kind than {kind.value!r}")
    if not record_pk.startswith(f"{kind.value}#") or isinstance(sort, bool) or not isinstance(sort, int):
        raise InvalidCursor("its key is damaged")
    return to_item(key)


# ------------------------------------------------------------------------------------------------ the store
class RecordOperations(OutboxTable):
    """Operator reads and replays on the outbox table. Thread-compatible; the client is shared."""

    def _now_ms(self) -> int:
        return int(self.clock().timestamp() * 1000)

    # ---------------------------------------------------------------------------------------------- listing
    def list(self, kind: Kind, state: RecordState, *, after: str | None = None, limit: int = 100) -> RecordPage:
        """Up to ``limit`` (1..1000) records of ``kind`` in ``state``, oldest first (due: by ``due_at``; dead and
        unconfirmed: by when they were settled), continuing after the cursor ``after``.

        One ``Query`` (``Limit`` = ``limit`` + 1, so ``has_more`` is exact as far as the index knows) and one
        ``BatchGetItem`` per 100 records. Raises ``InvalidCursor`` and ``ValueError`` before any request.
        """
        if state not in LISTABLE_STATES:
            raise ValueError(f"state {state.value!r} is not listed; one of {[s.value for s in LISTABLE_STATES]}")
        if not 1 <= limit <= MAX_PAGE:
            raise ValueError(f"limit {limit}: from 1 to {MAX_PAGE}")
        start = decode_cursor(after, kind, state) if after is not None else None
        partition_name, _ = _key_names(state)
        entries: list[dict[str, Any]] = []
        with storage_errors(f"listing {state.value} records (Query)"):
            while len(entries) <= limit:
                request: dict[str, Any] = {
                    "TableName": self.table_name,
                    "IndexName": DUE_INDEX if state is RecordState.DUE else ATTENTION_INDEX,
                    "KeyConditionExpression": f"{partition_name} = :partition",
                    "ExpressionAttributeValues": to_item({":partition": _partition(kind, state)}),
                    "ScanIndexForward": True,
                    "Limit": min(limit + 1 - len(entries), MAX_QUERY_LIMIT),
                }
                if start is not None:
                    request["ExclusiveStartKey"] = start
                page = self.client.query(**request)
                entries.extend(page.get("Items", []))
                start = page.get("LastEvaluatedKey")
                if start is None:
                    break
        has_more = len(entries) > limit
        listed = entries[:limit]
        cursor = encode_cursor(state, listed[-1]) if has_more else None
        fresh = self._read([entry["pk"]["S"] for entry in listed])
        records = [
            record_from_item(item)
            for item in (fresh.get(entry["pk"]["S"]) for entry in listed)
            if item is not None and "record_id" in item and item.get("state", {}).get("S") == state.value
        ]
        return RecordPage(records, cursor, has_more)

    # ---------------------------------------------------------------------------------------------- retries
    def retry(self, kind: Kind, record_id: str) -> OutboxRecord | None:
        """Make one dead or unconfirmed record due now: attempts back to 0, ``replays`` counted, ``last_error``
        kept (``dead_reason``, ``settled_at`` and its expiry go: due records never expire). One conditional
        ``UpdateItem``. None if there is no such record; ``NotRetryable`` if it is in another state."""
        now_ms = self._now_ms()
        try:
            answer = self.client.update_item(
                TableName=self.table_name,
                Key=to_item({"pk": pk(kind, record_id)}),
                UpdateExpression=(
                    "SET #state = :due, due_kind = :kind, due_at = :now, attempts = :zero, "
                    "replays = if_not_exists(replays, :zero) + :one "
                    "REMOVE attention_key, attention_at, settled_at, expires_at, dead_reason"
                ),
                ConditionExpression="attribute_exists(record_id) AND #state IN (:dead, :unconfirmed)",
                ExpressionAttributeNames={"#state": "state"},
                ExpressionAttributeValues=to_item(
                    {
                        ":due": RecordState.DUE.value,
                        ":kind": kind.value,
                        ":now": now_ms,
                        ":zero": 0,
                        ":one": 1,
                        ":dead": RecordState.DEAD.value,
                        ":unconfirmed": RecordState.UNCONFIRMED.value,
                    }
                ),
                ReturnValues="ALL_NEW",
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
        except ClientError as exc:
            if error_code(exc) != "ConditionalCheckFailedException":
                raise StorageError(f"retrying record {record_id} (UpdateItem) failed: {describe_error(exc)}") from exc
            old = exc.response.get("Item")
            if not old or "record_id" not in old:
                return None
            raise NotRetryable(record_id, old.get("state", {}).get("S", "unknown")) from None
        except BotoCoreError as exc:
            raise StorageError(f"retrying record {record_id} (UpdateItem) failed: {exc}") from exc
        return record_from_item(answer["Attributes"])

    def retry_state(self, kind: Kind, state: RecordState, *, limit: int = MAX_PAGE, dry_run: bool) -> BulkRetry:
        """Make up to ``limit`` (1..1000) of ``kind``'s records in ``state`` (dead or unconfirmed) due again, oldest
        first; ``dry_run`` only says which. A record that changed state meanwhile is skipped, not an error."""
        if state not in ATTENTION_STATES:
            raise ValueError(f"state {state.value!r}: only dead or unconfirmed records are retried")
        if not 1 <= limit <= MAX_PAGE:
            raise ValueError(f"limit {limit}: from 1 to {MAX_PAGE}")
        page = self.list(kind, state, limit=limit)
        ids = [record.record_id for record in page.records]
        if dry_run:
            return BulkRetry(len(ids), 0, ids, page.has_more)

        def one(record_id: str) -> str | None:
            try:
                return record_id if self.retry(kind, record_id) is not None else None
            except NotRetryable:
                return None

        with ThreadPoolExecutor(max_workers=_RETRY_WORKERS) as pool:
            retried = [record_id for record_id in pool.map(one, ids) if record_id is not None]
        return BulkRetry(len(ids), len(retried), retried, page.has_more)

    # ----------------------------------------------------------------------------------------------- counts
    def counts(self, kind: Kind) -> StateCounts:
        """``kind``'s due (all, and due now), dead and unconfirmed records, and the earliest ``due_at``: four
        ``Query Select=COUNT`` (more pages only past 1 MB of index entries) and one ``Query Limit=1``."""
        now_ms = self._now_ms()
        due = self._count(DUE_INDEX, "due_kind = :p", {":p": kind.value})
        due_now = self._count(DUE_INDEX, "due_kind = :p AND due_at <= :now", {":p": kind.value, ":now": now_ms})
        dead = self._count(ATTENTION_INDEX, "attention_key = :p", {":p": attention_key(kind, RecordState.DEAD)})
        unconfirmed = self._count(
            ATTENTION_INDEX, "attention_key = :p", {":p": attention_key(kind, RecordState.UNCONFIRMED)}
        )
        with storage_errors("reading the oldest due record (Query)"):
            first = self.client.query(
                TableName=self.table_name,
                IndexName=DUE_INDEX,
                KeyConditionExpression="due_kind = :p",
                ExpressionAttributeValues=to_item({":p": kind.value}),
                ScanIndexForward=True,
                Limit=1,
            ).get("Items", [])
        oldest = int(first[0]["due_at"]["N"]) if first else None
        return StateCounts(due, due_now, dead, unconfirmed, oldest)

    def _count(self, index: str, condition: str, values: dict[str, Any]) -> int:
        total = 0
        start: dict[str, Any] | None = None
        with storage_errors(f"counting records ({index} Query)"):
            while True:
                request: dict[str, Any] = {
                    "TableName": self.table_name,
                    "IndexName": index,
                    "KeyConditionExpression": condition,
                    "ExpressionAttributeValues": to_item(values),
                    "Select": "COUNT",
                }
                if start is not None:
                    request["ExclusiveStartKey"] = start
                page = self.client.query(**request)
                total += int(page.get("Count", 0))
                start = page.get("LastEvaluatedKey")
                if start is None:
                    return total

    def _read(self, pks: Sequence[str]) -> dict[str, dict[str, Any]]:
        """The items of ``pks`` as stored now (strongly consistent), 100 keys per ``BatchGetItem``."""
        found: dict[str, dict[str, Any]] = {}
        for chunk in chunks(list(dict.fromkeys(pks)), MAX_BATCH_GET_KEYS):
            found.update(self.get_items(chunk, "re-reading listed records (BatchGetItem)"))
        return found
