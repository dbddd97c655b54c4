"""Judging a chaos run (``analyse``): the figures per kind, the detail lines, the violations. ``chaos.render``
turns them into the table, the JSON and the docs section.

Per kind: accepted (the intake answered accepted or duplicate), the states they ended in, stuck (still due),
lost (acknowledged but not stored, stored in no known state, or synced although the platform never accepted
it), and re-deliveries: records the platform accepted in more than one call. A re-delivery is explained when
the outcome of the call before it was truly unknown to its sender: a timeout after processing (or any answer
its client never read), an odd or unreadable answer, a worker killed after the call or at its deadline.
Anything else is unexplained, a bug: the sender knew the platform had accepted the records and sent them
again, either because a settle write failed (its run was aborted by an injected DynamoDB fault) or with no
fault at all.
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from bridge_local.top_sandbox import RecordedCall, order_id_for
from taobao_bridge.kinds import KINDS, Kind

from .runs import Invocation
from .scenario import ChaosRun

__all__ = ["Findings", "KindFigures", "analyse"]

KNOWN_STATES = ("due", "synced", "dead", "unconfirmed")
_KILLED = {
    "killed_after_call": "killed after the call",
    "killed_at_deadline": "killed at the deadline",
    "worker_lost": "worker lost",
}
_UNKNOWN = {"timeout after processing", "answer never read", "unreadable answer", "odd answer", *_KILLED.values()}
_SETTLE_FAILED = "settle write failed"


@dataclass
class KindFigures:
    kind: str
    accepted: int = 0
    synced: int = 0
    dead: int = 0
    unconfirmed: int = 0
    stuck: int = 0
    lost: int = 0
    delivered_twice: int = 0  # records the platform accepted in more than one call
    unknown_outcome: int = 0  # ... each time after a call whose outcome the sender could not know
    unexplained: int = 0  # ... at least once although the sender knew the outcome
    after_settle_failure: int = 0  # unexplained, where the sender's run was aborted by a DynamoDB fault
    not_stored: int = 0
    no_state: int = 0
    phantom: int = 0  # synced, but the platform never accepted it
    refused: int = 0  # acknowledged records the platform was told to refuse
    refused_not_dead: int = 0
    dead_but_applied: int = 0  # dead, although the platform accepted it in some call
    wrong_order_id: int = 0  # synced external orders whose platform_order_id is not the platform's
    odd_records: int = 0  # records in calls answered in an odd shape
    odd_resent: int = 0  # ... sent again after that answer
    odd_states: Counter[str] = field(default_factory=Counter)
    unexplained_why: Counter[str] = field(
        default_factory=Counter
    )  # how the senders' runs ended (a record may count twice)
    dead_reasons: Counter[str] = field(default_factory=Counter)

    def to_dict(self) -> dict[str, Any]:
        # Not dataclasses.asdict: it rebuilds a Counter from (key, value) pairs, counting the pairs.
        return {name: dict(value) if isinstance(value, Counter) else value for name, value in vars(self).items()}

    def add(self, other: KindFigures) -> None:
        for name, value in vars(other).items():
            if isinstance(value, int):
                setattr(self, name, getattr(self, name) + value)
            elif isinstance(value, Counter):
                getattr(self, name).update(value)


@dataclass
class Findings:
    figures: dict[str, KindFigures]  # per kind, and "total"
    details: list[str]
    unexplained_examples: list[str]
    violations: list[str]
    injected: dict[str, int]  # per fault class: faults that met work (a class that met nothing proved nothing)

    @property
    def ok(self) -> bool:
        return not self.violations


def _excuse(call: RecordedCall, runs: dict[str, Invocation]) -> str | None:
    """Why the sender of ``call`` could not have known (or kept) its outcome, or None."""
    for fault in call.faults:
        if fault == "timeout":
            return "timeout after processing"
        if fault in ("not_json", "truncated"):
            return "unreadable answer"
        if fault.startswith("odd_answer:"):
            return "odd answer"
    tag, _, number = (call.tag or "").partition("/")
    run = runs.get(tag)
    if run is None:
        return None
    if run.outcome in _KILLED:
        return _KILLED[run.outcome]
    if number.isdigit() and int(number) in run.unanswered:
        return "answer never read"
    return None


def _why_known(call: RecordedCall, runs: dict[str, Invocation]) -> str:
    """For an unexplained re-delivery: how the run that read the platform's answer ended without keeping it."""
    run = runs.get((call.tag or "").partition("/")[0])
    if run is None:
        return "sent by no harness worker"
    if (
        any(fault.startswith("BatchWriteItem:") for fault in run.dynamo_faults)
        or run.error_type == "StorageError"
        or run.status == "storage_failed"
    ):
        return _SETTLE_FAILED  # the run knew the outcome and could not write it down
    if run.error_type:
        return f"run crashed ({run.error_type})"
    return "run ended normally"


