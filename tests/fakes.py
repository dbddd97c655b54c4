"""In-memory stand-ins for the sync runner's ports (``taobao_bridge.sync.ports``), for unit tests of the
runner's decisions without DynamoDB or HTTP. They keep the contracts of the real ones (tests/unit/test_outbox.py
and the integration tests check those): the outbox returns only due records whose time has come, oldest first,
and settles as ``OutboxStore.settle`` does; a ban is never shortened; a lease is held by one owner until it
expires or is released.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from taobao_bridge.errors import StorageError
from taobao_bridge.kinds import KINDS, Kind
from taobao_bridge.outbox import (
    Dead,
    OperatorPause,
    OutboxRecord,
    Pause,
    RecordState,
    Retry,
    Settlement,
    Synced,
    Unconfirmed,
    payload_sha256,
)
from taobao_bridge.top_client import TopResponse

START = datetime(2026, 11, 23, 2, 0, tzinfo=UTC)


class FakeTime:
    """One timeline for the wall clock and ``time.monotonic``: tests and the fake platform advance it."""

    def __init__(self, start: datetime = START) -> None:
        self.start = start
        self.elapsed_s = 0.0
        self._lock = threading.Lock()

    def advance(self, seconds: float) -> None:
        with self._lock:
            self.elapsed_s += seconds

    def monotonic(self) -> float:
        return 1000.0 + self.elapsed_s

    def clock(self) -> datetime:
        return self.start + timedelta(seconds=self.elapsed_s)

    @property
    def now_ms(self) -> int:
        return int(self.clock().timestamp() * 1000)

    def remaining_ms(self, budget_s: float) -> Callable[[], int]:
        """A Lambda context's ``get_remaining_time_in_millis`` for an invocation of ``budget_s`` from now."""
        end = self.elapsed_s + budget_s
        return lambda: int((end - self.elapsed_s) * 1000)


