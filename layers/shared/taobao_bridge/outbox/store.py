"""The outbox store: records accepted from merchants wait here until a sync run settles them
(docs/ARCHITECTURE.md, "Outbound flow").

One DynamoDB table (``OutboxTable`` in template.yaml), hash key ``pk``: a record is ``pk = "<kind>#<record_id>"``
with its wire payload (JSON text), ``payload_sha256``, ``state`` (``RecordState``), ``attempts`` and
``accepted_at`` (the item mapping is ``items.py``). While due it also carries ``due_kind`` and ``due_at``
(epoch ms), the keys of the sparse ``due-index``: settling removes them, so the index only ever holds work.
Settled records keep their outcome (``platform_answer``, ``platform_order_id``, ``last_error``, ``dead_reason``,
``settled_at``) until ``expires_at`` (TTL, ``retention_days`` later); due records never expire.
``unknown_outcomes`` counts the sends whose outcome stayed unknown. The same table holds the run control items
(``outbox.control``); they have no ``record_id`` and never show up as records.

Cost, in DynamoDB requests (the project's headline figure): accepting N records is ceil(N / 100)
``TransactWriteItems`` (one more per chunk that met existing keys); reading due work is one ``Query`` page
per 1,000 index entries plus one ``BatchGetItem`` per 100 records; settling is one ``BatchWriteItem`` per
25 records. Nothing here ever scans.
"""

from __future__ import annotations

import random
import time
import uuid
from collections.abc import Callable, Collection, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import Any, TypeVar

from botocore.exceptions import BotoCoreError, ClientError, ConnectTimeoutError, EndpointConnectionError

from ..clock import Clock, system_clock
from ..dynamo import (
    MAX_BATCH_GET_KEYS,
    MAX_BATCH_WRITE_ITEMS,
    MAX_KEY_BYTES,
    MAX_QUERY_LIMIT,
    MAX_TRANSACT_BYTES,
    MAX_TRANSACT_ITEMS,
    RETRYABLE_REASONS,
    backoff,
    chunks,
    describe_error,
    dynamodb_client,
    error_code,
    from_item,
    is_retryable,
    item_size,
    maybe_applied,
    storage_errors,
    to_item,
)
from ..errors import StorageError
from ..kinds import Kind
from .items import accept_put, is_still_due, new_item, pk, record_from_item, settled_item
from .records import (
    MAX_ACCEPT_ITEM_BYTES,
    AcceptIncomplete,
    AcceptResult,
    AcceptStatus,
    OutboxRecord,
    RecordState,
    RecordTooLarge,
    Settlement,
    payload_sha256,
)

__all__ = ["DUE_INDEX", "OutboxStore"]

DUE_INDEX = "due-index"
_NEVER_SENT = (EndpointConnectionError, ConnectTimeoutError)
_CONFLICT_RETRIES = 4  # TransactionConflict: another writer touched one of the keys at the same moment
_UNPROCESSED_RETRIES = 8  # rounds of UnprocessedItems / UnprocessedKeys before giving up
# Chunks of one BatchGetItem / BatchWriteItem job in flight at once, on the one (thread-safe) client: two jobs
# at once (a sync run reads ahead while it settles) stay within botocore's 10 pooled connections.
_PARALLEL_CHUNKS = 4


@dataclass(frozen=True)
class _NewItem:
    index: int
    record_id: str
    sha: str
    item: dict[str, Any]
    size: int
    replaces: str | None = None  # the content (sha) of the dead record this one replaces, when it does


# record_id -> (status of its first occurrence, sha of the stored content, state now)
_Outcome = dict[str, tuple[AcceptStatus, str, RecordState | None]]


