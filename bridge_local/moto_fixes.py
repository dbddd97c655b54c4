"""Fixes to moto (the local DynamoDB) so that it keeps DynamoDB's promises under concurrent callers.

1. **One request at a time.** moto's DynamoDB backend has no locking: the server answers each request on its own
   thread, and writers mutate plain dicts that readers iterate and that ``TransactWriteItems`` deep-copies as
   its rollback snapshot. Worse, a cancelled transaction rolls back by putting that whole-table snapshot back,
   erasing every write other threads acknowledged meanwhile (orders answered success and never stored,
   inventory counters drifting, outbox records answered accepted and gone). So every DynamoDB request runs
   under one lock: ``DynamoHandler.call_action`` is wrapped. That is the narrowest hook that covers everything:
   it is the one method every DynamoDB API call goes through, over HTTP (``ThreadedMotoServer``) and in
   process (``mock_aws``), after the request is parsed and including the serialisation of the answer (which
   reads live items); request parsing and the HTTP exchange stay outside the lock. Locking backend methods
   instead would need one wrapper per operation and leave the answer's serialisation racing with writers;
   wrapping the werkzeug app would need ThreadedMotoServer's private ``_server_entry`` and miss ``mock_aws``.
   DynamoDB itself is serializable per item, so a serial stand-in gives every answer DynamoDB could give.

2. **Rollback by item, not by table.** moto 5.2's ``TransactWriteItems`` deep-copies every table an action
   names, once per action, before running it (about 3 s for 100 actions on a 1,000-item table; it grows with
   the table, and under the lock every other request would wait for it). Under the lock nothing else writes
   during a transaction, so saving the (at most 100) items the actions name and putting those back on failure
   is the same rollback: moto's own whole-table copy is turned into a no-op and the saved items are restored
   when the transaction raises.

3. **Stored items are replaced, never changed in place.** moto's ``UpdateItem`` edits the stored item object;
   here it edits a copy that replaces it. So the items a snapshot listed under the lock (``stored_items``) stay
   as they were while they are written to disk without the lock (``bridge_local.persistence``), and requests
   wait for the snapshot for milliseconds, not for the seconds serialisation takes.

4. **Nothing is kept after it is dropped.** moto's ``BaseModel.__new__`` appends every model object it ever
   creates to a class-level list (``instances_tracked``, for its web dashboard), so every DynamoDB item -
   including each copy made for a rollback, an update, a query result or an index projection - stayed in memory
   for the life of the process: with moto's whole-table snapshots that was gigabytes within minutes, and even
   without them about four dead items per write. DynamoDB's models are not tracked here; nothing in moto but
   that dashboard reads the lists.

Real DynamoDB is unaffected; this only changes the stand-in. ``write_generation()`` tells the persistence
whether anything may have changed since its last save.
"""

from __future__ import annotations

import copy as copy_module
import functools
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

__all__ = ["DYNAMODB_LOCK", "apply", "is_read_only", "stored_items", "write_generation"]

# Re-entrant: persistence code holding it may call backend methods that moto itself might route back here.
DYNAMODB_LOCK = threading.RLock()

_applied = False
_apply_lock = threading.Lock()
_generation = 0  # bumped (under DYNAMODB_LOCK) by every request that may have written

_READ_ACTIONS = frozenset({"Query", "Scan", "BatchGetItem", "TransactGetItems"})


def is_read_only(action: str) -> bool:
    """Whether a DynamoDB action (``PutItem``, ``Query``...) never changes stored state."""
    return action in _READ_ACTIONS or action.startswith(("Get", "Describe", "List"))


def write_generation() -> int:
    """A number that changes whenever a request that may have written has run (reads leave it alone)."""
    return _generation


@dataclass
class _Saved:
    table: Any
    hash_key: Any
    range_key: Any
    item: Any  # a deep copy of the item before the transaction, or None if there was none
    had_hash_bucket: bool  # range-key tables keep a dict per hash key: drop it again if we created it


def _saved_items(backend: Any, transact_items: list[dict[str, Any]]) -> Iterator[_Saved]:
    """The items a transaction's actions name, as they are now. Malformed actions are skipped: moto refuses
    them before writing anything for them."""
    seen: set[tuple[int, Any, Any]] = set()
    for action in transact_items:
        try:
            op_type, op = next(iter(action.items()))
            table = backend.tables.get(op.get("TableName"))
            if table is None:
                continue
            found = _item_key(table, op.get("Item") if op_type == "Put" else op.get("Key"))
        except (AttributeError, StopIteration, TypeError):
            continue
        if found is None:
            continue
        hash_key, range_key = found
        marker = (id(table), hash_key, range_key)
        if marker in seen:
            continue  # moto refuses two actions on one item; the first saved state is the original
        seen.add(marker)
        if range_key is None:
            current = table.items.get(hash_key)
            had_bucket = True
        else:
            bucket = table.items.get(hash_key)  # .get: table.items is a defaultdict, [] would create
            current = bucket.get(range_key) if bucket is not None else None
            had_bucket = bucket is not None
        yield _Saved(table, hash_key, range_key, copy_module.deepcopy(current), had_bucket)


