"""Section 1, the Qimen callback: the in-process CPU path, with storage, end to end, and cold init.

- CPU path: ``callback.dispatch_event`` on API Gateway events, as the handler calls it (settings, dispatcher
  assembly, signature, parsing, validation, the method's handler, the answer serialised), with the store port
  (``FulfillmentStore``) replaced by an in-memory fake: pure logic, no I/O. Per call: the thread's CPU time
  (``time.thread_time``, immune to other processes on the machine) and the wall time.
- With storage: the same calls with the real store, moto over HTTP (in process, no API Gateway emulation).
- End to end: signed HTTP calls to the local stack's ``/qimen`` (``bench.qimen_latency.measure``): new orders, then
  replays of the same orders.
- Cold init: ``bench.cold_start`` (fresh Python 3.13 processes, the built layer and function against a bare
  boto3 handler), when ``make build`` has been run.
"""

from __future__ import annotations

import contextlib
import gc
import io
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import IO, Any

from bridge_local.apigw import http_api_event
from bridge_local.qimen_client import new_order_no, signed_query
from taobao_bridge import callback
from taobao_bridge.fulfillment_store import Created, CreateOutcome, NewOrder, Replayed
from taobao_bridge.jsonutil import dumps
from taobao_bridge.settings import ENV, LOCAL_DEFAULTS

from .report import Row, Target

__all__ = ["measure_callback"]

ROOT = Path(__file__).resolve().parent.parent
SEED = ROOT / "tests" / "fixtures" / "seed_003_request.json"
BUILD_TEMPLATE = ROOT / ".aws-sam" / "build" / "template.yaml"
SECTION = "1. Qimen callback"
NOT_BUILT = "not measured: run PYENV_VERSION=3.11.7:3.13.0 make build"


