"""One chaos run from start to finish (``run_chaos``): a local stack on free ports with no background schedules;
the merchant posting the workload through the intake API while DynamoDB faults hit the intake function's client;
chaos rounds of real sync invocations in worker processes under the round's sandbox faults, DynamoDB faults and
worker kills; then every fault off and clean rounds until nothing is due; finally what the outbox holds for each
record and every call the sandbox saw, for ``chaos.report`` to judge.
"""

from __future__ import annotations

import os
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bridge_local.stack import LocalStack, StackConfig
from bridge_local.top_sandbox import Faults, RecordedCall
from taobao_bridge import dynamo
from taobao_bridge.dynamo import from_item, to_item
from taobao_bridge.kinds import KINDS, Kind
from taobao_bridge.outbox import OutboxStore
from taobao_bridge.settings import ENV, LOCAL_DEFAULTS

from .dynamo_faults import DynamoFaults, DynamoFaultSettings
from .plan import ChaosConfig, FaultClass, InvocationPlan, RoundPlan, Variant, odd_for_good, plan_round
from .runs import Invocation, WorkerPool, worker_environment
from .timeshift import bring_backoffs_forward, due_counts, expire_leases, lift_daily_quota, wait_for_bans
from .workload import Ledger, Merchant, Workload, build_workload

__all__ = ["ChaosRun", "StoredRecord", "run_chaos"]

QUIET = {"POWERTOOLS_LOG_LEVEL": "WARNING", "POWERTOOLS_METRICS_DISABLED": "true"}


@dataclass(frozen=True)
class StoredRecord:
    """A record as the outbox holds it at the end; ``state`` None when there is no such item."""

    state: str | None
    dead_reason: str | None = None
    platform_order_id: int | None = None
    attempts: int = 0


@dataclass
class ChaosRun:
    """Everything a run produced, for ``chaos.report``."""

    config: ChaosConfig
    workload: Workload
    ledger: Ledger
    invocations: list[Invocation]
    calls: list[RecordedCall]
    records: dict[tuple[Kind, str], StoredRecord]
    round_lines: list[str]
    clean_rounds: int
    timeshift: Counter[str]
    intake_dynamo_faults: list[str]
    wall_s: float
    intake_s: float
    started_at: datetime
    cold_starts: int = 0
    notes: list[str] = field(default_factory=list)


class _Session:
    """The seller session key the workers use and the sandbox accepts; rotated after an expiry."""

    def __init__(self) -> None:
        self.key = LOCAL_DEFAULTS[ENV.TOP_SESSION_KEY]
        self.rotations = 0

    def rotate(self, sandbox: Any) -> None:
        self.rotations += 1
        self.key = f"chaos-session-{self.rotations}"
        sandbox.set_session_key(self.key)


def read_records(client: Any, table: str, ids: dict[Kind, set[str]]) -> dict[tuple[Kind, str], StoredRecord]:
    """Each record's stored state, read strongly consistently 100 at a time. The attributes are read as stored
    (``dynamo.from_item``), so a state this version of the package does not know is reported as it is."""
    keys = [(kind, record_id) for kind, found in ids.items() for record_id in found]
    items: dict[str, dict[str, Any]] = {}
    for start in range(0, len(keys), 100):
        request: dict[str, Any] = {
            table: {
                "Keys": [to_item({"pk": f"{kind.value}#{record_id}"}) for kind, record_id in keys[start : start + 100]],
                "ConsistentRead": True,
            }
        }
        while request:
            answer = client.batch_get_item(RequestItems=request)
            items.update({item["pk"]["S"]: item for item in answer["Responses"].get(table, [])})
            request = answer.get("UnprocessedKeys") or {}
    records: dict[tuple[Kind, str], StoredRecord] = {}
    for kind, record_id in keys:
        item = items.get(f"{kind.value}#{record_id}")
        values = from_item(item) if item is not None else {}
        order_id = values.get("platform_order_id")
        records[(kind, record_id)] = StoredRecord(
            state=None if item is None else str(values.get("state", "")),  # "" is an item in no state at all
            dead_reason=values.get("dead_reason"),
            platform_order_id=int(order_id) if order_id is not None else None,
            attempts=int(values.get("attempts", 0)),
        )
    return records