def _restore(saved: list[_Saved], stream_lengths: dict[int, tuple[Any, int]]) -> None:
    for entry in saved:
        items = entry.table.items
        if entry.range_key is None:
            if entry.item is None:
                items.pop(entry.hash_key, None)
            else:
                items[entry.hash_key] = entry.item
            continue
        if entry.item is not None:
            items[entry.hash_key][entry.range_key] = entry.item
            continue
        bucket = items.get(entry.hash_key)
        if bucket is not None:
            bucket.pop(entry.range_key, None)
            if not bucket and not entry.had_hash_bucket:
                del items[entry.hash_key]
    for shard, length in stream_lengths.values():
        del shard.items[length:]  # stream records of writes that never happened


def apply() -> None:
    """Patch moto in this process (idempotent). Call before serving requests."""
    global _applied
    with _apply_lock:
        if _applied:
            return
        from moto.dynamodb import models as moto_dynamodb
        from moto.dynamodb.models.table import Table
        from moto.dynamodb.responses import DynamoHandler

        _serialize_requests(DynamoHandler)
        _rollback_by_item(moto_dynamodb, Table)
        _copy_on_update(moto_dynamodb)
        _untrack_instances()
        _applied = True


def stored_items(table: Any) -> list[Any]:
    """The item objects of a moto table, listed under the lock. With ``apply()`` in effect they are never
    changed afterwards (an update replaces the object), so they can be read without the lock."""
    with DYNAMODB_LOCK:
        if table.range_key_attr is None:
            return list(table.items.values())
        return [item for bucket in table.items.values() for item in bucket.values()]


def _item_key(table: Any, key: Any) -> tuple[Any, Any] | None:
    from moto.dynamodb.models.dynamo_type import DynamoType

    try:
        hash_key = DynamoType(key[table.hash_key_attr])
        range_key = DynamoType(key[table.range_key_attr]) if table.range_key_attr else None
    except (KeyError, TypeError, AttributeError):
        return None
    return hash_key, range_key


def _serialize_requests(handler_class: Any) -> None:
    original: Callable[[Any], Any] = handler_class.call_action

    @functools.wraps(original)
    def call_action(self: Any) -> Any:
        global _generation
        try:
            action = str(self._get_action() or "")
        except Exception:  # an unroutable request: moto answers it; count it as a possible write
            action = ""
        with DYNAMODB_LOCK:
            try:
                return original(self)
            finally:
                if not is_read_only(action):
                    _generation += 1

    handler_class.call_action = call_action


def _rollback_by_item(moto_dynamodb: Any, table_class: type) -> None:
    local = threading.local()  # set only while our transact_write_items runs on this thread
    original = moto_dynamodb.DynamoDBBackend.transact_write_items

    def deepcopy(value: Any, memo: Any = None) -> Any:
        if getattr(local, "in_transaction", False) and isinstance(value, table_class):
            # moto's whole-table snapshot: hand back the live table, so its "rollback" (putting the snapshot
            # back in backend.tables) changes nothing; the items are restored by _restore below.
            return value
        return copy_module.deepcopy(value, memo)

    def transact_write_items(self: Any, transact_items: Any) -> Any:
        with DYNAMODB_LOCK:  # already held when called through a request; taken for direct backend calls
            saved = list(_saved_items(self, transact_items or []))
            streams = {
                id(entry.table): (entry.table.stream_shard, len(entry.table.stream_shard.items))
                for entry in saved
                if getattr(entry.table, "stream_shard", None) is not None
            }
            local.in_transaction = True
            try:
                return original(self, transact_items)
            except BaseException:
                _restore(saved, streams)
                raise
            finally:
                local.in_transaction = False

    moto_dynamodb.copy = SimpleNamespace(deepcopy=deepcopy, copy=copy_module.copy)
    moto_dynamodb.DynamoDBBackend.transact_write_items = transact_write_items


def _copy_on_update(moto_dynamodb: Any) -> None:
    original = moto_dynamodb.DynamoDBBackend.update_item

    def update_item(self: Any, table_name: str, key: Any, *args: Any, **kwargs: Any) -> Any:
        with DYNAMODB_LOCK:
            table = self.tables.get(table_name)
            found = _item_key(table, key) if table is not None else None
            if found is not None:
                hash_key, range_key = found
                if range_key is None:
                    current = table.items.get(hash_key)
                    if current is not None:
                        table.items[hash_key] = copy_module.deepcopy(current)
                else:
                    bucket = table.items.get(hash_key)
                    current = bucket.get(range_key) if bucket is not None else None
                    if current is not None:
                        bucket[range_key] = copy_module.deepcopy(current)
            return original(self, table_name, key, *args, **kwargs)

    moto_dynamodb.DynamoDBBackend.update_item = update_item


def _new_untracked(cls: type, *args: Any, **kwargs: Any) -> Any:
    return object.__new__(cls)


def _untrack_instances() -> None:
    from moto.core.common_models import BaseModel
    from moto.core.model_instances import model_data

    for model in list(model_data.get("dynamodb", {}).values()):
        if isinstance(model, type) and issubclass(model, BaseModel):
            model.__new__ = staticmethod(_new_untracked)  # type: ignore[method-assign]
            model.instances_tracked = []  # type: ignore[attr-defined]  # what was kept so far
