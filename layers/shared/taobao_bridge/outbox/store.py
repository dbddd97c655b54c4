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

Cost, in DynamoDB requests: accepting N records is N conditional ``PutItem`` (16 at a time; ``outbox.accept``),
one write unit per KB of each record (a ``TransactWriteItems`` would bill every item twice), plus one more request
per record that replaces a dead one; reading due work is one ``Query`` page per 1,000 index entries plus one
``BatchGetItem`` per 100 records; settling is one ``BatchWriteItem`` per 25 records. Nothing here ever scans.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Self, TypeVar

from ..clock import Clock, system_clock
from ..dynamo import (
    MAX_BATCH_GET_KEYS,
    MAX_BATCH_WRITE_ITEMS,
    MAX_QUERY_LIMIT,
    backoff,
    chunks,
    storage_errors,
    to_item,
)
from ..errors import StorageError
from ..kinds import Kind
from .accept import Acceptor
from .items import is_still_due, pk, record_from_item, settled_item
from .records import AcceptResult, OutboxRecord, Settlement
from .table import UNPROCESSED_RETRIES, OutboxTable

__all__ = ["DUE_INDEX", "OutboxStore"]

DUE_INDEX = "due-index"
# Chunks of one BatchGetItem / BatchWriteItem job in flight at once, on the one (thread-safe) client: two jobs
# at once (a sync run reads ahead while it settles) stay within the client's pool (dynamo.MAX_POOL_CONNECTIONS).
_PARALLEL_CHUNKS = 4


class OutboxStore(OutboxTable):
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
        super().__init__(table_name, client=client, clock=clock)
        self.retention_days = retention_days

    @classmethod
    def from_settings(cls, settings: Any) -> Self:
        """The store named by ``OUTBOX_TABLE``, keeping outcomes ``OUTBOX_RETENTION_DAYS``."""
        return cls(settings.require("outbox_table"), retention_days=settings.outbox_retention_days)

    # ------------------------------------------------------------------------------------------------ accept
    def accept(self, kind: Kind, records: Sequence[tuple[str, dict[str, Any]]]) -> list[AcceptResult]:
        """Store new records due now; one result per record, in order. Idempotent: submitting the same
        records again changes nothing and answers ``duplicate``. A record stored ``dead`` and submitted with other
        (corrected) content is replaced and due again (``replaced``); any other state answers ``conflict``.
        Each record is written on its own (``outbox.accept``): records are independent, never stored in groups.

        Raises ``RecordTooLarge`` (before any write) and ``AcceptIncomplete`` (a ``StorageError`` that says which
        records are stored; safe to retry: records already stored answer ``duplicate`` the next time).
        """
        acceptor = Acceptor(
            self.table_name,
            self.client,
            batch_get=self._batch_get,
            get_item=lambda key: self._get_raw(key, "accepting records (GetItem)"),
        )
        return acceptor.accept(kind, records, self.clock())

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
        return self.get_items(chunk, "re-reading due records (BatchGetItem)")

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
            if rounds > UNPROCESSED_RETRIES:
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
