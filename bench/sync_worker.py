"""A warm Lambda container of one sync function, draining one kind: ``python -m bench.sync_worker SPEC OUT``.

It loads ``functions/sync/app.py`` (the real handlers, Powertools decorators and all) in a process of its own,
so that its peak memory is the drain's alone (moto lives in the parent), and invokes the kind's handler with a
Lambda context of the template's timeout and memory, run after run, until ``expect`` records are synced or a run
syncs nothing. It counts the DynamoDB requests of the functions' own client by operation, with the time they
took, and the TOP calls of the TOP client's pooled HTTP client (request units are counted by the parent, where
moto answers: ``bench.tap``, so that nothing of the benchmark's bookkeeping weighs on this process).

SPEC (JSON): ``kind``, ``entry`` (the handler's name in app.py), ``function_name``, ``timeout_s``, ``memory_mb``,
``expect``, ``max_runs``, ``read_timeout_s`` (optional: the DynamoDB client's read timeout, for moto's slow
index queries on large tables).
OUT (JSON): the runs (duration, report), the figures, ``peak_rss_kb`` (VmHWM: this program's own peak). Whatever
the functions print (logs and metrics) goes to stderr, which the parent sends to its log file.
"""

from __future__ import annotations

import importlib.util
import json
import os
import resource
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


def _load_handlers() -> Any:
    spec = importlib.util.spec_from_file_location("bench_sync_app", ROOT / "functions" / "sync" / "app.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _event(kind: str) -> dict[str, Any]:
    return {
        "version": "0",
        "id": f"bench-{time.time_ns()}",
        "detail-type": "Scheduled Event",
        "source": "aws.scheduler",
        "account": "123456789012",
        "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "region": os.environ.get("AWS_REGION", "us-east-1"),
        "resources": [f"bench:sync-{kind}"],
        "detail": {},
    }


def _rss_kb() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def _peak_rss_kb() -> int:
    """This program's own peak RSS (``VmHWM``, which ``execve`` resets). Not ``ru_maxrss``: Linux keeps that across
    ``execve``, so a child forked from the benchmark (whose moto holds every table) would report the parent's size
    at the fork, which grows with the records drained, instead of its own."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # not Linux: the best there is


def main(argv: list[str]) -> int:
    spec = json.loads(Path(argv[0]).read_text(encoding="utf-8"))
    os.dup2(2, 1)  # the functions' logs and metrics join stderr

    import httpx

    from bridge_local.apigw import lambda_context
    from taobao_bridge import dynamo, top_client

    from .recorder import DynamoRecorder, TimedTransport

    if spec.get("read_timeout_s"):
        # moto's index Query reads its whole table for every page (DynamoDB reads one page): on a table of 100,000
        # items one page takes longer than the client's read timeout, a wait DynamoDB never makes a client do.
        # The stand-in gets the time it needs; the client's other settings stay the package's.
        import boto3
        from botocore.config import Config

        config = getattr(dynamo, "_CONFIG", None) or Config()
        patient = config.merge(Config(read_timeout=spec["read_timeout_s"]))
        dynamo._clients["dynamodb"] = boto3.client("dynamodb", config=patient)
    recorder = DynamoRecorder()
    recorder.attach(dynamo.dynamodb_client())
    transport = TimedTransport(httpx.HTTPTransport())
    http = httpx.Client(transport=transport, timeout=10.0, follow_redirects=False)
    # The TOP client takes the container's pooled client from here on every attempt (top_client.py).
    top_client.shared_http_client = lambda: http
    handler = getattr(_load_handlers(), spec["entry"])
    rss_loaded_kb = _rss_kb()

    runs: list[dict[str, Any]] = []
    synced = 0
    wall0, cpu0 = time.perf_counter(), time.process_time()
    while synced < spec["expect"] and len(runs) < spec["max_runs"]:
        context = lambda_context(spec["function_name"], float(spec["timeout_s"]), int(spec["memory_mb"]))
        started = time.perf_counter()
        report = handler(_event(spec["kind"]), context)
        runs.append({"duration_ms": (time.perf_counter() - started) * 1000, "report": report})
        done = int(report.get("synced", 0))
        if done == 0:
            break
        synced += done
    figures = {
        "runs": runs,
        "synced": synced,
        "wall_s": time.perf_counter() - wall0,
        "cpu_s": time.process_time() - cpu0,
        "dynamodb": recorder.snapshot(),
        "top_requests": transport.requests,
        "top_busy_ms": transport.busy_ms,
        "rss_loaded_kb": rss_loaded_kb,
        "ru_maxrss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
        "peak_rss_kb": _peak_rss_kb(),
    }
    Path(argv[1]).write_text(json.dumps(figures, default=str), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