def _deliveries(calls: list[RecordedCall]) -> dict[tuple[Kind, str], list[RecordedCall]]:
    """Every call that got each record accepted, oldest first."""
    kinds = {KINDS[kind].method: kind for kind in Kind}
    found: dict[tuple[Kind, str], list[RecordedCall]] = defaultdict(list)
    for call in sorted(calls, key=lambda c: c.received_at):
        kind = kinds.get(call.method)
        if kind is None or not call.processed:
            continue
        for record in call.sent_records():
            try:
                found[(kind, KINDS[kind].record_id(record))].append(call)
            except (KeyError, TypeError):
                continue
    return found


def _dead_label(reason: str | None) -> str:
    text = reason or ""
    if text.startswith("gave up after"):
        return "gave up after max attempts"
    return re.sub(r"\d+", "N", text.split(";")[0])[:60] or "(no reason)"


def analyse(run: ChaosRun) -> Findings:
    """The figures, the detail lines and the violations of one run."""
    runs = {invocation.tag: invocation for invocation in run.invocations}
    deliveries = _deliveries(run.calls)
    figures: dict[str, KindFigures] = {}
    examples: list[str] = []
    for kind in Kind:
        figure = KindFigures(kind.value)
        poison = run.workload.poison[kind]
        for record_id in run.ledger.acknowledged[kind]:
            stored = run.records[(kind, record_id)]
            delivered = deliveries.get((kind, record_id), [])
            figure.accepted += 1
            if stored.state is None:
                figure.not_stored += 1
            elif stored.state not in KNOWN_STATES:
                figure.no_state += 1
            elif stored.state == "synced" and not delivered:
                figure.phantom += 1
            if stored.state in KNOWN_STATES:
                name = "stuck" if stored.state == "due" else stored.state
                setattr(figure, name, getattr(figure, name) + 1)
            if stored.state == "dead":
                figure.dead_reasons[
                    "refused as the sandbox was told" if record_id in poison else _dead_label(stored.dead_reason)
                ] += 1
                figure.dead_but_applied += bool(delivered)
            if record_id in poison:
                figure.refused += 1
                figure.refused_not_dead += stored.state != "dead"
            if kind is Kind.EXTERNAL_ORDER and stored.state == "synced" and delivered:
                figure.wrong_order_id += stored.platform_order_id != order_id_for(record_id)
        figure.lost = figure.not_stored + figure.no_state + figure.phantom
        for (of_kind, record_id), calls in deliveries.items():
            if of_kind is not kind:
                continue
            odd = [i for i, call in enumerate(calls) if any(f.startswith("odd_answer:") for f in call.faults)]
            if odd:
                figure.odd_records += 1
                figure.odd_resent += odd[0] < len(calls) - 1
                found = run.records.get((kind, record_id))
                figure.odd_states[found.state if found and found.state else "not stored"] += 1
            if len(calls) < 2:
                continue
            figure.delivered_twice += 1
            excuses = [_excuse(call, runs) for call in calls[:-1]]
            if all(excuse in _UNKNOWN for excuse in excuses):
                figure.unknown_outcome += 1
                continue
            figure.unexplained += 1
            known = [_why_known(call, runs) for call, excuse in zip(calls, excuses, strict=False) if excuse is None]
            figure.unexplained_why.update(set(known))
            figure.after_settle_failure += _SETTLE_FAILED in known
            if len(examples) < 8:
                examples.append(_example(kind, record_id, calls, runs))
        figures[kind.value] = figure
    total = KindFigures("total")
    for figure in figures.values():
        total.add(figure)
    figures["total"] = total
    injected = _injected(run)
    details = [f"faults that met work: {', '.join(f'{name} {count}' for name, count in injected.items())}"]
    return Findings(figures, details + _details(run, figures), examples, _violations(total), injected)


def _injected(run: ChaosRun) -> dict[str, int]:
    """Per fault class, how many of its faults met work: platform calls answered with an error or a timeout,
    DynamoDB requests failed or delayed, workers killed, answers odd or unreadable."""

    def odd(call: RecordedCall) -> bool:
        return any(fault.startswith(("odd_answer:", "not_json", "truncated")) for fault in call.faults)

    return {
        "platform": sum((c.outcome != "ok" and not odd(c)) or "timeout" in c.faults for c in run.calls),
        "dynamodb": len(run.intake_dynamo_faults)
        + sum(not fault.endswith(":stall") for i in run.invocations for fault in i.dynamo_faults),
        "kills": sum(i.outcome in ("killed_after_call", "killed_at_deadline") for i in run.invocations),
        "odd": sum(odd(c) for c in run.calls),
    }


