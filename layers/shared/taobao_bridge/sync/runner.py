"""One scheduled sync run for one kind of record: due records from the outbox, batched into signed TOP calls,
each record settled synced, retried later or dead (docs/ARCHITECTURE.md, "Outbound flow").

A run
1. honours an operator's pause of the flow, a stored rate-limit ban and, for APIs that need the seller session,
   a stored session pause;
2. takes the kind's lease (a conditional write), so overlapping runs never send the same record concurrently;
3. sends batches of up to the API's limit while the Lambda has time left, and settles each batch;
4. releases the lease.

A refused batch (``isv.*`` or ``result.success=false``) is split in halves until the bad records are alone:
the good ones are synced, the bad ones settled dead with the platform's code and message. An answer nobody can
read settles its records ``unconfirmed`` (delivered, verdict unknown) with the answer kept: never re-sent
automatically, never blocking the records behind them. A record that keeps failing transiently is retried later
with backoff, and after ``max_attempts`` settled dead, or ``unconfirmed`` if any of its sends may have been
applied. A worker that dies between send and settle leaves its records due: the lease expires and the next run
sends them again with the same business keys.

Overlap: while one batch is at the platform the next one is read and the previous one settled (``pipeline.py``:
the records a run holds are never read twice, and everything sent is settled before the run returns).

Time: no TOP call (first send, isolation half or client retry) starts with less than ``deadline_margin_s`` of
Lambda time left, and no call runs into the last third of that margin, which is kept for settling. Settle writes
that fail are retried with backoff inside that reserve; if they still fail the run stops and says so, and only the
unsettled records stay due.

The runner logs but emits no metrics: the handler emits them from the ``RunReport`` it returns.
"""

from __future__ import annotations

import hashlib
import random
import threading
import time
import uuid
from collections.abc import Callable, Collection, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from aws_lambda_powertools import Logger
from pydantic import ValidationError

from ..clock import Clock, system_clock
from ..errors import (
    BridgeError,
    StorageError,
    TopError,
    TopPermanentError,
    TopRateLimited,
    TopSessionExpired,
    TopTransportError,
    UnknownOutcome,
    UnreadableAnswer,
)
from ..kinds import KINDS, Kind, KindSpec
from ..models.api import Verdict
from ..models.common import field_path
from ..outbox.records import Dead, OutboxRecord, Retry, Settlement, Synced, Unconfirmed
from .config import SyncConfig
from .pipeline import BatchPipeline
from .ports import SyncControl, SyncOutbox, TopCaller
from .report import RunReport, RunStatus

__all__ = ["APP_BAN_SCOPE", "DAILY_QUOTA_PROBE_S", "SyncRunner", "session_fingerprint"]

logger = Logger(child=True)

