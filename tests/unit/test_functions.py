"""bridge_local.functions: each function runs as Lambda runs it, one invocation at a time per instance, each
instance a module of its own, with Powertools' per-invocation state kept per instance."""

from __future__ import annotations

import io
import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import redirect_stdout
from pathlib import Path
from typing import Any

import pytest

from bridge_local.apigw import http_api_event, lambda_context
from bridge_local.functions import FunctionPool
from bridge_local.stack import PROJECT_ROOT
from bridge_local.template import load_template, scheduled_functions

COUNTING_APP = """
import threading, time
running = 0
most = 0
lock = threading.Lock()
calls = []

def handler(event, context):
    global running, most
    with lock:
        running += 1
        most = max(most, running)
    time.sleep(0.02)
    with lock:
        running -= 1
        calls.append(event["n"])
    return {"module": __name__, "most": most}
"""

# A resolver route that reads the current event twice with a pause between, as a slow handler would.
RESOLVER_APP = """
import time
from aws_lambda_powertools import Metrics
from aws_lambda_powertools.event_handler import APIGatewayHttpResolver

app = APIGatewayHttpResolver()
metrics = Metrics(namespace="Test", service="test")

@app.post("/echo")
def echo():
    first = app.current_event.body
    metrics.add_metric(name="Echo" + first, unit="Count", value=1)
    time.sleep(0.01)
    return {"first": first, "second": app.current_event.body}

@metrics.log_metrics
def handler(event, context):
    return app.resolve(event, context)
"""


def write_app(root: Path, folder: str, source: str) -> None:
    (root / folder).mkdir(parents=True)
    (root / folder / "app.py").write_text(source, encoding="utf-8")


def test_each_instance_serves_one_invocation_at_a_time_and_the_pool_is_bounded(tmp_path: Path) -> None:
    write_app(tmp_path, "fn", COUNTING_APP)
    pool = FunctionPool("CountingFunction", "fn/", "app.handler", tmp_path, max_instances=3)
    with ThreadPoolExecutor(max_workers=8) as threads:
        results = list(threads.map(lambda n: pool.invoke({"n": n}, lambda: None), range(24)))
    modules = {result["module"] for result in results}
    assert pool.instances == 3 and len(modules) == 3  # three copies of the module, never more
    assert all(result["most"] == 1 for result in results)  # no copy ever ran two invocations at once


def test_reserved_concurrency_of_one_runs_one_invocation_at_a_time(tmp_path: Path) -> None:
    write_app(tmp_path, "fn", COUNTING_APP)
    pool = FunctionPool("OneAtATime", "fn/", "app.handler", tmp_path, max_instances=1)
    with ThreadPoolExecutor(max_workers=4) as threads:
        results = list(threads.map(lambda n: pool.invoke({"n": n}, lambda: None), range(8)))
    assert pool.instances == 1 and {r["most"] for r in results} == {1}


def test_the_sync_functions_reserve_no_concurrency() -> None:
    # A new account's quota refuses reserved concurrency; the lease keeps runs apart (template.yaml).
    schedules = scheduled_functions(load_template(PROJECT_ROOT / "template.yaml"))
    assert {s.function_id: s.reserved_concurrency for s in schedules} == {
        "SyncWriteoffsFunction": None,
        "SyncRiskFunction": None,
        "SyncExternalOrdersFunction": None,
    }


def test_a_module_that_fails_to_load_frees_its_slot(tmp_path: Path) -> None:
    write_app(tmp_path, "fn", "raise RuntimeError('broken at import')\n")
    pool = FunctionPool("Broken", "fn/", "app.handler", tmp_path, max_instances=1)
    for _ in range(2):  # the second attempt loads again instead of waiting for a slot that never frees
        with pytest.raises(RuntimeError, match="broken at import"):
            pool.invoke({}, lambda: None)
    assert pool.instances == 0


def test_the_context_is_made_when_an_instance_is_free(tmp_path: Path) -> None:
    write_app(tmp_path, "fn", COUNTING_APP)
    pool = FunctionPool("Ctx", "fn/", "app.handler", tmp_path, max_instances=1)
    made: list[float] = []
    with pool.instance():  # the only instance is busy for 0.1 s
        waiter = threading.Thread(target=lambda: pool.invoke({"n": 0}, lambda: made.append(time.monotonic())))
        started = time.monotonic()
        waiter.start()
        time.sleep(0.1)
    waiter.join()
    assert made[0] - started >= 0.1  # the Lambda clock starts after the wait, not before


def resolver_event(body: str) -> dict[str, Any]:
    return http_api_event(
        method="POST",
        path="/echo",
        raw_query="",
        headers={"content-type": "text/plain"},
        body=body.encode(),
        route_key="POST /echo",
    )


def test_concurrent_requests_on_two_functions_each_see_their_own_event(tmp_path: Path) -> None:
    # Powertools keeps the current event on the BaseRouter class, shared by every resolver in the process.
    write_app(tmp_path, "one", RESOLVER_APP)
    write_app(tmp_path, "two", RESOLVER_APP)
    pools = [
        FunctionPool(f"F{n}", f"{name}/", "app.handler", tmp_path, max_instances=2)
        for n, name in enumerate(["one", "two"])
    ]

    def call(n: int) -> dict[str, Any]:
        body = f"b{n}"
        result = pools[n % 2].invoke(resolver_event(body), lambda: lambda_context("F", 3))
        return {"sent": body, **json.loads(result["body"])}

    with redirect_stdout(io.StringIO()), ThreadPoolExecutor(max_workers=8) as threads:
        answers = list(threads.map(call, range(40)))
    assert [a for a in answers if not a["sent"] == a["first"] == a["second"]] == []


def test_each_instance_flushes_only_its_own_metrics(tmp_path: Path) -> None:
    write_app(tmp_path, "one", RESOLVER_APP)
    pool = FunctionPool("Metered", "one/", "app.handler", tmp_path, max_instances=2)
    with pool.instance() as first, pool.instance() as second:
        first.module.metrics.add_metric(name="OnlyFirst", unit="Count", value=1)
        printed = io.StringIO()
        with redirect_stdout(printed):
            second.handler(resolver_event("x"), lambda_context("Metered", 3))
        emitted = json.loads(printed.getvalue().strip().splitlines()[-1])
        assert "Echox" in emitted and "OnlyFirst" not in emitted
        assert "OnlyFirst" in first.module.metrics.provider.metric_set  # still there for its own flush