def percentile(samples: list[float], p: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


class _MemoryOrders:
    """The store port in memory: the first order with a number is created, a repeat is replayed."""

    def __init__(self) -> None:
        self.answers: dict[str, str] = {}

    def create(self, order: NewOrder) -> CreateOutcome:
        first = self.answers.setdefault(order.fulfillment_order_no, order.answer_json)
        return Created(order.partner_order_id) if first is order.answer_json else Replayed(first)


def _bodies(count: int) -> list[bytes]:
    seed = json.loads(SEED.read_text(encoding="utf-8"))
    bodies = []
    for _ in range(count):
        seed["fulfillment_info"]["fulfillment_order_no"] = new_order_no()
        bodies.append(dumps(seed).encode("utf-8"))
    return bodies


def _events(bodies: list[bytes], secret: str) -> list[dict[str, Any]]:
    headers = [("content-type", "application/json;charset=utf-8")]
    return [
        http_api_event(
            method="POST",
            path="/qimen",
            raw_query=signed_query(body, secret),
            headers=headers,
            body=body,
            route_key="POST /qimen",
        )
        for body in bodies
    ]


def _time_calls(events: list[dict[str, Any]], call: Callable[[dict[str, Any]], Any]) -> tuple[list[float], list[float]]:
    """CPU and wall milliseconds of each call; every answer must be a success."""
    cpu_ms, wall_ms = [], []
    for event in events:
        wall0, cpu0 = time.perf_counter_ns(), time.thread_time_ns()
        result = call(event)
        cpu_ms.append((time.thread_time_ns() - cpu0) / 1e6)
        wall_ms.append((time.perf_counter_ns() - wall0) / 1e6)
        if result.answer.get("biz_result") != "success":
            raise RuntimeError(f"Qimen call not answered success: {result.answer}")
    return cpu_ms, wall_ms


def _dispatch(event: dict[str, Any]) -> Any:
    result = callback.dispatch_event(event)
    dumps(result.answer)  # the answer's bytes are part of the path
    return result


def cpu_path(calls: int, secret: str) -> list[Row]:
    store = _MemoryOrders()
    real_store = callback.FulfillmentStore
    # The store port, faked: build_qimen_dispatcher looks FulfillmentStore up at call time.
    callback.FulfillmentStore = lambda *args, **kwargs: store  # type: ignore[assignment,misc]
    try:
        _time_calls(_events(_bodies(200), secret), _dispatch)  # warm-up: first imports, caches
        events = _events(_bodies(calls), secret)
        collections = [generation["collections"] for generation in gc.get_stats()]
        cpu, wall = _time_calls(events, _dispatch)
        collections = [g["collections"] - before for g, before in zip(gc.get_stats(), collections, strict=True)]
    finally:
        callback.FulfillmentStore = real_store  # type: ignore[misc]
    how = (
        f"{calls} new orders after 200 warm-up calls; callback.dispatch_event on API Gateway events, the store port "
        f"faked in memory; thread CPU time per call (wall p50 {percentile(wall, 50):.3f} ms, p99 "
        f"{percentile(wall, 99):.3f} ms); INFO logs written"
    )
    slow = sum(ms > 1.0 for ms in cpu)
    why = (
        f"{slow} of {calls} calls took over 1 ms of CPU; garbage collections during the run by generation "
        f"(0/1/2): {'/'.join(map(str, collections))}"
    )
    return [
        Row(SECTION, "in-process CPU path (verify, parse, validate, answer), p50", percentile(cpu, 50), "ms", how),
        Row(SECTION, "in-process CPU path, p99", percentile(cpu, 99), "ms", how, Target("<=", 1.0, "ms"), why=why),
    ]


def with_storage(calls: int, secret: str) -> list[Row]:
    _time_calls(_events(_bodies(20), secret), _dispatch)
    _, wall = _time_calls(_events(_bodies(calls), secret), _dispatch)
    how = f"{calls} new orders in process, real FulfillmentStore (TransactWriteItems) on moto over HTTP; wall time"
    return [
        Row(SECTION, "with storage (moto over HTTP), p50", percentile(wall, 50), "ms", how),
        Row(SECTION, "with storage (moto over HTTP), p99", percentile(wall, 99), "ms", how),
    ]


def end_to_end(url: str, calls: int, secret: str) -> list[Row]:
    import httpx

    from .qimen_latency import measure

    bodies = _bodies(calls + 10)
    with httpx.Client(timeout=10) as client:
        measure(client, url, bodies[:10], secret)  # warm-up: loading the function, connections
        created = measure(client, url, bodies[10:], secret)
        replays = measure(client, url, bodies[10:], secret)
    rows = []
    for name, samples in (("new order", created), ("replay", replays)):
        how = (
            f"{len(samples)} signed HTTP calls to the local stack's /qimen, one at a time (API Gateway emulation, "
            f"Lambda handler, moto); mean {statistics.fmean(samples):.1f} ms, max {max(samples):.0f} ms"
        )
        rows.append(Row(SECTION, f"end to end, {name}, p50", percentile(samples, 50), "ms", how))
        rows.append(Row(SECTION, f"end to end, {name}, p99", percentile(samples, 99), "ms", how))
    return rows


COLD_CASES = {  # bench.cold_start's case name (its start) -> the figure here; the target applies to the Qimen ones
    "qimen_callback (order": ("cold init ÷ bare boto3 handler, callback, signed order (secret read)", True),
    "qimen_callback (bad signature": ("cold init ÷ bare boto3 handler, callback, wrongly signed", True),
    "intake": ("cold init ÷ bare boto3 handler, intake (404)", False),
    "sync": ("cold init ÷ bare boto3 handler, sync writeoffs (nothing due)", False),
}


def cold_init(runs: int, log: IO[str]) -> list[Row]:
    """Every handler of bench.cold_start against the bare one, as deployed by default (XRaySdkTracing=disabled)."""
    figure = "cold init (import + first call, Python 3.13), callback, signed order"
    target = Target("<=", 1.3, "×")
    ratio_rows = [(name, target if targeted else None) for name, targeted in COLD_CASES.values()]
    if not BUILD_TEMPLATE.is_file():
        return [Row(SECTION, figure, None, missing=NOT_BUILT)] + [
            Row(SECTION, name, None, "", target=t, missing=NOT_BUILT) for name, t in ratio_rows
        ]
    from . import cold_start

    built = datetime.fromtimestamp(BUILD_TEMPLATE.stat().st_mtime).strftime("%Y-%m-%d %H:%M")
    output = io.StringIO()
    with tempfile.TemporaryDirectory(prefix="bench-cold-") as tmp:
        path = Path(tmp) / "cold.json"
        try:
            with contextlib.redirect_stdout(output):
                cold_start.main(["--runs", str(runs), "--tracing", "off", "--json", str(path)])
            cases = json.loads(path.read_text(encoding="utf-8"))["cases"]
        except (SystemExit, Exception) as exc:  # a missing Python 3.13 or a changed cold_start: say so, go on
            log.write(output.getvalue())
            reason = f"not measured: bench.cold_start failed ({type(exc).__name__}: {str(exc)[:160]})"
            return [Row(SECTION, figure, None, missing=reason)] + [
                Row(SECTION, name, None, target=t, missing=reason) for name, t in ratio_rows
            ]
    log.write(output.getvalue())
    bare = next(v for k, v in cases.items() if k.startswith("bare"))
    how = (
        f"bench.cold_start --runs {runs} --tracing off (the template's default): median of {bare['runs']} fresh "
        f"Python 3.13 processes each at as many stack depths, the build in .aws-sam/build ({built}); bare handler "
        f"{bare['total_ms']:.0f} ms"
    )
    why = "the time goes to importing the layer's modules: bench.cold_start --importtime qimen lists the costliest"
    rows = []
    for prefix, (name, targeted) in COLD_CASES.items():
        case = next(v for k, v in cases.items() if k.startswith(prefix))
        detail = f"{how}; import {case['import_ms']:.0f} ms + first call {case['invoke_ms']:.0f} ms"
        if not rows:
            rows.append(Row(SECTION, figure, case["total_ms"], "ms", detail))
        ratio = case["total_ms"] / bare["total_ms"]
        rows.append(Row(SECTION, name, ratio, "×", detail, target if targeted else None, why=why))
    return rows


def measure_callback(
    *, cpu_calls: int, storage_calls: int, e2e_calls: int, cold_runs: int, log: IO[str], say: Callable[[str], None]
) -> list[Row]:
    from bridge_local.stack import LocalStack, StackConfig

    secret = LOCAL_DEFAULTS[ENV.QIMEN_APP_SECRET]
    rows: list[Row] = []
    with LocalStack(StackConfig(port=0, dynamodb_port=0, sandbox_port=0, run_schedules=False)) as stack:
        from aws_lambda_powertools import Logger

        # The package's loggers are children of the handler's (functions/qimen_callback/app.py makes it at import).
        Logger()
        say(f"callback: CPU path, {cpu_calls} calls")
        rows += cpu_path(cpu_calls, secret)
        say(f"callback: with storage, {storage_calls} calls")
        rows += with_storage(storage_calls, secret)
        say(f"callback: end to end, {e2e_calls} new orders and {e2e_calls} replays")
        rows += end_to_end(f"{stack.url}/qimen", e2e_calls, secret)
    say(f"callback: cold init, {cold_runs} fresh processes per handler")
    rows += cold_init(cold_runs, log)
    sys.stdout.flush()
    return rows
