"""How a sync run behaves: attempts, backoff, time margins, concurrency (``SyncConfig``), from settings."""

from __future__ import annotations

from dataclasses import dataclass

from ..settings import Settings

__all__ = ["SyncConfig"]


@dataclass(frozen=True)
class SyncConfig:
    max_attempts: int = 8  # sends that failed transiently before a record is settled dead
    retry_base_s: float = 30.0  # record backoff: base * 2**attempts, full jitter above half, capped
    retry_cap_s: float = 3600.0
    deadline_margin_s: float = 15.0  # no new TOP call starts with less Lambda time left than this
    lease_margin_s: float = 30.0  # the lease outlives the invocation's deadline by this much
    # External orders in flight at once (one per call). Measured on the local sandbox at 50 ms latency: 18 orders/s
    # at 1, 62 at 4, 107 at 8, 157-165 at 16, no more at 20 (and above 20 the TOP client's 20 pooled connections
    # churn). A ban costs one refused call per worker (all workers halt on the first refusal), so 16 also bounds
    # the calls that meet a ban at 16. The deployed default is SYNC_EXTERNAL_CONCURRENCY's (settings).
    external_concurrency: int = 16
    session_recheck_s: float = 3600.0  # a paused flow probes the same session again after this long
    # Single-record APIs go in rounds of external_concurrency * round_per_worker records: each round is read,
    # sent and settled together (larger: fewer DynamoDB requests per record, more records held per round).
    round_per_worker: int = 4
    call_timeout_s: float = 10.0  # the client's attempt timeout (TOP_TIMEOUT_S), doubled per unknown outcome
    call_timeout_cap_s: float = 40.0  # ... up to this, and never past the deadline

    @classmethod
    def from_settings(cls, settings: Settings) -> SyncConfig:
        return cls(
            max_attempts=settings.sync_max_attempts,
            retry_base_s=settings.sync_retry_base_s,
            deadline_margin_s=settings.sync_deadline_margin_s,
            external_concurrency=settings.sync_external_concurrency,
            session_recheck_s=settings.sync_session_recheck_s,
            call_timeout_s=float(settings.top_timeout_s),
            call_timeout_cap_s=4.0 * settings.top_timeout_s,
        )

    @property
    def settle_reserve_s(self) -> float:
        """Lambda time kept for settling: calls end this long before the deadline."""
        return self.deadline_margin_s / 3