def _summary(runs: list[Invocation]) -> str:
    return " ".join(f"{run.kind}:{run.status if run.outcome == 'returned' else run.outcome}" for run in runs)


class _Run:
    """The state of one run while it goes: the stack's parts, the workers, the merchant, what happened so far."""

    def __init__(self, config: ChaosConfig, stack: LocalStack, log_path: Path, progress: Callable[[str], None]) -> None:
        self.config = config
        self.progress = progress
        self.sandbox = stack.sandbox
        self.harness = stack.dynamodb_client()  # the harness's own client: no faults
        self.table = stack.environment[ENV.OUTBOX_TABLE]
        self.workload = build_workload(config.records, config.seed, poison=FaultClass.PLATFORM in config.faults)
        self.refuse = self.workload.refuse_fault()
        self.intake_faults = DynamoFaults()
        self.intake_faults.install(dynamo.dynamodb_client())  # the client the intake function uses in this process
        if FaultClass.DYNAMODB in config.faults:
            modes = ("throttle", "connection", "applied_timeout")
            self.intake_faults.configure(DynamoFaultSettings(rate=config.dynamo_rate, seed=config.seed, modes=modes))
        self.session = _Session()
        overrides = {
            **QUIET,
            ENV.SYNC_MAX_ATTEMPTS: str(config.max_attempts),
            ENV.SYNC_RETRY_BASE_S: "1",
            ENV.SYNC_DEADLINE_MARGIN_S: "1",
            "CHAOS_TOP_TIMEOUT_S": str(config.top_timeout_s),
            "TOP_TIMEOUT_S": str(max(1, round(config.top_timeout_s))),  # read by packages that have the setting
        }
        self.pool = WorkerPool(config.workers, worker_environment(dict(os.environ), overrides), log_path)
        store = OutboxStore(self.table, client=self.harness)
        self.merchant = Merchant(stack.url, stored=lambda kind, record_id: store.get(kind, record_id) is not None)
        self.invocations: list[Invocation] = []
        self.round_lines: list[str] = []
        self.timeshift: Counter[str] = Counter()
        self.notes: list[str] = []
        self.intake_faults_taken: list[str] = []
        self.clean_rounds = 0

    def _invoke(self, plans: list[InvocationPlan], prefix: str) -> list[Invocation]:
        runs = self.pool.run(plans, prefix, {ENV.TOP_SESSION_KEY: self.session.key})
        self.invocations += runs
        return runs

    def chaos_rounds(self) -> None:
        """The rounds under faults. Records arrive in waves, one per round, so that every round has fresh work
        under its faults; the last two rounds get no new wave and work on what is left."""
        config = self.config
        waves = self.workload.waves(max(1, config.rounds - 2))
        previous: RoundPlan | None = None
        session_dirty = False
        for number in range(1, config.rounds + 1):
            if number <= len(waves):
                self.merchant.post(waves[number - 1])
                if not config.overlap_intake:
                    self.merchant.wait()
            plan = plan_round(config, number)
            if previous is not None and previous.daily_quota and not plan.daily_quota:
                self.timeshift["daily-quota bans lifted"] += lift_daily_quota(self.harness, self.table)
            if session_dirty and not plan.session_expired:
                self.session.rotate(self.sandbox)  # the seller authorised the app again: a new key
            session_dirty = plan.session_expired  # replaced in the next round without expiry, or before cleaning
            self.sandbox.replace_faults(Faults.from_dict({"refuse": self.refuse, **plan.sandbox}))
            runs = self._invoke(plan.invocations, f"r{number}")
            self.merchant.wait()
            if config.fast_forward:  # every run of the round has ended: the leases they left are stale
                self.timeshift["leases expired early"] += expire_leases(self.harness, self.table, list(Kind))
            line = f"round {number:>2} [{', '.join(plan.labels) or 'no faults'}] {_summary(runs)}"
            self.round_lines.append(line)
            self.progress(line)
            previous = plan
        ledger = self.merchant.wait()
        self.progress(f"intake done in {ledger.elapsed_s:.1f} s: {ledger.requests} requests, {dict(ledger.statuses)}")
        if session_dirty:
            self.session.rotate(self.sandbox)

    def clean_up_faults(self) -> None:
        """Every fault off but the platform's refusals and (odd class) its answer shape changed for good; the
        daily quota lifted; short bans waited out."""
        self.intake_faults_taken = self.intake_faults.taken()
        self.intake_faults.configure(DynamoFaultSettings())
        faults: dict[str, Any] = {"refuse": self.refuse}
        changed = odd_for_good(self.config)
        if changed is not None:  # the platform's new answer shape is not a fault that passes
            kind, shape, since = changed
            faults["odd_answer"] = {KINDS[kind].method: shape}
            self.notes.append(f"from round {since} to the end, {kind} answers were shaped {shape!r} (odd class)")
        self.sandbox.replace_faults(Faults.from_dict(faults))
        self.timeshift["daily-quota bans lifted"] += lift_daily_quota(self.harness, self.table)
        self.timeshift["seconds waited for bans"] += round(wait_for_bans(self.harness, self.table))

    def clean_rounds_until_drained(self) -> None:
        """Fault-free rounds until nothing is due, three rounds bring no progress, or the configured limit."""
        config = self.config
        still_due: list[int] = []
        while self.clean_rounds < config.clean_rounds:
            self.clean_rounds += 1
            if config.fast_forward:
                self.timeshift["leases expired early"] += expire_leases(self.harness, self.table, list(Kind))
                self.timeshift["backoffs brought forward"] += bring_backoffs_forward(self.harness, self.table)
            no_faults = DynamoFaultSettings()
            runs = self._invoke(
                [InvocationPlan(kind, Variant.NORMAL, config.clean_timeout_s, no_faults) for kind in Kind],
                f"c{self.clean_rounds}",
            )
            still_due.append(sum(due_counts(self.harness, self.table).values()))
            self.progress(f"clean {self.clean_rounds:>2} {_summary(runs)} | due {still_due[-1]}")
            if not still_due[-1]:
                return
            if len(still_due) > 3 and still_due[-1] >= still_due[-4]:
                self.notes.append(f"clean rounds stopped after {self.clean_rounds}: no progress in the last three")
                return
            if not config.fast_forward:
                time.sleep(5.0)  # let leases and backoffs run out on their own

    def collect(self, started: float, started_at: datetime) -> ChaosRun:
        """What the outbox holds for every record the merchant sent, and every call the sandbox received."""
        ledger = self.merchant.ledger
        ids = {
            kind: set(ledger.acknowledged[kind]) | ledger.unacknowledged[kind] | set(self.workload.poison[kind])
            for kind in Kind
        }
        return ChaosRun(
            config=self.config,
            workload=self.workload,
            ledger=ledger,
            invocations=self.invocations,
            calls=self.sandbox.calls(),
            records=read_records(self.harness, self.table, ids),
            round_lines=self.round_lines,
            clean_rounds=self.clean_rounds,
            timeshift=self.timeshift,
            intake_dynamo_faults=self.intake_faults_taken,
            wall_s=time.monotonic() - started,
            intake_s=ledger.elapsed_s,
            started_at=started_at,
            cold_starts=self.pool.cold_starts,
            notes=self.notes,
        )

    def close(self) -> None:
        self.merchant.close()
        self.pool.close()


def run_chaos(config: ChaosConfig, log_path: Path, progress: Callable[[str], None] = lambda line: None) -> ChaosRun:
    """Run ``config`` end to end; the functions' and workers' logs go to ``log_path``."""
    started_at = datetime.now(UTC)
    started = time.monotonic()
    stack_config = StackConfig(port=0, dynamodb_port=0, sandbox_port=0, run_schedules=False, overrides=dict(QUIET))
    with LocalStack(stack_config) as stack:
        run = _Run(config, stack, log_path, progress)
        try:
            run.chaos_rounds()
            run.clean_up_faults()
            run.clean_rounds_until_drained()
            return run.collect(started, started_at)
        finally:
            run.close()