def _example(kind: Kind, record_id: str, calls: list[RecordedCall], runs: dict[str, Invocation]) -> str:
    """One re-delivered record's story: each accepting call (when, by which run) and what became of that run."""
    steps = []
    for call in calls:
        run = runs.get((call.tag or "").partition("/")[0])
        when = f"{call.received_at:%H:%M:%S.%f}"[:-3]
        if run is None:
            steps.append(f"{when} by an unknown sender (faults {call.faults or '-'})")
            continue
        span = f"{datetime.fromtimestamp(run.started, UTC):%H:%M:%S.%f}"[:-3]
        span += f"-{datetime.fromtimestamp(run.ended, UTC):%H:%M:%S.%f}"[:-3]
        error = f" {_error_line(run.error)[:90]}" if run.error else ""
        steps.append(
            f"{when} by {call.tag} [{run.variant}, ran {span}, {run.status}{error}] (faults {call.faults or '-'})"
        )
    return f"{kind.value} {record_id}: accepted " + "; then ".join(steps)


def _violations(total: KindFigures) -> list[str]:
    found = []
    if total.lost:
        found.append(f"{total.lost} records lost")
    if total.stuck:
        found.append(f"{total.stuck} records stuck (still due)")
    if total.unexplained:
        found.append(
            f"{total.unexplained} records delivered again although the sender knew the outcome "
            f"({total.after_settle_failure} of them after a failed settle write)"
        )
    if total.refused_not_dead:
        found.append(f"{total.refused_not_dead} refused records not dead")
    if total.wrong_order_id:
        found.append(f"{total.wrong_order_id} external orders synced without the platform's order id")
    return found


def _counts(counter: Counter[str]) -> str:
    return ", ".join(f"{name} {count}" for name, count in counter.most_common()) or "none"


def _details(run: ChaosRun, figures: dict[str, KindFigures]) -> list[str]:
    ledger, total = run.ledger, figures["total"]
    lines = [
        f"intake: {ledger.requests} requests, HTTP statuses {dict(sorted(ledger.statuses.items()))}; "
        f"{sum(ledger.conflicts.values())} conflicts, {sum(ledger.invalid.values())} invalid records dropped, "
        f"{sum(len(ids) for ids in ledger.unacknowledged.values())} records never acknowledged; "
        f"{ledger.partial_503} answers 503 left {ledger.partial_503_records} of their records stored; "
        f"DynamoDB faults on its client: {_counts(Counter(f.split(':')[1] for f in run.intake_dynamo_faults))}",
        f"lost: {total.not_stored} not stored, {total.no_state} in no state, {total.phantom} synced but never "
        f"accepted by the platform",
        f"refusals: {total.refused} records the platform refuses, {total.refused_not_dead} of them not dead",
        f"dead: {_counts(total.dead_reasons)}; {total.dead_but_applied} dead although the platform applied them",
        f"re-delivered: {total.delivered_twice}; outcome unknown {total.unknown_outcome}; unexplained "
        f"{total.unexplained}, the run that read the answer: {_counts(total.unexplained_why)}",
        f"odd answers: {total.odd_records} records answered in an odd shape; they ended {_counts(total.odd_states)}; "
        f"{total.odd_resent} sent again after it",
        f"external orders synced with a platform order id that is not the platform's: {total.wrong_order_id}",
    ]
    calls = run.calls
    lines.append(
        f"platform: {len(calls)} calls; outcomes {_counts(Counter(c.outcome for c in calls))}; "
        f"faults met {_counts(Counter(f.split(':')[0] if ':' not in f else f for c in calls for f in c.faults))}"
    )
    invocations = run.invocations
    raised = Counter(_error_line(i.error) for i in invocations if i.error)
    statuses = _counts(Counter(i.status for i in invocations))
    lines.append(f"sync runs: {len(invocations)} ({run.cold_starts} cold starts); {statuses}")
    lines += [f"  raised x{count}: {error}" for error, count in raised.most_common()]
    sync_faults = Counter(f.split(":")[1] for i in invocations for f in i.dynamo_faults)
    lines.append(f"DynamoDB faults in sync runs: {_counts(sync_faults)}")
    lines.append(f"time compressed: {_counts(run.timeshift)}")
    lines += [f"note: {note}" for note in run.notes]
    return lines


def _error_line(error: str) -> str:
    """An error on one line: its first three lines (a pydantic error names the field on the second), numbers
    masked so that ids do not split one error into many."""
    lines = [line.strip() for line in error.splitlines()[:3] if "errors.pydantic.dev" not in line]
    return re.sub(r"\d+", "N", " | ".join(lines))[:240]