class MemoryOutbox:
    """``SyncOutbox`` in a dict. ``settle_calls`` records every settle call that was written; ``fail_settles``
    makes the next N settle calls fail as DynamoDB would (``StorageError``, nothing written), and
    ``refuse_settle`` every settle call it says yes to. ``due_answers`` holds the record ids each ``due`` call
    returned. A run reads and settles from several threads: ``changed`` is notified after each call, for tests
    that wait for one (``wait_until``); ``before_settle`` runs first in each settle call (outside the lock), for
    tests that hold a settle back until something else happened."""

    def __init__(self) -> None:
        self.records: dict[tuple[Kind, str], OutboxRecord] = {}
        self.settle_calls: list[list[Settlement]] = []
        self.due_calls = 0
        self.due_answers: list[list[str]] = []
        self.fail_settles = 0
        self.failed_settles = 0
        self.refuse_settle: Callable[[Sequence[Settlement]], bool] = lambda settlements: False
        self.before_settle: Callable[[Sequence[Settlement]], object] = lambda settlements: None
        self.changed = threading.Condition()

    def wait_until(self, condition: Callable[[], bool], timeout_s: float = 5.0) -> bool:
        """Block (real time) until ``condition()`` holds; False on timeout. Woken by due and settle calls, and
        polled, since conditions may also watch other fakes."""
        end = time.monotonic() + timeout_s
        with self.changed:
            while not condition():
                left = end - time.monotonic()
                if left <= 0:
                    return False
                self.changed.wait(min(left, 0.005))
            return True

    def add(self, kind: Kind, payloads: Sequence[dict[str, Any]], *, attempts: int = 0, due_at: int = 0) -> list[str]:
        spec = KINDS[kind]
        ids = []
        for payload in payloads:
            wire = spec.payload_of(spec.dto.model_validate(payload))
            record_id = spec.record_id(wire)
            self.add_raw(kind, record_id, wire, attempts=attempts, due_at=due_at)
            ids.append(record_id)
        return ids

    def add_raw(
        self, kind: Kind, record_id: str, payload: dict[str, Any], *, attempts: int = 0, due_at: int = 0
    ) -> None:
        """A record stored as is, without validation (as an older version of the code may have stored it)."""
        self.records[(kind, record_id)] = OutboxRecord(
            kind,
            record_id,
            payload,
            payload_sha256(payload),
            RecordState.DUE,
            attempts,
            due_at,
            "2026-11-23T02:00:00.000Z",
            None,
            None,
            None,
            None,
            None,
        )

    def get(self, kind: Kind, record_id: str) -> OutboxRecord:
        return self.records[(kind, record_id)]

    def states(self, kind: Kind) -> dict[str, int]:
        counts: dict[str, int] = {}
        for (record_kind, _), record in self.records.items():
            if record_kind is kind:
                counts[record.state.value] = counts.get(record.state.value, 0) + 1
        return counts

    # the port
    def due(self, kind: Kind, *, now_ms: int, limit: int, held: Collection[OutboxRecord] = ()) -> list[OutboxRecord]:
        skip = {record.record_id for record in held}
        with self.changed:
            due = [
                r
                for (k, record_id), r in self.records.items()
                if k is kind
                and record_id not in skip
                and r.state is RecordState.DUE
                and r.due_at is not None
                and r.due_at <= now_ms
            ]
            answer = sorted(due, key=lambda r: r.due_at or 0)[:limit]
            self.due_calls += 1
            self.due_answers.append([r.record_id for r in answer])
            self.changed.notify_all()
        return answer

    def settle(self, settlements: Sequence[Settlement]) -> None:
        self.before_settle(settlements)
        with self.changed:
            try:
                self._settle(settlements)
            finally:
                self.changed.notify_all()

    def _settle(self, settlements: Sequence[Settlement]) -> None:
        keys = [(s.record.kind, s.record.record_id) for s in settlements]
        if len(set(keys)) != len(keys):
            raise ValueError("settle: the same record appears twice")
        if self.fail_settles or self.refuse_settle(settlements):
            self.fail_settles = max(0, self.fail_settles - 1)
            self.failed_settles += 1
            raise StorageError("settling records (BatchWriteItem) failed: ThrottlingException: Rate exceeded")
        self.settle_calls.append(list(settlements))
        for settlement in settlements:
            record = settlement.record
            attempts = record.attempts + 1
            if isinstance(settlement, Synced):
                settled = replace(
                    record,
                    state=RecordState.SYNCED,
                    attempts=attempts,
                    due_at=None,
                    platform_answer=json.dumps(settlement.answer),
                    platform_order_id=settlement.platform_order_id,
                )
            elif isinstance(settlement, Retry):
                unknowns = record.unknown_outcomes + (1 if settlement.unknown_outcome else 0)
                settled = replace(
                    record,
                    attempts=attempts,
                    due_at=settlement.next_due_at,
                    last_error=settlement.error,
                    unknown_outcomes=unknowns,
                )
            elif isinstance(settlement, Unconfirmed):
                answer = settlement.answer
                settled = replace(
                    record,
                    state=RecordState.UNCONFIRMED,
                    attempts=attempts,
                    due_at=None,
                    last_error=settlement.reason,
                    platform_answer=answer if isinstance(answer, str) or answer is None else json.dumps(answer),
                    unknown_outcomes=record.unknown_outcomes + (1 if settlement.unknown_outcome else 0),
                )
            elif isinstance(settlement, Dead):
                settled = replace(
                    record,
                    state=RecordState.DEAD,
                    due_at=None,
                    dead_reason=settlement.reason,
                    last_error=settlement.reason,
                    attempts=attempts if settlement.sent else record.attempts,
                )
            self.records[(record.kind, record.record_id)] = settled


