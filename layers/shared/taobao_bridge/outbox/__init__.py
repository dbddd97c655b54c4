"""The outbox: records accepted from merchants wait in DynamoDB until a sync run settles them.

- ``records``: what is stored and its states (``RecordState``), what a sync attempt decided (``Settlement``);
- ``store``: ``OutboxStore`` accepts records, reads due ones and writes settlements; ``items``: how records and
  settlements are stored as DynamoDB items;
- ``control``: ``RunControl`` holds the leases, bans and pauses that steer sync runs (same table);
- ``table``: ``OutboxTable``, their common base (table name, clock, the shared client);
- ``operations``: ``RecordOperations`` lists records by state, makes dead or unconfirmed ones due again and
  counts them, for operators.

See docs/ARCHITECTURE.md for who uses what.
"""

from __future__ import annotations

from .control import Ban, Lease, OperatorPause, Pause, RunControl
from .items import is_still_due
from .operations import (
    ATTENTION_INDEX,
    BulkRetry,
    InvalidCursor,
    NotRetryable,
    RecordOperations,
    RecordPage,
    StateCounts,
)
from .records import (
    MAX_ACCEPT_ITEM_BYTES,
    AcceptIncomplete,
    AcceptResult,
    AcceptStatus,
    Dead,
    OutboxRecord,
    RecordState,
    RecordTooLarge,
    Retry,
    Settlement,
    Synced,
    Unconfirmed,
    payload_sha256,
)
from .store import DUE_INDEX, OutboxStore

__all__ = [
    "ATTENTION_INDEX",
    "DUE_INDEX",
    "MAX_ACCEPT_ITEM_BYTES",
    "AcceptIncomplete",
    "AcceptResult",
    "AcceptStatus",
    "Ban",
    "BulkRetry",
    "Dead",
    "InvalidCursor",
    "Lease",
    "NotRetryable",
    "OperatorPause",
    "OutboxRecord",
    "OutboxStore",
    "Pause",
    "RecordOperations",
    "RecordPage",
    "RecordState",
    "RecordTooLarge",
    "Retry",
    "RunControl",
    "Settlement",
    "StateCounts",
    "Synced",
    "Unconfirmed",
    "is_still_due",
    "payload_sha256",
]
