"""Intake: merchants' records are validated against the seed DTOs, then accepted into the outbox.

A request holds one record (a JSON object) or a list of 1..1000. Every record is validated before anything
is stored: one invalid record refuses the whole request, naming each problem by record index and field, so
nothing is half-accepted. Valid requests are stored through ``OutboxStore.accept`` (idempotent: the same
records again answer ``duplicate``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError

from .errors import BridgeError
from .jsonutil import JSONRefused, loads_strict
from .kinds import KINDS, Kind, KindSpec, kind_for_path
from .models.common import field_path
from .outbox import AcceptResult, AcceptStatus, OutboxRecord, OutboxStore, RecordState

__all__ = [
    "MAX_PROBLEMS",
    "MAX_RECORDS_PER_REQUEST",
    "MAX_RECORD_ID_BYTES",
    "Intake",
    "IntakeRejected",
    "MalformedBody",
    "NotFound",
    "RecordProblem",
    "TooManyRecords",
    "accept_answer",
    "incomplete_answer",
    "parse_body",
    "parse_records",
    "public_view",
    "spec_for_path",
]

MAX_RECORDS_PER_REQUEST = 1000
MAX_PROBLEMS = 50
"""Problems listed in one rejection; ``IntakeRejected.total`` still counts them all."""
MAX_RECORD_ID_BYTES = 1024
"""A record's natural key must fit a DynamoDB key (2 KB, with the kind prefix) and stay readable in a URL."""


@dataclass(frozen=True)
class RecordProblem:
    """One rule a record breaks: ``index`` in the request (0-based), ``field`` as a dotted path."""

    index: int
    field: str
    rule: str

    def __str__(self) -> str:
        return f"record {self.index} field {self.field}: {self.rule}"

    def to_dict(self) -> dict[str, Any]:
        return {"index": self.index, "field": self.field, "rule": self.rule}


class IntakeRejected(BridgeError):
    """Raised when one or more records are invalid; nothing was stored. ``problems`` lists up to
    ``MAX_PROBLEMS`` of them, ``total`` counts all."""

    def __init__(self, problems: Sequence[RecordProblem], total: int | None = None) -> None:
        self.problems = list(problems)
        self.total = len(self.problems) if total is None else total
        shown = "; ".join(str(problem) for problem in self.problems[:3])
        more = f"; and {self.total - 3} more" if self.total > 3 else ""
        super().__init__(f"{self.total} problem(s): {shown}{more}")


class MalformedBody(BridgeError):
    """Raised when the body is not JSON, repeats a key, or is neither a record nor a non-empty list."""


class TooManyRecords(BridgeError):
    """Raised when a request holds more than ``MAX_RECORDS_PER_REQUEST`` records: split it."""

    def __init__(self, count: int, limit: int = MAX_RECORDS_PER_REQUEST) -> None:
        self.count = count
        self.limit = limit
        super().__init__(f"{count} records in one request; send at most {limit} per request")


class NotFound(BridgeError):
    """Raised when a path names no kind of record, or no such record is stored."""


def spec_for_path(segment: str) -> KindSpec:
    """The kind served at ``/v1/<segment>``, or ``NotFound``."""
    spec = kind_for_path(segment)
    if spec is None:
        known = ", ".join(spec.path for spec in KINDS.values())
        raise NotFound(f"no such kind of record: {segment!r} (known: {known})")
    return spec


def parse_body(body: str | bytes | None) -> Any:
    """The request body as JSON (UTF-8), refusing duplicate keys (a parser would silently keep one value), deep
    nesting and lone surrogates (``jsonutil.loads_strict``)."""
    if not body:
        raise MalformedBody("the body is empty: send one record (a JSON object) or a list of records")
    try:
        return loads_strict(body)
    except JSONRefused as exc:
        raise MalformedBody(f"body: {exc}") from None
    except ValueError as exc:
        raise MalformedBody(f"body is not valid JSON: {exc}") from None


