"""Sections 2 to 4 as rows: throughput and ratios, cost per record, scale and the ceiling in AWS."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from taobao_bridge.kinds import KINDS, Kind

from .ceiling import CeilingInputs, ceilings
from .cost import PRICES, dollars_per_million, lambda_gb_seconds
from .report import Row, Target, fmt
from .sync import KindRun, OneByOne, SyncRuns

__all__ = ["Cost", "cost_of", "sync_rows"]

NAMES = {Kind.WRITEOFF: "writeoffs", Kind.RISK: "risk records", Kind.EXTERNAL_ORDER: "external orders"}
SINGULAR = {Kind.WRITEOFF: "writeoff", Kind.RISK: "risk record", Kind.EXTERNAL_ORDER: "external order"}
INDEX = "index due-index"


@dataclass(frozen=True)
class Cost:
    writes: Counter[str]  # write units by cause, accept and sync together
    reads: Counter[str]
    requests: Counter[str]
    records: int
    gb_seconds: float  # sync runs and intake calls
    invocations: int

    @property
    def writes_per_record(self) -> float:
        return sum(self.writes.values()) / self.records

    @property
    def reads_per_record(self) -> float:
        return sum(self.reads.values()) / self.records

    def dollars(self) -> dict[str, float]:
        return dollars_per_million(
            write_units_per_record=self.writes_per_record,
            read_units_per_record=self.reads_per_record,
            gb_seconds_per_record=self.gb_seconds / self.records,
            invocations_per_record=self.invocations / self.records,
        )

    def breakdown(self, units: Counter[str]) -> str:
        parts = sorted(units.items(), key=lambda kv: -kv[1])
        return " + ".join(f"{cause} {value / self.records:.3g}" for cause, value in parts if value)


def cost_of(run: KindRun) -> Cost:
    def merged(part: str) -> Counter[str]:
        total: Counter[str] = Counter()
        for units in (run.accept_units, run.drain_units):
            total.update(units.get(part, {}))
        return total

    # The intake function's duration is approximated by each POST's round trip (an upper bound).
    intake_ms = [run.accept_s * 1000 / run.accept_posts] * run.accept_posts
    gb_seconds = lambda_gb_seconds(run.run_durations_ms, run.memory_mb) + lambda_gb_seconds(
        intake_ms, run.intake_memory_mb
    )
    invocations = len(run.run_durations_ms) + run.accept_posts
    return Cost(merged("writes"), merged("reads"), merged("requests"), run.records, gb_seconds, invocations)


def _ratio(numerator: float | None, denominator: float | None) -> float | None:
    return numerator / denominator if numerator and denominator else None


def _one_by_one_row(section: str, figure: str, result: OneByOne, how: str) -> Row:
    if result.rate is None:
        missing = result.problem or f"failed: {'; '.join(result.failures[:2])}"
        return Row(section, figure, None, "records/s", how, missing=missing)
    return Row(section, figure, result.rate, "records/s", f"{how}; {result.records} in {result.seconds:.1f} s")


def _waits(run: KindRun) -> str:
    wall_ms = run.drain_s * 1000
    busy = run.worker["dynamodb"]["busy_ms"]
    counts = run.worker["dynamodb"]["counts"]
    parts = [
        f"{op} {ms / wall_ms:.0%} ({counts.get(op, 0)} requests)"
        for op, ms in sorted(busy.items(), key=lambda kv: -kv[1])
    ]
    top = run.worker["top_busy_ms"] / wall_ms
    return f"TOP calls {top:.0%} ({run.worker['top_requests']} requests); " + ", ".join(parts)


def throughput_rows(runs: SyncRuns) -> list[Row]:
    section = f"2. Sync throughput (TOP gateway + {runs.options.latency_ms} ms per answer)"
    rows: list[Row] = []
    naive_how = "bench.naive: one record per signed call, sequential, one UpdateItem after each call"
    for kind, run in runs.kinds.items():
        name = NAMES[kind]
        extra = f", {runs.external_concurrency} in flight" if kind is Kind.EXTERNAL_ORDER else ""
        how = (
            f"{run.records} accepted over the intake API ({run.accept_s:.1f} s), drained by the scheduled handler in a "
            f"child process: {len(run.worker['runs'])} run(s) back to back, {run.top_calls} TOP calls{extra}, "
            f"{run.drain_s:.1f} s"
        )
        rows.append(Row(section, f"{name} through the project ({run.records:,})", run.rate, "records/s", how))
        naive = runs.naive.get(kind)
        label = "sequential script" if kind is Kind.EXTERNAL_ORDER else "naive script"
        if naive is not None:
            rows.append(_one_by_one_row(section, f"{name}, {label} ({naive.records} records)", naive, naive_how))
            target = None
            if kind is Kind.WRITEOFF:
                target = Target(">=", 100, "×")
            elif kind is Kind.EXTERNAL_ORDER:
                target = Target(">=", 10, "×")
            why = ""
            if kind is Kind.WRITEOFF:
                why = (
                    "the drain waits on DynamoDB, not on the platform (moto answers one request at a time, so "
                    f"parallel requests queue there): {_waits(run)}"
                )
            elif kind is Kind.EXTERNAL_ORDER:
                flight = runs.external_concurrency
                why = f"one record per call, {flight} in flight: at most about {flight}× a sequential sender"
            ratio = _ratio(run.rate, naive.rate)
            rows.append(
                Row(section, f"{name}: project ÷ {label}", ratio, "×", "records/s ÷ records/s, same run", target, why)
            )
        if kind is Kind.WRITEOFF:
            tb = runs.taobaopy
            how = (
                "taobaopy 6.0.1 in .venv-bench-taobaopy, TZ=Asia/Shanghai FORCED (it stamps host-local time); "
                f"with TZ=UTC the gateway answered: {tb.probe or 'not run'}; one UpdateItem after each call"
            )
            rows.append(_one_by_one_row(section, f"writeoffs, taobaopy one per call ({tb.records} records)", tb, how))
            rows.append(Row(section, "writeoffs: project ÷ taobaopy", _ratio(run.rate, tb.rate), "×", "same run"))
            wall_ms = run.drain_s * 1000
            dynamo_ms = sum(run.worker["dynamodb"]["busy_ms"].values())
            how = "busy time ÷ the drain's wall time (requests in parallel overlap, so shares can pass 100 %): "
            rows.append(
                Row(
                    section,
                    "writeoff drain: time in TOP calls",
                    run.worker["top_busy_ms"] / wall_ms * 100,
                    "%",
                    how + _waits(run),
                )
            )
            rows.append(
                Row(
                    section,
                    "writeoff drain: time in DynamoDB requests",
                    dynamo_ms / wall_ms * 100,
                    "%",
                    how + _waits(run),
                )
            )
    return rows


def cost_rows(runs: SyncRuns) -> list[Row]:
    section = f"3. Cost (on-demand, {PRICES.region})"
    rows: list[Row] = []
    for kind, run in runs.kinds.items():
        cost = cost_of(run)
        one = SINGULAR[kind]
        dollars = cost.dollars()
        writeoff = kind is Kind.WRITEOFF
        rows.append(
            Row(
                section,
                f"write request units per {one}",
                cost.writes_per_record,
                "WRU",
                "from moto's requests (accept + sync): " + cost.breakdown(cost.writes),
                Target("<=", 3, "WRU") if writeoff else None,
                why="each record is written at accept (a conditional PutItem: 1), its due-index entry added and "
                "removed (2), and settled (1): the floor while every due record has its own index entry; 3 would need "
                "due work kept as one queue item per accepted batch instead of the index (not built)"
                if writeoff
                else "",
            )
        )
        rows.append(
            Row(section, f"read request units per {one}", cost.reads_per_record, "RRU", cost.breakdown(cost.reads))
        )
        rows.append(
            Row(
                section,
                f"TOP calls per 10,000 {NAMES[kind]}",
                run.top_calls / run.records * 10_000,
                "calls",
                f"{run.top_calls} signed calls for {run.records} records, batch limit {KINDS[kind].max_batch}",
            )
        )
        rows.append(
            Row(
                section,
                f"Lambda GB-seconds per 1,000 {NAMES[kind]}",
                cost.gb_seconds / run.records * 1000,
                "GB-s",
                f"sync runs {sum(run.run_durations_ms) / 1000:.1f} s × {run.memory_mb} MB (template MemorySize) + "
                f"intake {run.accept_posts} calls × {run.intake_memory_mb} MB (HTTP round trip as duration); "
                "this machine's times",
            )
        )
        parts = ", ".join(
            f"{name.replace('_', ' ')} ${value:.3g}" for name, value in dollars.items() if name != "total"
        )
        rows.append(
            Row(
                section,
                f"dollars per million {NAMES[kind]}, all in",
                dollars["total"],
                "$",
                parts,
                Target("<=", 2, "$") if writeoff else None,
                why="DynamoDB writes are most of it" if writeoff else "",
            )
        )
    return rows


def scale_rows(runs: SyncRuns, top_calls_per_day: float, shards: int) -> list[Row]:
    section = "4. Scale"
    rows: list[Row] = []
    ten = runs.kinds.get(Kind.WRITEOFF)
    big = runs.scale
    for run in (ten, big):
        if run is None:
            continue
        how = (
            f"{len(run.worker['runs'])} scheduled run(s) of {run.timeout_s:.0f} s at most, back to back (in AWS the "
            f"next one starts at the next minute); draining process's "
            f"RSS after imports {run.worker['rss_loaded_kb'] / 1024:.0f} MB; CPU {run.worker['cpu_s']:.1f} s; its "
            f"DynamoDB read timeout raised to {runs.options.read_timeout_s:g} s for moto, whose index Query reads the "
            "whole table per page"
        )
        rows.append(Row(section, f"drain {run.records:,} writeoffs: time", run.drain_s, "s", how))
        target = Target("<=", 200, "MB") if run is big else None
        why = ""
        if run is big and ten is not None:
            why = (
                f"not flat: {ten.worker['peak_rss_kb'] / 1024:.0f} MB for {ten.records:,}, so it grows with the records"
            )
        rows.append(
            Row(
                section,
                f"drain {run.records:,} writeoffs: peak RSS",
                run.worker["peak_rss_kb"] / 1024,
                "MB",
                "VmHWM of the draining process (its own peak since exec; ru_maxrss would include the benchmark's"
                " own size at the fork, which Linux keeps across exec)",
                target,
                why=why,
            )
        )
    if big is None:
        missing = "not measured: add --scale-100k (about 4 more minutes on this machine)"
        rows.append(Row(section, "drain 100,000 writeoffs: time and peak RSS", None, missing=missing))
        rows.append(Row(section, "drain 100,000 writeoffs: peak RSS", None, "MB", target=Target("<=", 200, "MB")))
    elif ten is not None:
        growth = big.drain_s / ten.drain_s
        rows.append(
            Row(
                section,
                f"time growth for {big.records // ten.records}× the records",
                growth,
                "×",
                f"CPU of the draining process grew {big.worker['cpu_s'] / ten.worker['cpu_s']:.1f}×; moto's index "
                "Query reads its whole table per page, DynamoDB's does not",
            )
        )
    for kind in (Kind.WRITEOFF, Kind.EXTERNAL_ORDER):
        run = runs.kinds.get(kind)
        if run is None:
            continue
        index_writes = run.accept_units.get("writes", {}).get(INDEX, 0) + run.drain_units.get("writes", {}).get(
            INDEX, 0
        )
        inputs = CeilingInputs(
            index_writes_per_record=index_writes / run.records,
            in_run_records_per_s=run.rate,
            records_per_call=KINDS[kind].max_batch,
            top_calls_per_day=top_calls_per_day,
            timeout_s=run.timeout_s,
            period_s=run.period_s,
            shards=shards,
        )
        limit = ceilings(inputs)
        how = (
            f"min(due-index partition 1000 WCU/s ÷ {inputs.index_writes_per_record:.2f} index writes per record = "
            f"{fmt(limit.index_partition)}; schedule {fmt(run.rate)} records/s in a run × "
            f"({inputs.timeout_s:.0f} s timeout − {inputs.deadline_margin_s:.0f} s margin) ÷ {inputs.period_s:.0f} s = "
            f"{fmt(limit.schedule)}; TOP quota {fmt(top_calls_per_day)} calls/day (assumed) × "
            f"{inputs.records_per_call} per call ÷ 86,400 = {fmt(limit.top_quota)}): bound by {limit.binding}. "
            "The in-run rate is moto's: DynamoDB answers faster"
        )
        rows.append(Row(section, f"one kind's ceiling in AWS, {NAMES[kind]}", limit.one_kind, "records/s", how))
        how = (
            f"due_kind = <kind>#<shard>, one lease and one scheduled run per shard: min({shards} × "
            f"{fmt(limit.index_partition)}, {shards} × {fmt(limit.schedule)}, {fmt(limit.top_quota)}): "
            f"bound by {limit.sharded_binding}"
        )
        rows.append(Row(section, f"sharded ({shards} shards), {NAMES[kind]}", limit.sharded, "records/s", how))
    return rows


def sync_rows(runs: SyncRuns, *, top_calls_per_day: float, shards: int) -> list[Row]:
    return [*throughput_rows(runs), *cost_rows(runs), *scale_rows(runs, top_calls_per_day, shards)]
