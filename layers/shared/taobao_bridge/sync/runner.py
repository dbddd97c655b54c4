"""One scheduled sync run for one kind of record: due records from the outbox, batched into signed TOP calls,
each record settled synced, retried later or dead (docs/ARCHITECTURE.md, "Outbound flow").

A run
1. honours a stored rate-limit ban and, for APIs that need the seller session, a stored session pause;
2. takes the kind's lease (a conditional write), so overlapping runs never send the same record concurrently;
3. sends batches of up to the API's limit while the Lambda has time left, and settles each batch;
4. releases the lease.

A refused batch (``isv.*`` or ``result.success=false``) is split in halves until the bad records are alone:
the good ones are synced, the bad ones settled dead with the platform's code and message. A record that keeps
failing transiently is retried later with backoff and settled dead after ``max_attempts``. A worker that dies
between send and settle leaves its records due: the lease expires and the next run sends them again with the
same business keys.

The runner logs but emits no metrics: the handler emits them from the ``RunReport`` it returns.
"""

from __future__ import annotations

import hashlib
import random
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from aws_lambda_powertools import Logger
from pydantic import ValidationError

from ..clock import Clock, system_clock
from ..errors import BridgeError, TopError, TopPermanentError, TopRateLimited, TopSessionExpired, TopTransportError
from ..kinds import KINDS, Kind, KindSpec
from ..models.common import field_path
from ..outbox.records import Dead, OutboxRecord, Retry, Settlement, Synced
from ..settings import Settings
from .ports import SyncControl, SyncOutbox, TopCaller

__all__ = ["APP_BAN_SCOPE", "RunReport", "RunStatus", "SyncConfig", "SyncRunner", "session_fingerprint"]

logger = Logger(child=True)

APP_BAN_SCOPE = "app"  # the daily quota (accesscontrol.limited-by-app-access-count) stops every API


@dataclass(frozen=True)
class SyncConfig:
    max_attempts: int = 8  # sends that failed transiently before a record is settled dead
    retry_base_s: float = 30.0  # record backoff: base * 2**attempts, full jitter above half, capped
    retry_cap_s: float = 3600.0
    deadline_margin_s: float = 15.0  # no new TOP call starts with less Lambda time left than this
    lease_margin_s: float = 30.0  # the lease outlives the invocation's deadline by this much
    external_concurrency: int = 4  # external orders in flight at once (one per call)
    session_recheck_s: float = 3600.0  # a paused flow probes the same session again after this long
    fetch_batches: int = 1  # batches read from the outbox per round (larger = fewer Queries, longer leases)

    @classmethod
    def from_settings(cls, settings: Settings) -> SyncConfig:
        return cls(
            max_attempts=settings.sync_max_attempts,
            retry_base_s=settings.sync_retry_base_s,
            deadline_margin_s=settings.sync_deadline_margin_s,
            external_concurrency=settings.sync_external_concurrency,
            session_recheck_s=settings.sync_session_recheck_s,
        )


class RunStatus(StrEnum):
    """How a run ended."""

    DONE = "done"  # nothing due is left
    DEADLINE = "deadline"  # stopped before the Lambda deadline; the rest stays due
    LEASED_ELSEWHERE = "leased_elsewhere"  # another run holds the kind's lease
    BANNED = "banned"  # a stored rate-limit ban is still running
    PAUSED = "paused"  # the seller session is missing or was refused with this key
    RATE_LIMITED = "rate_limited"  # the platform banned us during this run
    SESSION_EXPIRED = "session_expired"  # the platform refused the session during this run


