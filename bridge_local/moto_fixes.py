"""Fixes to moto (the local DynamoDB) that keep it usable at the sizes we test and benchmark.

moto 5.2's TransactWriteItems deep-copies the whole table once per ACTION as its rollback snapshot, so a
100-action transaction on a table of 1,000 items takes about 3 s (82 s to accept 2,500 records in batches of
100), past the 2 s read timeout of ``taobao_bridge.dynamo.dynamodb_client()`` and nothing like DynamoDB. All
those copies are taken before the first action runs and are identical, so one copy per table per transaction
is the same rollback. Real DynamoDB is unaffected; this only changes the stand-in.
"""

from __future__ import annotations

import copy as copy_module
import threading
from types import SimpleNamespace
from typing import Any

__all__ = ["apply"]

_applied = False
_lock = threading.Lock()


def apply() -> None:
    """Patch moto in this process (idempotent). Call before serving requests."""
    global _applied
    with _lock:
        if _applied:
            return
        from moto.dynamodb import models as moto_dynamodb
        from moto.dynamodb.models.table import Table

        local = threading.local()  # the moto server answers each request on its own thread
        original = moto_dynamodb.DynamoDBBackend.transact_write_items

        def deepcopy(value: Any, memo: Any = None) -> Any:
            snapshots = getattr(local, "snapshots", None)
            if snapshots is None or not isinstance(value, Table):
                return copy_module.deepcopy(value, memo)
            if id(value) not in snapshots:
                snapshots[id(value)] = copy_module.deepcopy(value)
            return snapshots[id(value)]

        def transact_write_items(self: Any, transact_items: Any) -> Any:
            local.snapshots = {}
            try:
                return original(self, transact_items)
            finally:
                local.snapshots = None

        moto_dynamodb.copy = SimpleNamespace(deepcopy=deepcopy, copy=copy_module.copy)  # type: ignore[assignment]
        moto_dynamodb.DynamoDBBackend.transact_write_items = transact_write_items  # type: ignore[method-assign]
        _applied = True
