"""Where one kind's sync throughput tops out in AWS, and what a sharded design would reach (pure arithmetic).

Three limits, each in records per second, sustained:

- the due-index partition: every due record of a kind has the same index partition key (``due_kind``), and one
  partition key value takes at most 1,000 write units per second; each record writes its index entry when it is
  accepted and removes it when it is settled, so ``1000 / index_writes_per_record``;
- the schedule: one run per kind per period (the lease keeps runs apart), sending until ``deadline_margin_s``
  before its timeout, so ``in_run_rate * (timeout_s - deadline_margin_s) / period_s``;
- the app's TOP quota: ``calls_per_day * records_per_call / 86400``.

A sharded design (``due_kind = <kind>#<shard>``, one lease and one scheduled run per shard) multiplies the first
two by the shard count; the app's quota is the app's, whatever the shards.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Ceiling", "CeilingInputs", "ceilings"]

PARTITION_WRITE_UNITS_PER_S = 1000.0  # DynamoDB's per-partition write limit (one partition key value)
SECONDS_PER_DAY = 86_400


@dataclass(frozen=True)
class CeilingInputs:
    index_writes_per_record: float  # measured: due-index write units per record (added + removed)
    in_run_records_per_s: float  # measured: records per second while a run is sending
    records_per_call: int  # the API's batch limit
    top_calls_per_day: float  # the app's TOP quota (assumed: it is set per app by the platform)
    timeout_s: float = 55.0  # SyncTimeoutSeconds
    deadline_margin_s: float = 15.0  # no call starts with less than this left
    period_s: float = 60.0  # SyncScheduleExpression rate(1 minute)
    shards: int = 10


@dataclass(frozen=True)
class Ceiling:
    index_partition: float
    schedule: float
    top_quota: float
    shards: int

    @property
    def one_kind(self) -> float:
        return min(self.index_partition, self.schedule, self.top_quota)

    @property
    def binding(self) -> str:
        limits = {"due-index partition": self.index_partition, "schedule": self.schedule, "TOP quota": self.top_quota}
        return min(limits, key=limits.__getitem__)

    @property
    def sharded(self) -> float:
        return min(self.index_partition * self.shards, self.schedule * self.shards, self.top_quota)

    @property
    def sharded_binding(self) -> str:
        limits = {
            "due-index partitions": self.index_partition * self.shards,
            "scheduled runs": self.schedule * self.shards,
            "TOP quota": self.top_quota,
        }
        return min(limits, key=limits.__getitem__)


def ceilings(inputs: CeilingInputs) -> Ceiling:
    if inputs.index_writes_per_record <= 0:
        index = float("inf")
    else:
        index = PARTITION_WRITE_UNITS_PER_S / inputs.index_writes_per_record
    sending_s = max(0.0, inputs.timeout_s - inputs.deadline_margin_s)
    schedule = inputs.in_run_records_per_s * sending_s / inputs.period_s
    quota = inputs.top_calls_per_day * inputs.records_per_call / SECONDS_PER_DAY
    return Ceiling(index, schedule, quota, inputs.shards)