def parse_records(kind: Kind, body: Any) -> list[tuple[str, dict[str, Any]]]:
    """Validate every record of ``body`` (one object or a list of 1..1000) with the kind's DTO.

    Returns ``(record_id, payload)`` per record, payload in wire form. Raises ``IntakeRejected`` listing
    every problem if any record is invalid, ``TooManyRecords`` or ``MalformedBody``.
    """
    spec = KINDS[kind]
    if isinstance(body, dict):
        items: list[Any] = [body]
    elif isinstance(body, list):
        if not body:
            raise MalformedBody("the list is empty: send 1 to 1000 records")
        if len(body) > MAX_RECORDS_PER_REQUEST:
            raise TooManyRecords(len(body))
        items = body
    else:
        raise MalformedBody("expected one record (a JSON object) or a list of records")

    problems: list[RecordProblem] = []
    total = 0
    records: list[tuple[str, dict[str, Any]]] = []
    for index, item in enumerate(items):
        try:
            model = spec.dto.model_validate(item)
        except ValidationError as exc:
            for error in exc.errors(include_url=False):
                total += 1
                if len(problems) < MAX_PROBLEMS:
                    problems.append(RecordProblem(index, field_path(error["loc"]) or "(record)", error["msg"]))
            continue
        payload = spec.payload_of(model)
        record_id = spec.record_id(payload)
        if len(record_id.encode("utf-8")) > MAX_RECORD_ID_BYTES:
            total += 1
            if len(problems) < MAX_PROBLEMS:
                rule = f"the record's key is {len(record_id.encode('utf-8'))} bytes; at most {MAX_RECORD_ID_BYTES}"
                problems.append(RecordProblem(index, "(key)", rule))
            continue
        records.append((record_id, payload))
    if total:
        raise IntakeRejected(problems, total)
    return records


def accept_answer(results: Sequence[AcceptResult]) -> tuple[int, dict[str, Any]]:
    """HTTP status and body for stored results: 202 (records ``accepted``, ``replaced`` — a dead record's id sent
    with corrected content — or ``duplicate``), or 409 when any record conflicts (the others were still accepted:
    the answer lists each record's own status)."""
    records = [{"id": result.record_id, "status": result.status, "state": result.state} for result in results]
    conflicts = sum(1 for result in results if result.status is AcceptStatus.CONFLICT)
    if not conflicts:
        return 202, {"records": records}
    message = (
        f"{conflicts} record(s) were received before with different content and were refused; "
        "every other record was accepted (see each record's status)"
    )
    return 409, {"error": "conflict", "message": message, "records": records}


def incomplete_answer(results: Sequence[AcceptResult]) -> dict[str, Any]:
    """The 503 body when storage failed part-way: each record's status, so the caller knows exactly what is
    stored (``accepted``/``replaced``/``duplicate``/``conflict``), what is not (``not_stored``) and what could not
    be checked (``unknown``)."""
    records = [{"id": result.record_id, "status": result.status, "state": result.state} for result in results]
    counts = {status.value: sum(r.status is status for r in results) for status in AcceptStatus}
    stored = counts["accepted"] + counts["replaced"] + counts["duplicate"]
    message = (
        f"the outbox failed part-way: {stored} of {len(results)} records are stored, {counts['not_stored']} are "
        f"not, {counts['unknown']} could not be checked (see each record's status); sending the same request "
        "again is safe (stored records answer duplicate), and a not_stored record may be corrected first"
    )
    return {"error": "storage_unavailable", "message": message, "records": records}


class Intake:
    """Validation and acceptance of records, callable from Python as from the HTTP function."""

    def __init__(self, store: OutboxStore) -> None:
        self.store = store

    def submit(self, kind: Kind, body: Any) -> list[AcceptResult]:
        """Validate ``body`` (one record or a list, already parsed JSON) and accept it into the outbox."""
        return self.store.accept(kind, parse_records(kind, body))

    def status(self, kind: Kind, record_id: str) -> dict[str, Any]:
        """The public view of one record (``public_view``), or ``NotFound``."""
        record = self.store.get(kind, record_id)
        if record is None:
            raise NotFound(f"no {KINDS[kind].path} record with id {record_id!r}")
        return public_view(record)


def public_view(record: OutboxRecord) -> dict[str, Any]:
    """What ``GET /v1/{kind}/{id}`` shows. Never the payload: it holds personal data."""
    public: dict[str, Any] = {
        "kind": record.kind.value,
        "id": record.record_id,
        "state": record.state.value,
        "attempts": record.attempts,
        "unknown_outcomes": record.unknown_outcomes,
        "last_error": record.last_error,
        "accepted_at": record.accepted_at,
        "settled_at": record.settled_at,
        "dead_reason": record.dead_reason,
    }
    if record.kind is Kind.EXTERNAL_ORDER:
        # Text: a 19-digit id is beyond what a JavaScript number holds exactly.
        order_id = record.platform_order_id
        public["platform_order_id"] = None if order_id is None else str(order_id)
    if record.state is RecordState.DUE and record.due_at is not None:
        moment = datetime.fromtimestamp(record.due_at / 1000, UTC)
        public["next_attempt_at"] = moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")
    return public
