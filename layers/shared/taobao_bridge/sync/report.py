"""What a sync run did (``RunReport``) and how it ended (``RunStatus``): returned to the handler, which logs
the summary and emits the metrics."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

__all__ = ["RunReport", "RunStatus"]


class RunStatus(StrEnum):
    """How a run ended."""

    DONE = "done"  # nothing due is left
    DEADLINE = "deadline"  # stopped before the Lambda deadline; the rest stays due
    LEASED_ELSEWHERE = "leased_elsewhere"  # another run holds the kind's lease
    BANNED = "banned"  # a stored rate-limit ban is still running
    PAUSED = "paused"  # the seller session is missing or was refused with this key
    PAUSED_BY_OPERATOR = "paused_by_operator"  # an operator paused the flow (RunControl.set_operator_pause)
    RATE_LIMITED = "rate_limited"  # the platform banned us during this run
    SESSION_EXPIRED = "session_expired"  # the platform refused the session during this run
    STORAGE_FAILED = "storage_failed"  # DynamoDB failed (detail says which step); unsettled records stay due


@dataclass
class RunReport:
    kind: str
    status: RunStatus = RunStatus.DONE
    calls: int = 0
    sent: int = 0
    synced: int = 0
    retried: int = 0
    dead: int = 0
    unconfirmed: int = 0
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
            "unconfirmed": self.unconfirmed,
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
        if self.status is RunStatus.STORAGE_FAILED:
            values.append(("SyncStorageFailed", "Count", 1))
        values += [
            ("RecordsSent", "Count", self.sent),
            ("RecordsSynced", "Count", self.synced),
            ("RecordsRetried", "Count", self.retried),
            ("RecordsDead", "Count", self.dead),
            ("RecordsUnconfirmed", "Count", self.unconfirmed),
            ("TopCalls", "Count", self.calls),
        ]
        return values