@dataclass
class RunReport:
    kind: str
    status: RunStatus = RunStatus.DONE
    calls: int = 0
    sent: int = 0
    synced: int = 0
    retried: int = 0
    dead: int = 0
    detail: str = ""
    duration_ms: float = 0.0
    # For metrics, not the run's summary (``as_dict`` leaves them out):
    batch_sizes: list[int] = field(default_factory=list)
    latencies_ms: list[float] = field(default_factory=list)  # of each accepted call
    rate_limited_calls: int = 0
    daily_quota_calls: int = 0  # rate limits that were the app's daily quota
    session_alerts: int = 0  # session refused by the platform, or no session key configured

    def as_dict(self) -> dict[str, Any]:
        """The run's summary, as the function returns and logs it."""
        return {
            "kind": self.kind,
            "status": self.status.value,
            "calls": self.calls,
            "sent": self.sent,
            "synced": self.synced,
            "retried": self.retried,
            "dead": self.dead,
            "detail": self.detail,
            "duration_ms": self.duration_ms,
        }

    def metric_values(self) -> list[tuple[str, str, float]]:
        """``(name, unit, value)`` of every metric this run should emit, units as CloudWatch names them."""
        values: list[tuple[str, str, float]] = [("BatchSize", "Count", size) for size in self.batch_sizes]
        values += [("PlatformLatency", "Milliseconds", latency) for latency in self.latencies_ms]
        values += [("TopRateLimited", "Count", 1)] * self.rate_limited_calls
        values += [("TopDailyQuotaExceeded", "Count", 1)] * self.daily_quota_calls
        values += [("TopSessionExpired", "Count", 1)] * self.session_alerts
        values += [
            ("RecordsSent", "Count", self.sent),
            ("RecordsSynced", "Count", self.synced),
            ("RecordsRetried", "Count", self.retried),
            ("RecordsDead", "Count", self.dead),
            ("TopCalls", "Count", self.calls),
        ]
        return values


class _StopRun(Exception):
    """Raised inside a run to stop it; the records concerned stay due."""

    def __init__(self, status: RunStatus, detail: str) -> None:
        self.status = status
        self.detail = detail
        super().__init__(f"{status.value}: {detail}")


def session_fingerprint(session_key: str) -> str:
    """A short hash that says whether the session key changed, without storing the key."""
    return hashlib.sha256(session_key.encode("utf-8")).hexdigest()[:16]