class OutboxStore:
    """The outbox's records. Thread-compatible; one per container is enough (the client is shared)."""

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
        records again changes nothing and answers ``duplicate``. A record stored ``dead`` and submitted with other
        (corrected) content is replaced and due again (``replaced``); any other state answers ``conflict``.

        Raises ``RecordTooLarge`` (before any write) and ``AcceptIncomplete`` (a ``StorageError`` that says which
        records are stored; safe to retry: records already stored answer ``duplicate`` the next time).
        """
        now = self.clock()
        accept_id = uuid.uuid4().hex[:16]  # marks this call's writes: a retry that meets one knows it is its own
        first_seen: dict[str, int] = {}
        repeats: list[tuple[int, str, str]] = []  # (index, record_id, sha) of keys seen earlier in this call
        new_items: list[_NewItem] = []
        for index, (record_id, payload) in enumerate(records):
            if not record_id or len(pk(kind, record_id).encode("utf-8")) > MAX_KEY_BYTES:
                raise ValueError(f"record id {record_id[:80]!r}: empty or longer than a DynamoDB key allows")
            sha = payload_sha256(payload)
            if record_id in first_seen:
                repeats.append((index, record_id, sha))
                continue
            first_seen[record_id] = index
            item = new_item(kind, record_id, payload, sha, now, accept_id)
            size = item_size(item)
            if size > MAX_ACCEPT_ITEM_BYTES:
                raise RecordTooLarge(record_id, size)
            new_items.append(_NewItem(index, record_id, sha, item, size))

        outcome: _Outcome = {}
        failure: StorageError | None = None
        for chunk in chunks(new_items, MAX_TRANSACT_ITEMS, MAX_TRANSACT_BYTES, size=lambda new: new.size):
            if failure is not None:  # not attempted after a failure: certainly not stored
                outcome.update({new.record_id: (AcceptStatus.NOT_STORED, "", None) for new in chunk})
                continue
            try:
                self._put_new(chunk, outcome)
            except StorageError as exc:
                failure = exc
                pending = [new for new in chunk if new.record_id not in outcome]
                self._learn_what_was_stored(pending, outcome, maybe_applied=exc.maybe_applied)
        results = self._results(len(records), new_items, repeats, outcome)
        if failure is not None:
            kept = (AcceptStatus.ACCEPTED, AcceptStatus.REPLACED, AcceptStatus.DUPLICATE)
            stored = sum(r.status in kept for r in results)
            raise AcceptIncomplete(f"{failure} ({stored} of {len(results)} records are stored)", results) from failure
        return results

    @staticmethod
    def _results(
        count: int, new_items: list[_NewItem], repeats: list[tuple[int, str, str]], outcome: _Outcome
    ) -> list[AcceptResult]:
        results: list[AcceptResult | None] = [None] * count
        for new in new_items:
            status, _, state = outcome[new.record_id]
            results[new.index] = AcceptResult(new.record_id, status, None if status is AcceptStatus.CONFLICT else state)
        for index, record_id, sha in repeats:
            # Compared with what is stored now, which is the first occurrence unless that one conflicted.
            status, stored_sha, state = outcome[record_id]
            if status in (AcceptStatus.NOT_STORED, AcceptStatus.UNKNOWN):
                results[index] = AcceptResult(record_id, status, None)
            elif sha == stored_sha:
                results[index] = AcceptResult(record_id, AcceptStatus.DUPLICATE, state)
            else:
                results[index] = AcceptResult(record_id, AcceptStatus.CONFLICT, None)
        return [result for result in results if result is not None]

    def _learn_what_was_stored(self, pending: list[_NewItem], outcome: _Outcome, *, maybe_applied: bool) -> None:
        """After a failed transaction, read its keys back: it may have been applied before the failure (a
        timeout after the write). What cannot be read is ``unknown`` unless the failure itself proves nothing
        was written; the answer never guesses."""
        try:
            stored = self._batch_get([new.item["pk"]["S"] for new in pending])
        except StorageError:
            status = AcceptStatus.UNKNOWN if maybe_applied else AcceptStatus.NOT_STORED
            outcome.update({new.record_id: (status, "", None) for new in pending})
            return
        for new in pending:
            item = stored.get(new.item["pk"]["S"])
            if item is None:
                outcome[new.record_id] = (AcceptStatus.NOT_STORED, "", None)
                continue
            values = from_item(item)
            stored_sha = str(values.get("payload_sha256", ""))
            state = values.get("state")
            if stored_sha == new.sha:
                ours = values.get("accept_id") == new.item["accept_id"]["S"] and "replaced_sha256" in values
                status = AcceptStatus.REPLACED if ours else AcceptStatus.ACCEPTED
            elif state == RecordState.DEAD.value:  # a replacement that did not happen: sending again replaces it
                outcome[new.record_id] = (AcceptStatus.NOT_STORED, "", None)
                continue
            else:
                status = AcceptStatus.CONFLICT
            outcome[new.record_id] = (status, stored_sha, RecordState(state) if state else None)

    def _put_new(self, chunk: list[_NewItem], outcome: _Outcome) -> None:
        """Write ``chunk`` in one transaction; keys that exist are classified and dropped (or, when stored dead with
        other content, written again as replacements), and the rest is written again until it commits or nothing
        is left."""
        remaining = chunk
        failures = 0
        while remaining:
            actions = [{"Put": accept_put(self.table_name, new.item, new.replaces)} for new in remaining]
            try:
                self.client.transact_write_items(TransactItems=actions)
            except ClientError as exc:
                code = error_code(exc)
                reasons = exc.response.get("CancellationReasons") or []
                if code == "TransactionCanceledException" and reasons:
                    existing, replacing = self._classify_existing(remaining, reasons)
                    if existing or replacing:
                        outcome.update(existing)
                        remaining = [
                            replace(new, replaces=replacing[new.record_id]) if new.record_id in replacing else new
                            for new in remaining
                            if new.record_id not in existing
                        ]
                        continue  # progress (the stored items changed since the last round): no backoff
                    retryable = any(reason.get("Code") in RETRYABLE_REASONS for reason in reasons)
                else:
                    retryable = is_retryable(exc)
                failures += 1
                if not retryable or failures > _CONFLICT_RETRIES:
                    # An error answer means the transaction did not commit, unless DynamoDB itself failed (5xx).
                    raise StorageError(
                        f"accepting records (TransactWriteItems) failed: {describe_error(exc)}",
                        maybe_applied=maybe_applied(exc),
                    ) from exc
                time.sleep(0.05 * failures + random.uniform(0, 0.05))
            except BotoCoreError as exc:  # a timeout or a lost connection: the next round meets what was applied
                failures += 1
                if failures > _CONFLICT_RETRIES:
                    raise StorageError(
                        f"accepting records (TransactWriteItems) failed: {exc}",
                        maybe_applied=not isinstance(exc, _NEVER_SENT),
                    ) from exc
                time.sleep(0.05 * failures + random.uniform(0, 0.05))
            else:
                for new in remaining:
                    status = AcceptStatus.ACCEPTED if new.replaces is None else AcceptStatus.REPLACED
                    outcome[new.record_id] = (status, new.sha, RecordState.DUE)
                remaining = []

    def _classify_existing(
        self, remaining: list[_NewItem], reasons: list[dict[str, Any]]
    ) -> tuple[_Outcome, dict[str, str | None]]:
        """What the keys a transaction met hold: final outcomes, and the records to write again as replacements
        of a dead record (record_id -> its stored sha) or, gone meanwhile, as new keys (-> None)."""
        existing: _Outcome = {}
        replacing: dict[str, str | None] = {}
        for new, reason in zip(remaining, reasons, strict=False):
            if reason.get("Code") != "ConditionalCheckFailed":
                continue
            old = reason.get("Item")
            if old is None:  # DynamoDB names the item; read it if a server did not
                old = self._get_raw(new.item["pk"]["S"], "accepting records (GetItem)")
                if old is None:
                    if new.replaces is not None:
                        replacing[new.record_id] = None  # gone (expired): a plain write next round
                    continue  # gone again (expired): written on the next round
            stored = from_item(old)
            stored_sha = str(stored.get("payload_sha256", ""))
            state = stored.get("state")
            if stored_sha != new.sha and state == RecordState.DEAD.value and new.replaces != stored_sha:
                replacing[new.record_id] = stored_sha  # corrected content for a dead record: replace it
                continue
            status = AcceptStatus.DUPLICATE if stored_sha == new.sha else AcceptStatus.CONFLICT
            if status is AcceptStatus.DUPLICATE and stored.get("accept_id") == new.item["accept_id"]["S"]:
                # Our own write, applied by an attempt whose answer was lost (a timeout or a 5xx before a retry).
                status = AcceptStatus.REPLACED if "replaced_sha256" in stored else AcceptStatus.ACCEPTED
            existing[new.record_id] = (status, stored_sha, RecordState(state) if state else None)
        return existing, replacing

    # --------------------------------------------------------------------------------------------- reading
    def get(self, kind: Kind, record_id: str) -> OutboxRecord | None:
        """The record as stored now (strongly consistent), or None."""
        item = self._get_raw(pk(kind, record_id), "reading a record (GetItem)")
        return record_from_item(item) if item is not None and "record_id" in item else None

    def due(self, kind: Kind, *, now_ms: int, limit: int, held: Collection[OutboxRecord] = ()) -> list[OutboxRecord]:
        """Up to ``limit`` records of ``kind`` due at ``now_ms``, oldest due first.

        The index is eventually consistent: every candidate is re-read strongly consistently and kept only
        if it is still due and its ``due_at`` has come, so a record settled a moment ago is never returned.
        A page can therefore hold fewer than ``limit`` records while more are due; the next run gets them.

        ``held``: records the caller read earlier and has not settled yet (a sync run reading ahead). None of
        them is returned, and the index is read from just after the last of them in due order, so their
        entries are neither read again nor re-read; a record due before that one which the index did not list
        then waits for the next run.
        """
        if limit <= 0:
            return []
        skip = {pk(record.kind, record.record_id) for record in held}
        keys: list[str] = []
        start_key = self._due_after(kind, held)
        with storage_errors("reading due records (Query)"):
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
                keys.extend(item["pk"]["S"] for item in page.get("Items", []) if item["pk"]["S"] not in skip)
                start_key = page.get("LastEvaluatedKey")
                if start_key is None:
                    break
        order = {pk: position for position, pk in enumerate(dict.fromkeys(keys[:limit]))}
        fresh = self._batch_get(list(order))
        records = [record_from_item(item) for item in fresh.values() if is_still_due(item, now_ms)]
        records.sort(key=lambda record: (record.due_at or 0, order[pk(record.kind, record.record_id)]))
        return records

    @staticmethod
    def _due_after(kind: Kind, held: Collection[OutboxRecord]) -> dict[str, Any] | None:
        """The due-index position just after the last held record (due_at, then key: the index's order), as an
        ``ExclusiveStartKey``; a position needs no entry there any more. Held records were read due at or before
        the query's ``now``, so the position is inside the key condition."""
        positions = [(record.due_at, pk(kind, record.record_id)) for record in held if record.due_at is not None]
        if not positions:
            return None
        due_at, key = max(positions)
        return to_item({"due_kind": kind.value, "due_at": due_at, "pk": key})

    def _batch_get(self, pks: list[str]) -> dict[str, dict[str, Any]]:
        """The items of ``pks`` (strongly consistent), 100 keys per request, up to four requests at once."""
        found: dict[str, dict[str, Any]] = {}
        for part in _each_in_parallel(self._batch_get_chunk, list(chunks(pks, MAX_BATCH_GET_KEYS))):
            found.update(part)
        return found

    def _batch_get_chunk(self, chunk: list[str]) -> dict[str, dict[str, Any]]:
        found: dict[str, dict[str, Any]] = {}
        request: dict[str, Any] = {"Keys": [to_item({"pk": pk}) for pk in chunk], "ConsistentRead": True}
        rounds = 0
        while True:
            with storage_errors("re-reading due records (BatchGetItem)"):
                answer = self.client.batch_get_item(RequestItems={self.table_name: request})
            for item in answer.get("Responses", {}).get(self.table_name, []):
                found[item["pk"]["S"]] = item
            unprocessed = (answer.get("UnprocessedKeys") or {}).get(self.table_name)
            if not unprocessed or not unprocessed.get("Keys"):
                return found
            rounds += 1
            if rounds > _UNPROCESSED_RETRIES:
                raise StorageError(
                    f"re-reading due records (BatchGetItem) failed: {len(unprocessed['Keys'])} keys "
                    f"stayed unprocessed after {rounds} rounds"
                )
            backoff(rounds)
            request = {**unprocessed, "ConsistentRead": True}

    # ---------------------------------------------------------------------------------------------- settle
    def settle(self, settlements: Sequence[Settlement]) -> None:
        """Write the outcome of sync attempts, 25 records per request, up to four requests at once.

        Each item is written whole, built from the record as it was read: the sync run holds the kind's
        lease, so it is the only writer of these items. Writing the same settlements again writes the same
        items, so after a ``StorageError`` (some chunks may be written) the call can simply be repeated. It
        returns or raises only once no request of it is still in flight.
        """
        now = self.clock()
        items = [settled_item(settlement, now, self.retention_days) for settlement in settlements]
        keys = [item["pk"]["S"] for item in items]
        if len(set(keys)) != len(keys):
            raise ValueError("settle: the same record appears twice; settle each record once per call")
        _each_in_parallel(self._batch_put, list(chunks(items, MAX_BATCH_WRITE_ITEMS)))

    def _batch_put(self, items: list[dict[str, Any]]) -> None:
        requests = [{"PutRequest": {"Item": item}} for item in items]
        rounds = 0
        while requests:
            with storage_errors("settling records (BatchWriteItem)"):
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
            backoff(rounds)

    def _get_raw(self, key: str, operation: str) -> dict[str, Any] | None:
        with storage_errors(operation):
            found = self.client.get_item(TableName=self.table_name, Key=to_item({"pk": key}), ConsistentRead=True)
        item = found.get("Item")
        return dict(item) if item else None


_T = TypeVar("_T")
_R = TypeVar("_R")


def _each_in_parallel(work: Callable[[_T], _R], parts: list[_T]) -> list[_R]:
    """``work`` over ``parts``, up to ``_PARALLEL_CHUNKS`` at once; every part is finished (done or failed)
    before the first failure is raised, so a caller that repeats the job never races its own requests."""
    if len(parts) <= 1:
        return [work(part) for part in parts]
    with ThreadPoolExecutor(max_workers=min(_PARALLEL_CHUNKS, len(parts)), thread_name_prefix="outbox") as pool:
        futures = [pool.submit(work, part) for part in parts]
    for future in futures:
        failure = future.exception()
        if failure is not None:
            raise failure
    return [future.result() for future in futures]
