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
from ..errors import BridgeError, StorageError
from ..kinds import Kind

__all__ = [
    "MAX_ACCEPT_ITEM_BYTES",
    "SETTLEMENT_RESERVE_BYTES",
    "AcceptIncomplete",
    "AcceptResult",
    "AcceptStatus",
    "Dead",
    "OutboxRecord",
    "RecordState",
    "RecordTooLarge",
    "Retry",
    "Settlement",
    "Synced",
    "Unconfirmed",
    "payload_sha256",
]

# Settling adds attributes (the platform's answer, errors, timestamps): an accepted item leaves room for
# them, so that the settle write of a record that was accepted can never be refused for its size.
SETTLEMENT_RESERVE_BYTES = 24 * 1024
MAX_ACCEPT_ITEM_BYTES = MAX_ITEM_BYTES - SETTLEMENT_RESERVE_BYTES


class RecordState(StrEnum):
    """Where a record is in its life. ``due`` waits for a sync run; the other three are settled and never sent
    again automatically."""

    DUE = "due"
    SYNCED = "synced"  # the platform took it
    DEAD = "dead"  # the platform refused it, or it failed without ever reaching the platform
    UNCONFIRMED = "unconfirmed"  # delivered (maybe more than once), but the platform's verdict is unknown


class AcceptStatus(StrEnum):
    """What accepting one submitted record did."""

    ACCEPTED = "accepted"  # stored now
    DUPLICATE = "duplicate"  # the same key with the same content is already stored: nothing changed
    CONFLICT = "conflict"  # the same key is stored with different content (not dead): refused
    REPLACED = "replaced"  # the same key was stored dead with different content: replaced by this one, due now
    # Only after a storage failure (``AcceptIncomplete``):
    NOT_STORED = "not_stored"  # certainly not stored: send it again, corrected or not
    UNKNOWN = "unknown"  # its write failed and could not be checked: send the same content again to find out


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
    unknown_outcomes: int = 0  # sends whose outcome stayed unknown (timeouts after sending, unreadable answers)
    replays: int = 0  # times an operator made it due again after it was dead or unconfirmed (outbox.operations)


@dataclass(frozen=True)
class AcceptResult:
    """The outcome for one submitted record, in the order submitted. ``state`` is the record's state now for
    accepted, replaced and duplicate records, None for conflicts."""

    record_id: str
    status: AcceptStatus
    state: RecordState | None


class AcceptIncomplete(StorageError):
    """Raised by ``accept`` when DynamoDB failed part-way: ``results`` says, per submitted record in order,
    whether it is stored (``accepted``/``replaced``/``duplicate``/``conflict``), certainly not (``not_stored``) or
    unknown.
    Sending the same request again is safe: stored records answer ``duplicate``."""

    def __init__(self, message: str, results: list[AcceptResult]) -> None:
        self.results = results
        super().__init__(message)


@dataclass(frozen=True)
class Synced:
    """The platform took the record; ``answer`` is kept as its proof."""

    record: OutboxRecord
    answer: dict[str, Any]
    platform_order_id: int | None = None


@dataclass(frozen=True)
class Retry:
    """The attempt failed in a way that may pass: try again at ``next_due_at`` (epoch ms). ``unknown_outcome``:
    the call may have been applied (it timed out after sending), which the record counts."""

    record: OutboxRecord
    error: str
    next_due_at: int
    unknown_outcome: bool = False


@dataclass(frozen=True)
class Dead:
    """The record cannot be synced (caller error, or out of attempts): it stays visible with the reason.

    ``sent`` says whether an attempt was made: a record given up without a call (its stored payload no longer
    validates) does not count an attempt.
    """

    record: OutboxRecord
    reason: str
    sent: bool = True


@dataclass(frozen=True)
class Unconfirmed:
    """Delivered, verdict unknown: the platform answered in a shape we cannot read (``answer`` keeps what it
    said), or the record ran out of attempts after sends whose outcome stayed unknown. Terminal: re-sending
    could apply it twice, so an operator decides."""

    record: OutboxRecord
    reason: str
    answer: dict[str, Any] | str | None = None
    unknown_outcome: bool = True  # this send's outcome is unknown (counted like Retry.unknown_outcome)


Settlement = Synced | Retry | Dead | Unconfirmed


def payload_sha256(payload: Mapping[str, Any]) -> str:
    """SHA-256 of the payload in a canonical form (sorted keys): key order and whitespace do not matter."""
    canonical = json.dumps(payload, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()
