"""Accepting records into the outbox (``OutboxStore.accept``): one conditional ``PutItem`` per record, up to
``PARALLEL_PUTS`` at once on the store's one client (boto3 clients are thread-safe).

Why one put per record rather than a ``TransactWriteItems`` per 100: records are independent (each one answers
for itself, and nothing relies on a group of them being stored whole), and DynamoDB bills an item written in a
transaction twice. A put costs one write unit per KB, so accepting a writeoff costs 1 unit instead of 2 (4 units
from intake to settled, with the due-index entry written and removed and the settle, instead of 5). What it costs:
N requests instead of ceil(N / 100) (requests themselves are not billed on demand; in parallel they take about as
long), and a failure part-way can leave any subset of a request stored, not whole hundreds, which
``AcceptIncomplete`` reports per record anyway.

Each put is conditional: the key must be absent, or, when the content replaces a dead record, that record must
still be dead with the content that was read (``items.accept_put``). A put that meets a stored item is answered
from the item DynamoDB returns with the refusal (``ReturnValuesOnConditionCheckFailure``).
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError, ConnectTimeoutError, EndpointConnectionError

from ..dynamo import (
    MAX_KEY_BYTES,
    backoff,
    describe_error,
    error_code,
    from_item,
    is_retryable,
    item_size,
    maybe_applied,
)
from ..errors import StorageError
from ..kinds import Kind
from .items import accept_put, new_item, pk
from .records import (
    MAX_ACCEPT_ITEM_BYTES,
    AcceptIncomplete,
    AcceptResult,
    AcceptStatus,
    RecordState,
    RecordTooLarge,
    payload_sha256,
)

__all__ = ["PARALLEL_PUTS", "Acceptor"]

# Puts in flight at once for one accept call. 16 keeps a 1,000-record request well under a second in DynamoDB
# (single-digit ms per put) and stays within the client's connection pool (dynamo.MAX_POOL_CONNECTIONS).
PARALLEL_PUTS = 16
_RETRIES = 4  # a put throttled, answered with a 5xx or timed out is tried this many times more, with backoff
_NEVER_SENT = (EndpointConnectionError, ConnectTimeoutError)

# (status, sha of the stored content, state now) of one record
_Outcome = tuple[AcceptStatus, str, RecordState | None]
_NOT_STORED: _Outcome = (AcceptStatus.NOT_STORED, "", None)


@dataclass(frozen=True)
class _NewItem:
    index: int
    record_id: str
    sha: str
    item: dict[str, Any]

    @property
    def key(self) -> str:
        return str(self.item["pk"]["S"])

    @property
    def accept_id(self) -> str:
        return str(self.item["accept_id"]["S"])


class Acceptor:
    """One store's accept: ``table_name`` on ``client``; ``batch_get`` reads items back (consistent, raising
    ``StorageError``), ``get_item`` reads one (or None)."""

    def __init__(
        self,
        table_name: str,
        client: Any,
        *,
        batch_get: Callable[[list[str]], dict[str, dict[str, Any]]],
        get_item: Callable[[str], dict[str, Any] | None],
    ) -> None:
        self.table_name = table_name
        self.client = client
        self._batch_get = batch_get
        self._get_item = get_item

    def accept(self, kind: Kind, records: Sequence[tuple[str, dict[str, Any]]], now: datetime) -> list[AcceptResult]:
        """See ``OutboxStore.accept``."""
        accept_id = uuid.uuid4().hex[:16]  # marks this call's writes: a retry that meets one knows it is its own
        first_seen: set[str] = set()
        repeats: list[tuple[int, str, str]] = []  # (index, record_id, sha) of keys seen earlier in this call
        new_items: list[_NewItem] = []
        for index, (record_id, payload) in enumerate(records):
            if not record_id or len(pk(kind, record_id).encode("utf-8")) > MAX_KEY_BYTES:
                raise ValueError(f"record id {record_id[:80]!r}: empty or longer than a DynamoDB key allows")
            sha = payload_sha256(payload)
            if record_id in first_seen:
                repeats.append((index, record_id, sha))
                continue
            first_seen.add(record_id)
            item = new_item(kind, record_id, payload, sha, now, accept_id)
            size = item_size(item)
            if size > MAX_ACCEPT_ITEM_BYTES:
                raise RecordTooLarge(record_id, size)
            new_items.append(_NewItem(index, record_id, sha, item))

        outcome, failed = self._put_all(new_items)
        # A put refused by DynamoDB stored nothing; one that may have been applied (a timeout, a 5xx) is read back.
        for new, error in failed:
            if not error.maybe_applied:
                outcome[new.record_id] = _NOT_STORED
        self._learn_what_was_stored([new for new, error in failed if error.maybe_applied], outcome)
        results = _results(len(records), new_items, repeats, outcome)
        if failed:
            kept = (AcceptStatus.ACCEPTED, AcceptStatus.REPLACED, AcceptStatus.DUPLICATE)
            stored = sum(r.status in kept for r in results)
            failure = failed[0][1]
            more = f"; {len(failed)} records' writes failed" if len(failed) > 1 else ""
            message = f"{failure} ({stored} of {len(results)} records are stored{more})"
            raise AcceptIncomplete(message, results) from failure
        return results

    def _put_all(self, new_items: list[_NewItem]) -> tuple[dict[str, _Outcome], list[tuple[_NewItem, StorageError]]]:
        """Each record's put, up to ``PARALLEL_PUTS`` at once. After the first failure no further put starts
        (those records are certainly not stored); puts already under way finish. Returns the outcomes and the
        records whose put failed, with the failure, in submission order. Returns only once no put is in flight."""
        stop = threading.Event()

        def attempt(new: _NewItem) -> _Outcome:
            if stop.is_set():
                return _NOT_STORED
            try:
                return self._put(new)
            except StorageError:
                stop.set()
                raise

        if len(new_items) <= 1:
            futures = [_run_now(attempt, new) for new in new_items]
        else:
            workers = min(PARALLEL_PUTS, len(new_items))
            with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="outbox-accept") as pool:
                futures = [pool.submit(attempt, new) for new in new_items]
        outcome: dict[str, _Outcome] = {}
        failed: list[tuple[_NewItem, StorageError]] = []
        for new, future in zip(new_items, futures, strict=True):
            error = future.exception()
            if isinstance(error, StorageError):
                failed.append((new, error))
            elif error is not None:
                raise error
            else:
                outcome[new.record_id] = future.result()
        return outcome, failed

    def _put(self, new: _NewItem) -> _Outcome:
        """Write one record: stored now, or answered from what its key holds; a stored dead record with other
        content is replaced. Raises ``StorageError`` whose ``maybe_applied`` says whether any attempt may have
        written the item."""
        replaces: str | None = None  # the sha of the dead record this write replaces
        failures = 0
        unsure = False  # some attempt failed in a way that may have applied it
        while True:
            try:
                self.client.put_item(**accept_put(self.table_name, new.item, replaces))
            except ClientError as exc:
                if error_code(exc) == "ConditionalCheckFailedException":
                    try:
                        found, replaces = self._met(new, replaces, exc.response.get("Item"))
                    except StorageError as read_failed:
                        raise StorageError(str(read_failed), maybe_applied=unsure) from read_failed
                    if found is not None:
                        return found
                    continue  # the stored item changed since the last attempt (progress): no backoff
                unsure = unsure or maybe_applied(exc)
                failures += 1
                if not is_retryable(exc) or failures > _RETRIES:
                    raise StorageError(
                        f"accepting records (PutItem) failed: {describe_error(exc)}", maybe_applied=unsure
                    ) from exc
            except BotoCoreError as exc:  # a timeout or a lost connection: the next attempt meets what was applied
                unsure = unsure or not isinstance(exc, _NEVER_SENT)
                failures += 1
                if failures > _RETRIES:
                    raise StorageError(f"accepting records (PutItem) failed: {exc}", maybe_applied=unsure) from exc
            else:
                return (AcceptStatus.ACCEPTED if replaces is None else AcceptStatus.REPLACED, new.sha, RecordState.DUE)
            backoff(failures)

    def _met(
        self, new: _NewItem, replaces: str | None, old: dict[str, Any] | None
    ) -> tuple[_Outcome | None, str | None]:
        """What the stored item a put met means: the record's outcome, or None and what to write next (a
        replacement of a dead record: its stored sha; a plain write when the item is gone: None)."""
        if old is None:  # DynamoDB returns the item with the refusal; read it if a server did not
            old = self._get_item(new.key)
            if old is None:
                return None, None  # gone meanwhile (expired): a plain write next
        stored = from_item(old)
        stored_sha = str(stored.get("payload_sha256", ""))
        state = stored.get("state")
        if stored_sha != new.sha and state == RecordState.DEAD.value and replaces != stored_sha:
            return None, stored_sha  # corrected content for a dead record: replace it
        status = AcceptStatus.DUPLICATE if stored_sha == new.sha else AcceptStatus.CONFLICT
        if status is AcceptStatus.DUPLICATE and stored.get("accept_id") == new.accept_id:
            # Our own write, applied by an attempt whose answer was lost (a timeout or a 5xx before a retry).
            status = AcceptStatus.REPLACED if "replaced_sha256" in stored else AcceptStatus.ACCEPTED
        return (status, stored_sha, RecordState(state) if state else None), replaces

    def _learn_what_was_stored(self, pending: list[_NewItem], outcome: dict[str, _Outcome]) -> None:
        """Read back the records whose put failed after it may have been applied. What cannot be read is
        ``unknown``; the answer never guesses."""
        if not pending:
            return
        try:
            stored = self._batch_get([new.key for new in pending])
        except StorageError:
            outcome.update({new.record_id: (AcceptStatus.UNKNOWN, "", None) for new in pending})
            return
        for new in pending:
            item = stored.get(new.key)
            if item is None:
                outcome[new.record_id] = _NOT_STORED
                continue
            values = from_item(item)
            stored_sha = str(values.get("payload_sha256", ""))
            state = values.get("state")
            if stored_sha == new.sha:
                ours = values.get("accept_id") == new.accept_id and "replaced_sha256" in values
                status = AcceptStatus.REPLACED if ours else AcceptStatus.ACCEPTED
            elif state == RecordState.DEAD.value:  # a replacement that did not happen: sending again replaces it
                outcome[new.record_id] = _NOT_STORED
                continue
            else:
                status = AcceptStatus.CONFLICT
            outcome[new.record_id] = (status, stored_sha, RecordState(state) if state else None)


def _run_now(work: Callable[[_NewItem], _Outcome], new: _NewItem) -> Future[_Outcome]:
    """``work(new)`` on this thread, as a finished future (one record needs no pool)."""
    future: Future[_Outcome] = Future()
    try:
        future.set_result(work(new))
    except Exception as exc:  # handed over whole, as a pool's future would be
        future.set_exception(exc)
    return future


def _results(
    count: int, new_items: list[_NewItem], repeats: list[tuple[int, str, str]], outcome: dict[str, _Outcome]
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
