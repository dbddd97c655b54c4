"""Sections 2 to 4, the runs: the project's sync, a naive script and taobaopy, on one local stack whose TOP
gateway adds a fixed latency to every answer; and, on a stack of its own, the scale run.

- The project: records go in through the intake HTTP API (the intake function in this process), then the kind's
  scheduled sync handler drains them in a child process (``bench.sync_worker``), run after run, with the
  template's timeout and memory. moto counts every DynamoDB request of both (``bench.tap``).
- The naive script (``bench.naive``) and taobaopy (``bench.taobaopy_send``, in ``.venv-bench-taobaopy``) send
  other records of the same kind one per call, each followed by one ``UpdateItem``, in child processes too.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from bridge_local.intake_client import IntakeClient
from bridge_local.stack import LocalStack, StackConfig
from bridge_local.template import dynamodb_tables
from taobao_bridge.intake import MAX_RECORDS_PER_REQUEST
from taobao_bridge.kinds import KINDS, Kind
from taobao_bridge.settings import ENV, LOCAL_DEFAULTS

from .children import ROOT, Child, child_env, run_child
from .cost import CapacityLedger, TableSpec
from .records import make_records
from .tap import DynamoTap

__all__ = ["BenchError", "KindRun", "OneByOne", "SyncOptions", "SyncRuns", "run_sync"]

ENTRY_POINTS = {Kind.WRITEOFF: "writeoffs", Kind.RISK: "risk", Kind.EXTERNAL_ORDER: "external_orders"}
NAIVE_TABLE = "BenchNaiveSent"
TAOBAOPY_VENV = ROOT / ".venv-bench-taobaopy"
TAOBAOPY = "taobaopy==6.0.1"


class BenchError(RuntimeError):
    """Raised when a benchmark run cannot produce its figures (the project refused or lost records)."""


@dataclass(frozen=True)
class SyncOptions:
    latency_ms: int = 50
    writeoffs: int = 10_000
    risk: int = 1_000
    external: int = 200
    naive_records: int = 300  # per kind (external orders: at most ``external``)
    taobaopy_records: int = 300
    scale_records: int = 0  # 0: no scale run
    max_runs: int = 20
    read_timeout_s: float = 60.0  # the drain's DynamoDB read timeout: moto's index Query is O(table) (sync_worker)


@dataclass
class KindRun:
    """One kind through the project: accepted over HTTP, drained by its scheduled function."""

    kind: Kind
    records: int
    accept_s: float
    accept_posts: int
    accept_units: dict[str, dict[str, float]]
    drain_units: dict[str, dict[str, float]]
    worker: dict[str, Any]
    child: Child
    top_calls: int
    top_records: int
    memory_mb: int  # the sync function's MemorySize
    intake_memory_mb: int
    timeout_s: float
    period_s: float

    @property
    def drain_s(self) -> float:
        return float(self.worker["wall_s"])

    @property
    def rate(self) -> float:
        return self.worker["synced"] / self.drain_s

    @property
    def run_durations_ms(self) -> list[float]:
        return [run["duration_ms"] for run in self.worker["runs"]]


@dataclass
class OneByOne:
    """A naive or taobaopy run: records sent one per call, sequentially."""

    records: int = 0
    seconds: float = 0.0
    failures: list[str] = field(default_factory=list)
    problem: str = ""  # why there is no figure
    probe: str = ""  # taobaopy on the host's zone: what the gateway answered

    @property
    def rate(self) -> float | None:
        if self.problem or not self.records or self.failures:
            return None
        return self.records / self.seconds


@dataclass
class SyncRuns:
    options: SyncOptions
    kinds: dict[Kind, KindRun] = field(default_factory=dict)
    naive: dict[Kind, OneByOne] = field(default_factory=dict)
    taobaopy: OneByOne = field(default_factory=OneByOne)
    scale: KindRun | None = None
    external_concurrency: int = 4


class _Stack:
    """One local stack with a slow gateway, and what runs against it."""

    def __init__(self, stack: LocalStack, options: SyncOptions, log: IO[str], say: Callable[[str], None]) -> None:
        self.stack = stack
        self.options = options
        self.log = log
        self.say = say
        self.tables = [TableSpec.from_create_table(t) for t in dynamodb_tables(stack.template)]
        stack.sandbox.set_faults(slow_ms=options.latency_ms)

    def secrets(self) -> dict[str, str]:
        return {name: self.stack.environment.get(name) or LOCAL_DEFAULTS[name] for name in LOCAL_DEFAULTS}

    def project(
        self, kind: Kind, count: int, *, tap: DynamoTap | None, run: int = 0, seed_directly: bool = False
    ) -> KindRun:
        spec = KINDS[kind]
        records = make_records(kind, count, run)
        ledger = CapacityLedger(self.tables)
        if tap is not None:
            tap.open()
        started = time.perf_counter()
        if seed_directly:
            self.say(f"sync: {count} {kind.value} records written as intake writes them (the scale run drains)")
            self._seed(kind, records)
        else:
            self.say(f"sync: {count} {kind.value} records through the intake API")
            summary = IntakeClient(self.stack.url).submit(kind, records, progress=False)
            if summary.accepted != count:
                raise BenchError(
                    f"intake accepted {summary.accepted} of {count} {kind.value} records: {summary.errors[:3]}"
                )
        accept_s = time.perf_counter() - started
        if tap is not None:
            tap.close()
            tap.priced(ledger)
        accept_units = ledger.snapshot()
        ledger.reset_counts()  # the item sizes it saw stay: the settles replace those items

        schedule = next(s for s in self.stack.schedules if s.handler.endswith("." + ENTRY_POINTS[kind]))
        intake = next(r for r in self.stack.routes if r.function_id == "IntakeFunction")
        calls_before = len(self.stack.sandbox.calls(spec.method))
        self.say(f"sync: draining them with {schedule.function_id} in a child process")
        if tap is not None:
            tap.open()
        worker, child = self._drain(kind, count, schedule)
        if tap is not None:
            tap.close()
            tap.priced(ledger)
        calls = self.stack.sandbox.calls(spec.method)[calls_before:]
        if worker["synced"] != count:
            raise BenchError(f"{worker['synced']} of {count} {kind.value} records synced: {worker['runs'][-1:]}")
        return KindRun(
            kind=kind,
            records=count,
            accept_s=accept_s,
            accept_posts=math.ceil(count / MAX_RECORDS_PER_REQUEST),
            accept_units=accept_units,
            drain_units=ledger.snapshot(),
            worker=worker,
            child=child,
            top_calls=len(calls),
            top_records=sum(call.records for call in calls if call.processed),
            memory_mb=schedule.memory_mb,
            intake_memory_mb=intake.memory_mb,
            timeout_s=float(schedule.timeout_s),
            period_s=float(schedule.rate_seconds or 60),
        )

    def _seed(self, kind: Kind, records: list[dict[str, Any]]) -> None:
        """The items intake's accept writes (``outbox.items.new_item``), put with BatchWriteItem: the scale run
        measures the drain, and one conditional put per record through moto would take longer than the drain."""
        from taobao_bridge.intake import parse_records
        from taobao_bridge.outbox.items import new_item
        from taobao_bridge.outbox.records import payload_sha256

        client = self.stack.dynamodb_client()
        table = self.stack.environment[ENV.OUTBOX_TABLE]
        now = datetime.now(UTC)
        items = [
            new_item(kind, record_id, payload, payload_sha256(payload), now, "bench-seed")
            for start in range(0, len(records), MAX_RECORDS_PER_REQUEST)
            for record_id, payload in parse_records(kind, records[start : start + MAX_RECORDS_PER_REQUEST])
        ]
        for start in range(0, len(items), 25):
            requests = [{"PutRequest": {"Item": item}} for item in items[start : start + 25]]
            while requests:
                answer = client.batch_write_item(RequestItems={table: requests})
                requests = (answer.get("UnprocessedItems") or {}).get(table) or []

    def _drain(self, kind: Kind, count: int, schedule: Any) -> tuple[dict[str, Any], Child]:
        spec = {
            "kind": kind.value,
            "entry": ENTRY_POINTS[kind],
            "function_name": schedule.function_id,
            "timeout_s": schedule.timeout_s,
            "memory_mb": schedule.memory_mb,
            "expect": count,
            "max_runs": self.options.max_runs,
            "read_timeout_s": self.options.read_timeout_s,
        }
        with tempfile.TemporaryDirectory(prefix="bench-drain-") as tmp:
            spec_path, out_path = Path(tmp) / "spec.json", Path(tmp) / "out.json"
            spec_path.write_text(json.dumps(spec), encoding="utf-8")
            command = [sys.executable, "-m", "bench.sync_worker", str(spec_path), str(out_path)]
            child = run_child(command, child_env(), self.log, timeout_s=1800)
            if child.exit_code != 0 or not out_path.is_file():
                raise BenchError(f"the {kind.value} drain failed (exit {child.exit_code}); see {self.log.name}")
            return json.loads(out_path.read_text(encoding="utf-8")), child

    def create_naive_table(self) -> None:
        client = self.stack.dynamodb_client()
        client.create_table(
            TableName=NAIVE_TABLE,
            KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )

    def naive(self, kind: Kind, count: int) -> OneByOne:
        self.say(f"naive script: {count} {kind.value} records, one per call")
        secrets = self.secrets()
        spec = {
            "kind": kind.value,
            "records": make_records(kind, count, run=1),
            "gateway_url": self.stack.top_gateway_url,
            "app_key": secrets[ENV.TOP_APP_KEY],
            "app_secret": secrets[ENV.TOP_APP_SECRET],
            "session": secrets[ENV.TOP_SESSION_KEY],
            "table": NAIVE_TABLE,
        }
        return self._one_by_one([sys.executable, "-m", "bench.naive"], spec, child_env())

    def taobaopy(self, count: int) -> OneByOne:
        python, problem = ensure_taobaopy(self.log, self.say)
        if python is None:
            return OneByOne(problem=problem)
        secrets = self.secrets()
        spec: dict[str, Any] = {
            "domain": self.stack.sandbox.base_url,
            "app_key": secrets[ENV.TOP_APP_KEY],
            "app_secret": secrets[ENV.TOP_APP_SECRET],
            "method": KINDS[Kind.WRITEOFF].method,
            "param": KINDS[Kind.WRITEOFF].api.param,
            "table": NAIVE_TABLE,
        }
        script = [str(python), str(ROOT / "bench" / "taobaopy_send.py")]
        env = {key: value for key, value in child_env().items() if key != "PYTHONPATH"}  # nothing of the project
        self.say("taobaopy: one writeoff with the host's time zone forced to UTC")
        probe = self._one_by_one(
            script, {**spec, "records": make_records(Kind.WRITEOFF, 1, run=3)}, {**env, "TZ": "UTC"}
        )
        self.say(f"taobaopy: {count} writeoffs, one per call, TZ=Asia/Shanghai")
        records = make_records(Kind.WRITEOFF, count, run=2)
        result = self._one_by_one(script, {**spec, "records": records}, {**env, "TZ": "Asia/Shanghai"})
        result.probe = probe.failures[0] if probe.failures else (probe.problem or "accepted")
        return result

    def _one_by_one(self, command: list[str], spec: dict[str, Any], env: dict[str, str]) -> OneByOne:
        with tempfile.TemporaryDirectory(prefix="bench-one-") as tmp:
            spec_path, out_path = Path(tmp) / "spec.json", Path(tmp) / "out.json"
            spec_path.write_text(json.dumps(spec, ensure_ascii=False), encoding="utf-8")
            child = run_child([*command, str(spec_path), str(out_path)], env, self.log, timeout_s=900)
            if child.exit_code != 0 or not out_path.is_file():
                return OneByOne(problem=f"the sender failed (exit {child.exit_code}); see {self.log.name}")
            result = json.loads(out_path.read_text(encoding="utf-8"))
        return OneByOne(result["records"], result["seconds"], result["failures"])


def ensure_taobaopy(log: IO[str], say: Callable[[str], None]) -> tuple[Path | None, str]:
    """``.venv-bench-taobaopy`` with taobaopy and the project's boto3, made on first use; (python, problem)."""
    import boto3

    wanted = f"{TAOBAOPY} boto3=={boto3.__version__}"
    python = TAOBAOPY_VENV / "bin" / "python"
    stamp = TAOBAOPY_VENV / ".installed"
    if stamp.is_file() and stamp.read_text(encoding="utf-8") == wanted and python.is_file():
        return python, ""
    say(f"taobaopy: creating {TAOBAOPY_VENV.name} ({wanted})")
    steps = [
        [sys.executable, "-m", "venv", "--clear", str(TAOBAOPY_VENV)],
        [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", *wanted.split()],
    ]
    for step in steps:
        try:
            done = subprocess.run(step, capture_output=True, text=True, timeout=600)  # noqa: S603
        except (OSError, subprocess.TimeoutExpired) as exc:
            return None, f"not measured: {' '.join(step[-3:])} failed ({type(exc).__name__})"
        log.write(done.stdout + done.stderr)
        if done.returncode != 0:
            last = (done.stderr.strip().splitlines() or ["no output"])[-1][:200]
            return None, f"not measured: installing {wanted} failed: {last}"
    stamp.write_text(wanted, encoding="utf-8")
    return python, ""


def _external_concurrency() -> int:
    from taobao_bridge.settings import load_settings

    return int(getattr(load_settings(), "sync_external_concurrency", 0) or 0)


def run_sync(options: SyncOptions, log: IO[str], say: Callable[[str], None]) -> SyncRuns:
    runs = SyncRuns(options)
    tap = DynamoTap()
    config = StackConfig(port=0, dynamodb_port=0, sandbox_port=0, run_schedules=False)
    with LocalStack(config) as local:
        stack = _Stack(local, options, log, say)
        runs.external_concurrency = _external_concurrency()
        for kind, count in ((Kind.WRITEOFF, options.writeoffs), (Kind.RISK, options.risk)):
            runs.kinds[kind] = stack.project(kind, count, tap=tap)
        runs.kinds[Kind.EXTERNAL_ORDER] = stack.project(Kind.EXTERNAL_ORDER, options.external, tap=tap)
        stack.create_naive_table()
        for kind in (Kind.WRITEOFF, Kind.RISK, Kind.EXTERNAL_ORDER):
            count = (
                min(options.naive_records, options.external) if kind is Kind.EXTERNAL_ORDER else options.naive_records
            )
            runs.naive[kind] = stack.naive(kind, count)
        runs.taobaopy = stack.taobaopy(options.taobaopy_records)
    if options.scale_records:
        with LocalStack(config) as local:
            stack = _Stack(local, options, log, say)
            runs.scale = stack.project(Kind.WRITEOFF, options.scale_records, tap=None, run=5, seed_directly=True)
    return runs