APP_BAN_SCOPE = "app"  # the daily quota (accesscontrol.limited-by-app-access-count) stops every API
DAILY_QUOTA_PROBE_S = 3600.0  # a daily-quota ban is stored for at most this long, then one call probes it


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
    sleep: Callable[[float], None] = time.sleep
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)
    _halt: threading.Event = field(default_factory=threading.Event, init=False, repr=False)  # set: no new call

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
            self._check_operator_pause()
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
                self._release(owner)
        except _StopRun as stop:
            report.status, report.detail = stop.status, stop.detail
        except StorageError as exc:  # reading bans, pauses, the lease or due records: nothing was sent after it
            logger.error("sync run stopped: storage failed", extra={"kind": self.kind, "error": str(exc)})
            report.status, report.detail = RunStatus.STORAGE_FAILED, str(exc)[:500]
        report.duration_ms = round((self.monotonic() - started) * 1000, 1)
        logger.info("sync run finished", extra={"report": report.as_dict()})
        return report

    def _release(self, owner: str) -> None:
        # A lease that cannot be released expires by itself; its failure must not hide why the run ended.
        try:
            self.control.release_lease(self.kind.value, owner)
        except StorageError as exc:
            logger.warning("lease not released; it expires by itself", extra={"kind": self.kind, "error": str(exc)})

    def _time_left(self, deadline: float) -> float:
        return deadline - self.monotonic()

    def _stop_if_late(self, deadline: float) -> None:
        if self._time_left(deadline) < self.config.deadline_margin_s:
            raise _StopRun(RunStatus.DEADLINE, "stopped before the Lambda deadline; the rest stays due")

    def _drain(self, report: RunReport, deadline: float) -> None:
        """Batches through the pipeline (pipeline.py): batch N at the platform while N+1 is read and N-1
        settled. A batch is up to the API's limit, or for single-record APIs a round of concurrent calls."""
        self._halt.clear()
        singles = self.spec.max_batch == 1
        size = self.config.external_concurrency * self.config.round_per_worker if singles else self.spec.max_batch

        def read(held: Collection[OutboxRecord]) -> list[OutboxRecord]:
            return self.outbox.due(self.kind, now_ms=self._now_ms(), limit=size, held=held)

        def send(records: list[OutboxRecord], settled: list[Settlement]) -> None:
            if singles:
                self._send_singles(records, report, deadline, settled)
            else:
                self._send_batch(records, report, deadline, settled)

        BatchPipeline(
            read=read,
            send=send,
            settle=lambda settlements: self._settle(settlements, report, deadline),
            check_time=lambda: self._stop_if_late(deadline),
        ).run()

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
        except UnreadableAnswer as exc:
            logger.warning("TOP answer unreadable: records unconfirmed", extra={"records": len(records)})
            settled.extend(Unconfirmed(r, f"answer unreadable: {_describe(exc)}", exc.answer) for r in records)
            return
        except (TopTransportError, TopError) as exc:  # transient, after the client's own retries
            unknown = isinstance(exc, UnknownOutcome)
            settled.extend(self._retry_or_give_up(r, _describe(exc), unknown) for r in records)
            return
        try:
            verdict = self.spec.verdict(body)
        except Exception as exc:  # a verdict must never stop a run: the call was applied, whatever it says
            logger.exception("verdict failed on an accepted answer")
            verdict = Verdict(unreadable=f"verdict failed: {type(exc).__name__}")
        if verdict.unreadable:
            logger.warning("TOP answer not understood: records unconfirmed", extra={"reason": verdict.unreadable})
            settled.extend(Unconfirmed(r, f"answer not understood: {verdict.unreadable}", body) for r in records)
            return
        if verdict.refusal:
            self._isolate(records, verdict.refusal, report, deadline, settled)
            return
        if self.spec.api.answers_order_id and verdict.platform_order_id is None:
            # Taken, but without the id merchants need. Not synced (that would hide it), not re-sent on its own (an
            # answer shape changed for good would repeat every order's call): unconfirmed with the answer kept, the
            # alarm fires, and an operator's retry is safe because the platform dedupes and answers the same id.
            reason = (
                "taken, but the answer holds no readable platform order id (answer kept); retrying it is safe: the "
                "platform dedupes on idempotent_id and answers the same id"
            )
            settled.extend(Unconfirmed(r, reason, body, unknown_outcome=False) for r in records)
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

    def _send_singles(
        self, records: list[OutboxRecord], report: RunReport, deadline: float, settled: list[Settlement]
    ) -> None:
        """One record per call (external orders), a bounded number in flight; the round is settled together.
        A failure of one call never cancels the others. A ban or a refused session halts every worker at once
        (``_halt``, set before the ban is stored): calls already in flight finish, no worker starts another."""
        stops: list[_StopRun] = []
        failures: list[Exception] = []

        def one(record: OutboxRecord) -> list[Settlement]:
            decided: list[Settlement] = []
            if self._halt.is_set() or self._time_left(deadline) < self.config.deadline_margin_s:
                return decided
            try:
                self._send_batch([record], report, deadline, decided)
            except _StopRun as stop:
                stops.append(stop)
            except Exception as exc:  # e.g. storing a ban failed: this record stays due, the others go on
                logger.exception("external order not settled", extra={"record_id": record.record_id})
                failures.append(exc)
            return decided

        with ThreadPoolExecutor(max_workers=self.config.external_concurrency) as pool:
            settled.extend(s for decided in pool.map(one, records) for s in decided)
        if stops:
            raise stops[0]
        if failures:
            raise failures[0]

    def _call(
        self, records: list[OutboxRecord], params: dict[str, str], report: RunReport, deadline: float
    ) -> dict[str, Any]:
        spec = self.spec
        session = self.session_key if spec.needs_session else None
        with self._lock:  # external orders are sent from several threads
            report.calls += 1
            report.sent += len(records)
            report.batch_sizes.append(len(records))
        # A batch whose last send timed out gets longer to answer (the client's own timeout otherwise): a slow
        # platform then makes progress instead of applying the same records again and again.
        unknowns = max(r.unknown_outcomes for r in records)
        timeout = min(self.config.call_timeout_cap_s, self.config.call_timeout_s * 2**unknowns) if unknowns else None
        try:
            response = self.client.call(
                spec.method,
                params,
                session=session,
                deadline=deadline - self.config.settle_reserve_s,
                start_by=deadline - self.config.deadline_margin_s,
                retry_unknown=spec.api.idempotent,
                timeout_s=timeout,
            )
        except TopRateLimited as exc:
            self._halt.set()  # first: the other workers stop taking orders while the ban is stored
            scope = APP_BAN_SCOPE if exc.daily_quota else self.kind.value
            # The daily quota would end at midnight (UTC+8); probing hourly finds a quota raised meanwhile.
            wait_s = min(exc.retry_after_s, DAILY_QUOTA_PROBE_S) if exc.daily_quota else exc.retry_after_s
            until = self._now_ms() + int(wait_s * 1000)
            self.control.set_ban(scope, until_ms=until, reason=_describe(exc))
            with self._lock:
                report.rate_limited_calls += 1
                report.daily_quota_calls += 1 if exc.daily_quota else 0
            detail = f"banned for {wait_s:g} s ({scope}): {_describe(exc)}"
            raise _StopRun(RunStatus.RATE_LIMITED, detail) from exc
        except TopSessionExpired as exc:
            self._halt.set()
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

    def _retry_or_give_up(self, record: OutboxRecord, error: str, unknown: bool) -> Settlement:
        """Due again later with backoff; after ``max_attempts``, dead, or unconfirmed when a send of it may have
        been applied (``unknown`` now, or earlier)."""
        attempts = record.attempts + 1
        if attempts >= self.config.max_attempts:
            unknowns = record.unknown_outcomes + (1 if unknown else 0)
            if unknowns:
                reason = f"gave up after {attempts} attempts, {unknowns} with unknown outcome; last error: {error}"
                return Unconfirmed(record, reason, None, unknown_outcome=unknown)
            return Dead(record, f"gave up after {attempts} attempts; last error: {error}")
        backoff = min(self.config.retry_cap_s, self.config.retry_base_s * 2**record.attempts)
        delay = backoff / 2 + self.rand() * backoff / 2
        return Retry(record, error, self._now_ms() + int(delay * 1000), unknown_outcome=unknown)

    # ------------------------------------------------------------------------------------------ settling
    def _settle(self, settlements: Sequence[Settlement], report: RunReport, deadline: float) -> None:
        """Write the settlements, retrying with backoff while the Lambda has time; repeating a settle is
        harmless. If it still fails, stop the run saying so: these records stay due (and are sent again)."""
        if not settlements:
            return
        failures = 0
        while True:
            try:
                self.outbox.settle(settlements)
                break
            except StorageError as exc:
                failures += 1
                delay = min(2.0, 0.1 * 2 ** (failures - 1)) * (0.5 + self.rand() / 2)
                if self._time_left(deadline) - delay < 1.0:
                    logger.error("settling failed", extra={"records": len(settlements), "error": str(exc)})
                    raise _StopRun(
                        RunStatus.STORAGE_FAILED,
                        f"settling {len(settlements)} records failed after {failures} tries: {str(exc)[:300]}; "
                        "they stay due and will be sent again",
                    ) from exc
                logger.warning("settling failed; retrying", extra={"try": failures, "error": str(exc)})
                self.sleep(delay)
        with self._lock:  # settles run on the pipeline's thread while calls are counted on others
            for settlement in settlements:
                if isinstance(settlement, Synced):
                    report.synced += 1
                elif isinstance(settlement, Retry):
                    report.retried += 1
                elif isinstance(settlement, Unconfirmed):
                    report.unconfirmed += 1
                else:
                    report.dead += 1

    # ------------------------------------------------------------------------------------------ gates
    def _check_operator_pause(self) -> None:
        # First: an operator's stop holds whatever else is stored, and costs the run nothing (no lease taken).
        pause = self.control.operator_pause(self.kind.value)
        if pause is not None:
            raise _StopRun(RunStatus.PAUSED_BY_OPERATOR, f"paused by an operator: {pause.reason}")

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
