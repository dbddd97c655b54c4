"""Outbox records and their states: what is stored, what a sync attempt decided (``Settlement``), and what
accepting a record answered. Pure data: no I/O."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from ..dynamo import MAX_ITEM_BYTES
from ..errors import BridgeError
from ..kinds import Kind

__all__ = [
    "MAX_ACCEPT_ITEM_BYTES",
    "SETTLEMENT_RESERVE_BYTES",
    "AcceptResult",
    "AcceptStatus",
    "Dead",
    "OutboxRecord",
    "RecordState",
    "RecordTooLarge",
    "Retry",
    "Settlement",
    "Synced",
    "payload_sha256",
]

# Settling adds attributes (the platform's answer, errors, timestamps): an accepted item leaves room for
# them, so that the settle write of a record that was accepted can never be refused for its size.
SETTLEMENT_RESERVE_BYTES = 24 * 1024
MAX_ACCEPT_ITEM_BYTES = MAX_ITEM_BYTES - SETTLEMENT_RESERVE_BYTES


class RecordState(StrEnum):
    """Where a record is in its life. ``due`` waits for a sync run; ``synced`` and ``dead`` are settled."""

    DUE = "due"
    SYNCED = "synced"
    DEAD = "dead"


class AcceptStatus(StrEnum):
    """What accepting one submitted record did."""

    ACCEPTED = "accepted"  # stored now
    DUPLICATE = "duplicate"  # the same key with the same content is already stored: nothing changed
    CONFLICT = "conflict"  # the same key is stored with different content: refused


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
    state: RecordState
    attempts: int
    due_at: int | None  # epoch ms, while due
    accepted_at: str
    settled_at: str | None
    last_error: str | None
    platform_answer: str | None  # JSON text, once synced
    platform_order_id: int | None  # external orders, once synced
    dead_reason: str | None


@dataclass(frozen=True)
class AcceptResult:
    """The outcome for one submitted record, in the order submitted. ``state`` is the record's state now for
    accepted and duplicate records, None for conflicts."""

    record_id: str
    status: AcceptStatus
    state: RecordState | None


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

    ``sent`` says whether an attempt was made: a record given up without a call (its stored payload no longer
    validates) does not count an attempt.
    """

    record: OutboxRecord
    reason: str
    sent: bool = True


Settlement = Synced | Retry | Dead


def payload_sha256(payload: Mapping[str, Any]) -> str:
    """SHA-256 of the payload in a canonical form (sorted keys): key order and whitespace do not matter."""
    canonical = json.dumps(payload, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()