class MemoryControl:
    """``SyncControl`` in dicts, on the fake clock."""

    def __init__(self, time: FakeTime) -> None:
        self.time = time
        self.leases: dict[str, tuple[str, int]] = {}
        self.bans: dict[str, tuple[int, str]] = {}
        self.pauses: dict[str, Pause] = {}
        self.operator_pauses: dict[str, OperatorPause] = {}
        self.lease_history: list[tuple[str, str, int]] = []  # (name, owner, until_ms) of every lease granted

    def acquire_lease(self, name: str, owner: str, *, until_ms: int, now_ms: int) -> bool:
        held = self.leases.get(name)
        if held is not None and held[0] != owner and held[1] >= now_ms:
            return False
        self.leases[name] = (owner, until_ms)
        self.lease_history.append((name, owner, until_ms))
        return True

    def release_lease(self, name: str, owner: str) -> None:
        if self.leases.get(name, ("", 0))[0] == owner:
            del self.leases[name]

    def ban_until(self, scope: str) -> int | None:
        ban = self.bans.get(scope)
        return ban[0] if ban is not None and ban[0] > self.time.now_ms else None

    def set_ban(self, scope: str, *, until_ms: int, reason: str) -> None:
        if scope not in self.bans or self.bans[scope][0] < until_ms:
            self.bans[scope] = (until_ms, reason)

    def pause(self, name: str) -> Pause | None:
        return self.pauses.get(name)

    def set_pause(self, name: str, *, reason: str, fingerprint: str) -> None:
        self.pauses[name] = Pause(reason=reason, fingerprint=fingerprint, since_ms=self.time.now_ms)

    def clear_pause(self, name: str) -> bool:
        return self.pauses.pop(name, None) is not None

    def operator_pause(self, name: str) -> OperatorPause | None:
        return self.operator_pauses.get(name)


@dataclass
class PlatformCall:
    method: str
    records: list[dict[str, Any]]  # the record payloads the call carried, decoded from the wire text
    session: str | None
    started_left_s: float | None  # Lambda time left when the call started, if the test set a deadline to watch
    deadline: float | None = None  # what the runner asked of the client
    start_by: float | None = None
    retry_unknown: bool = True
    timeout_s: float | None = None


Answer = Callable[[PlatformCall], Mapping[str, Any] | Exception]


def accepted(call: PlatformCall) -> Mapping[str, Any]:
    """What the platform answers when it takes the whole call (the seeds' success shapes)."""
    if call.method == KINDS[Kind.WRITEOFF].method:
        return {"result": {"success": True, "data": True}, "request_id": "r"}
    if call.method == KINDS[Kind.EXTERNAL_ORDER].method:
        order_id = 10_000 + int(str(call.records[0]["idempotent_id"]).rsplit("-", 1)[-1])
        return {"result": {"success": True, "data": {"order_id": order_id}}, "request_id": "r"}
    return {"request_id": "r"}


@dataclass
class ScriptedPlatform:
    """``TopCaller`` that answers from a function of the call: a body, or an exception to raise.

    Each call takes ``latency_s`` on the fake timeline. ``deadline_end`` (monotonic) lets it note how much
    Lambda time was left when each call started.
    """

    time: FakeTime
    answer: Answer = accepted
    latency_s: float = 0.05
    deadline_end: float | None = None
    calls: list[PlatformCall] = field(default_factory=list)
    in_flight: int = 0
    max_in_flight: int = 0
    hold_s: float = 0.0  # real seconds each call blocks, to observe concurrency
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def call(
        self,
        method: str,
        api_params: Mapping[str, Any],
        *,
        session: str | None = None,
        deadline: float | None = None,
        start_by: float | None = None,
        retry_unknown: bool = True,
        timeout_s: float | None = None,
    ) -> TopResponse:
        (param,) = api_params  # every API here has one top-level parameter
        decoded = json.loads(api_params[param])
        records = decoded if isinstance(decoded, list) else decoded.get("contents", [decoded])
        left = None if self.deadline_end is None else self.deadline_end - self.time.monotonic()
        call = PlatformCall(method, records, session, left, deadline, start_by, retry_unknown, timeout_s)
        with self._lock:
            self.calls.append(call)
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            if self.hold_s:
                threading.Event().wait(self.hold_s)
            self.time.advance(self.latency_s)
            outcome = self.answer(call)
        finally:
            with self._lock:
                self.in_flight -= 1
        if isinstance(outcome, Exception):
            raise outcome
        return TopResponse(method, dict(outcome), "r", self.latency_s * 1000, 1)

    def sizes(self) -> list[int]:
        return [len(call.records) for call in self.calls]