@dataclass
class SyncRunner:
    kind: Kind
    outbox: SyncOutbox
    control: SyncControl
    client: TopCaller
    session_key: str = ""
    config: SyncConfig = field(default_factory=SyncConfig)
    clock: Clock = system_clock
    monotonic: Callable[[], float] = time.monotonic
    rand: Callable[[], float] = random.random
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)

    @property
    def spec(self) -> KindSpec:
        return KINDS[self.kind]

    def _now_ms(self) -> int:
        return int(self.clock().timestamp() * 1000)

    # ------------------------------------------------------------------------------------------ the run
    def run(self, remaining_ms: Callable[[], int]) -> RunReport:
        """One scheduled run; ``remaining_ms`` is the Lambda context's ``get_remaining_time_in_millis``."""
        started = self.monotonic()
        report = RunReport(kind=self.kind.value)
        deadline = started + remaining_ms() / 1000
        try:
            self._check_ban()
            self._check_session(report)
            owner = uuid.uuid4().hex
            now = self._now_ms()
            lease_until = now + remaining_ms() + int(self.config.lease_margin_s * 1000)
            if not self.control.acquire_lease(self.kind.value, owner, until_ms=lease_until, now_ms=now):
                raise _StopRun(RunStatus.LEASED_ELSEWHERE, "another run holds this kind's lease")
            try:
                self._drain(report, deadline)
            finally:
                self.control.release_lease(self.kind.value, owner)
        except _StopRun as stop:
            report.status, report.detail = stop.status, stop.detail
        report.duration_ms = round((self.monotonic() - started) * 1000, 1)
        logger.info("sync run finished", extra={"report": report.as_dict()})
        return report

    def _time_left(self, deadline: float) -> float:
        return deadline - self.monotonic()

    def _stop_if_late(self, deadline: float) -> None:
        if self._time_left(deadline) < self.config.deadline_margin_s:
            raise _StopRun(RunStatus.DEADLINE, "stopped before the Lambda deadline; the rest stays due")

    def _drain(self, report: RunReport, deadline: float) -> None:
        spec = self.spec
        per_round = spec.max_batch * self.config.fetch_batches
        if spec.max_batch == 1:
            per_round = max(per_round, self.config.external_concurrency * 4)
        while True:
            self._stop_if_late(deadline)
            records = self.outbox.due(self.kind, now_ms=self._now_ms(), limit=per_round)
            if not records:
                return
            if spec.max_batch == 1:
                self._send_singles(records, report, deadline)
                continue
            for start in range(0, len(records), spec.max_batch):
                self._stop_if_late(deadline)
                settled: list[Settlement] = []
                try:
                    self._send_batch(records[start : start + spec.max_batch], report, deadline, settled)
                finally:  # also when the run stops mid-isolation: what was decided is kept
                    self._settle(settled, report)

    # ------------------------------------------------------------------------------------------ sending
    def _send_batch(
        self, records: list[OutboxRecord], report: RunReport, deadline: float, settled: list[Settlement]
    ) -> None:
        """Send one batch and append its settlements; on a caller error split it to isolate refused records."""
        try:
            params = self.spec.api.params([r.payload for r in records])
        except ValidationError as exc:  # stored before a model change, or written by hand: never sent
            reason = f"stored payload no longer valid: {_describe_invalid(exc)}"
            if len(records) == 1:
                logger.warning("record not sent", extra={"record_id": records[0].record_id, "reason": reason})
                settled.append(Dead(records[0], reason, sent=False))
            else:
                self._isolate(records, reason, report, deadline, settled)
            return
        if self._time_left(deadline) < self.config.deadline_margin_s:
            return  # too late to start a call (say, mid-isolation): not settled, so the records stay due
        try:
            body = self._call(records, params, report, deadline)
        except TopPermanentError as exc:
            self._isolate(records, _describe(exc), report, deadline, settled)
            return
        except (TopTransportError, TopError) as exc:  # transient, after the client's own retries
            settled.extend(self._retry_or_dead(r, _describe(exc)) for r in records)
            return
        verdict = self.spec.verdict(body)
        if verdict.refusal:
            self._isolate(records, verdict.refusal, report, deadline, settled)
            return
        settled.extend(Synced(r, body, verdict.platform_order_id) for r in records)

    def _isolate(
        self, records: list[OutboxRecord], reason: str, report: RunReport, deadline: float, settled: list[Settlement]
    ) -> None:
        if len(records) == 1:
            logger.warning(
                "record refused by the platform", extra={"record_id": records[0].record_id, "reason": reason}
            )
            settled.append(Dead(records[0], reason))
            return
        if self._time_left(deadline) < self.config.deadline_margin_s:
            return  # not settled: they stay due and the next run splits again
        middle = len(records) // 2
        self._send_batch(records[:middle], report, deadline, settled)
        self._send_batch(records[middle:], report, deadline, settled)

    def _send_singles(self, records: list[OutboxRecord], report: RunReport, deadline: float) -> None:
        """One record per call (external orders), a bounded number in flight, settled together."""
        stops: list[_StopRun] = []

        def one(record: OutboxRecord) -> list[Settlement]:
            settled: list[Settlement] = []
            if stops or self._time_left(deadline) < self.config.deadline_margin_s:
                return settled
            try:
                self._send_batch([record], report, deadline, settled)
            except _StopRun as stop:
                stops.append(stop)
            return settled

        with ThreadPoolExecutor(max_workers=self.config.external_concurrency) as pool:
            settlements = [s for batch in pool.map(one, records) for s in batch]
        self._settle(settlements, report)
        if stops:
            raise stops[0]

    def _call(
        self, records: list[OutboxRecord], params: dict[str, str], report: RunReport, deadline: float
    ) -> dict[str, Any]:
        spec = self.spec
        session = self.session_key if spec.needs_session else None
        with self._lock:  # external orders are sent from several threads
            report.calls += 1
            report.sent += len(records)
            report.batch_sizes.append(len(records))
        try:
            response = self.client.call(
                spec.method, params, session=session, deadline=deadline - self.config.deadline_margin_s / 2
            )
        except TopRateLimited as exc:
            scope = APP_BAN_SCOPE if exc.daily_quota else self.kind.value
            until = self._now_ms() + int(exc.retry_after_s * 1000)
            self.control.set_ban(scope, until_ms=until, reason=_describe(exc))
            with self._lock:
                report.rate_limited_calls += 1
                report.daily_quota_calls += 1 if exc.daily_quota else 0
            detail = f"banned for {exc.retry_after_s:g} s ({scope}): {_describe(exc)}"
            raise _StopRun(RunStatus.RATE_LIMITED, detail) from exc
        except TopSessionExpired as exc:
            self.control.set_pause(
                self.kind.value, reason=_describe(exc), fingerprint=session_fingerprint(self.session_key)
            )
            with self._lock:
                report.session_alerts += 1
            logger.error("seller session refused: sync paused until the session key changes", extra={"kind": self.kind})
            raise _StopRun(RunStatus.SESSION_EXPIRED, _describe(exc)) from exc
        with self._lock:
            report.latencies_ms.append(response.latency_ms)
        return response.body

    def _retry_or_dead(self, record: OutboxRecord, error: str) -> Settlement:
        attempts = record.attempts + 1
        if attempts >= self.config.max_attempts:
            return Dead(record, f"gave up after {attempts} attempts; last error: {error}")
        backoff = min(self.config.retry_cap_s, self.config.retry_base_s * 2**record.attempts)
        delay = backoff / 2 + self.rand() * backoff / 2
        return Retry(record, error, self._now_ms() + int(delay * 1000))

    # ------------------------------------------------------------------------------------------ settling
    def _settle(self, settlements: Sequence[Settlement], report: RunReport) -> None:
        if not settlements:
            return
        self.outbox.settle(settlements)
        for settlement in settlements:
            if isinstance(settlement, Synced):
                report.synced += 1
            elif isinstance(settlement, Retry):
                report.retried += 1
            else:
                report.dead += 1

    # ------------------------------------------------------------------------------------------ gates
    def _check_ban(self) -> None:
        for scope in (APP_BAN_SCOPE, self.kind.value):
            until = self.control.ban_until(scope)
            if until is not None:
                seconds = max(0, until - self._now_ms()) / 1000
                raise _StopRun(RunStatus.BANNED, f"rate-limit ban ({scope}) for {seconds:.0f} more s")

    def _check_session(self, report: RunReport) -> None:
        if not self.spec.needs_session:
            return
        if not self.session_key:
            report.session_alerts += 1
            raise _StopRun(RunStatus.PAUSED, "TOP_SESSION_KEY (secret key top_session_key) is not set")
        pause = self.control.pause(self.kind.value)
        if pause is None:
            return
        same_key = pause.fingerprint == session_fingerprint(self.session_key)
        if same_key and self._now_ms() - pause.since_ms < self.config.session_recheck_s * 1000:
            detail = f"seller session refused: {pause.reason}; waiting for a new session key"
            raise _StopRun(RunStatus.PAUSED, detail)
        # A new key, or time to probe the old one again: try; a refusal pauses again.
        self.control.clear_pause(self.kind.value)


def _describe(exc: BridgeError) -> str:
    if isinstance(exc, TopError):
        parts = [str(p) for p in (exc.code, exc.sub_code) if p]
        text = f"{' '.join(parts)}: {exc.sub_msg or exc.msg or ''}".strip()
        return text[:500]
    return str(exc)[:500]


def _describe_invalid(error: ValidationError, limit: int = 3) -> str:
    problems = [f"{field_path(p['loc'])}: {p['msg']}" for p in error.errors(include_url=False)[:limit]]
    more = error.error_count() - limit
    return "; ".join(problems) + (f"; and {more} more" if more > 0 else "")
