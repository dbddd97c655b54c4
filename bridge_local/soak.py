"""Sustained load on the local stack, to see whether its memory stays bounded.

    .venv/bin/python -m bridge_local.soak [--qimen 20000] [--intake 4000] [--threads 8] [--tracemalloc]
    .venv/bin/python -m bridge_local.soak --url http://127.0.0.1:3000 --pid <pid of make run>

Without ``--url`` it starts its own local stack (ephemeral ports, in memory, the sync schedules running every
``--sync-interval`` seconds) and reads its own RSS; with ``--url`` it loads a running stack and reads the RSS of
``--pid``. Qimen calls are new orders and replays (``--replay-share``); intake posts are writeoff batches, some
of them posted again (duplicates). RSS is printed after a warm-up and at every tenth of the run; the stored
items explain what part of the growth is data (moto keeps every item in memory, as DynamoDB keeps it on disk).
``--tracemalloc`` (in-process only) prints the source lines that allocated the most since the warm-up.
Every call must be answered success / 202, or the run says how many were not.
"""

from __future__ import annotations

import argparse
import gc
import json
import random
import sys
import sysconfig
import threading
import time
import tracemalloc
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx

from bridge_local.qimen_client import signed_query
from taobao_bridge.jsonutil import dumps
from taobao_bridge.settings import ENV, LOCAL_DEFAULTS

__all__ = ["main", "rss_mb"]

SEED = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "seed_003_request.json"


def rss_mb(pid: int | str = "self") -> float:
    """Resident set size of a process in MiB (Linux ``/proc``)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for process {pid}")


class _Load:
    """The calls of one soak run and what came back."""

    def __init__(self, base_url: str, secret: str, replay_share: float, records_per_post: int) -> None:
        self.base_url = base_url
        self.secret = secret
        self.replay_share = replay_share
        self.records_per_post = records_per_post
        self.seed = json.loads(SEED.read_text(encoding="utf-8"))
        self.rng = random.Random(7)
        self.orders: list[bytes] = []
        self.batches: list[bytes] = []
        self.outcomes: Counter[str] = Counter()
        self.lock = threading.Lock()
        self.client = httpx.Client(timeout=60, limits=httpx.Limits(max_connections=64))
        self.first_order = 10**18 + self.rng.randrange(10**17)

    def qimen(self, n: int) -> None:
        with self.lock:
            replay = self.orders and self.rng.random() < self.replay_share
            if replay:
                body = self.rng.choice(self.orders)
            else:
                payload = json.loads(json.dumps(self.seed))
                payload["fulfillment_info"]["fulfillment_order_no"] = str(self.first_order + n)
                body = dumps(payload).encode("utf-8")
                self.orders.append(body)
        response = self.client.post(
            f"{self.base_url}/qimen?{signed_query(body, self.secret)}",
            content=body,
            headers={"content-type": "application/json;charset=utf-8"},
        )
        ok = response.status_code == 200 and response.json().get("biz_result") == "success"
        self._count("qimen replay" if replay else "qimen new", ok, response)

    def intake(self, n: int) -> None:
        with self.lock:
            again = self.batches and self.rng.random() < 0.25
            if again:
                body = self.rng.choice(self.batches)
            else:
                records = [
                    {
                        "biz_type": 2,
                        "verify_time": "2026-03-01 12:00:00",
                        "tb_store_id": 2343432,
                        "service_status": 2,
                        "service_id": 1111,
                        "service_detail_id": detail,
                        "tb_biz_order_id": self.first_order + n,
                        "verify_batch_no": "S1",
                    }
                    for detail in range(self.records_per_post)
                ]
                body = dumps(records).encode("utf-8")
                self.batches.append(body)
        response = self.client.post(
            f"{self.base_url}/v1/writeoffs", content=body, headers={"content-type": "application/json;charset=utf-8"}
        )
        self._count("intake duplicate" if again else "intake new", response.status_code == 202, response)

    def _count(self, kind: str, ok: bool, response: httpx.Response) -> None:
        with self.lock:
            self.outcomes[kind if ok else f"{kind} FAILED ({response.status_code} {response.text[:60]})"] += 1


def _print_growth(before: tracemalloc.Snapshot, after: tracemalloc.Snapshot) -> None:
    """The sites that allocated most of what is still alive, each named by the first frame outside the standard
    library (json.loads does not own what it returns; its caller does)."""
    stdlib = sysconfig.get_paths()["stdlib"]
    project = str(SEED.parents[2]) + "/"
    print("largest growth since the warm-up, by the code that asked for it (tracemalloc):")
    for stat in after.compare_to(before, "traceback")[:12]:
        frames = list(reversed(stat.traceback))  # most recent first
        owner = next((f for f in frames if not f.filename.startswith(stdlib)), frames[0])
        where = f"{owner.filename.split('site-packages/')[-1].replace(project, '')}:{owner.lineno}"
        inner = f"{frames[0].filename.split('/')[-1]}:{frames[0].lineno}"
        print(f"  {stat.size_diff / 2**20:7.1f} MiB {stat.count_diff:>8} blocks  {where}  (in {inner})")


def _tables(stack: Any) -> dict[str, int]:
    client = stack.dynamodb_client()
    counts = {}
    for name in stack.created_tables:
        counts[name] = int(client.describe_table(TableName=name)["Table"].get("ItemCount", 0))
    return counts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bridge_local.soak", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--qimen", type=int, default=20_000, help="Qimen calls (new orders and replays)")
    parser.add_argument("--intake", type=int, default=4_000, help="POST /v1/writeoffs calls")
    parser.add_argument("--records-per-post", type=int, default=5)
    parser.add_argument("--replay-share", type=float, default=0.2, help="share of Qimen calls that are replays")
    parser.add_argument("--threads", type=int, default=8, help="client threads")
    parser.add_argument("--sync-interval", type=float, default=2.0, help="seconds between sync runs (own stack)")
    parser.add_argument("--url", help="base URL of a running local stack (default: start one)")
    parser.add_argument("--pid", help="with --url: the process whose RSS to read")
    parser.add_argument("--tracemalloc", action="store_true", help="print the top allocation sites (own stack)")
    parser.add_argument("--secret", default=LOCAL_DEFAULTS[ENV.QIMEN_APP_SECRET])
    args = parser.parse_args(argv)
    if args.url and not args.pid:
        parser.error("--url needs --pid (the process to measure)")

    with ExitStack() as resources:
        stack: Any = None
        if args.url:
            base_url, pid = args.url.rstrip("/"), args.pid
        else:
            from bridge_local.stack import LocalStack, StackConfig

            config = StackConfig(port=0, dynamodb_port=0, sandbox_port=0, sync_interval_s=args.sync_interval)
            stack = resources.enter_context(LocalStack(config))
            base_url, pid = stack.url, "self"
        load = _Load(base_url, args.secret, args.replay_share, args.records_per_post)
        resources.callback(load.client.close)

        calls = [(load.qimen, n) for n in range(args.qimen)] + [(load.intake, n) for n in range(args.intake)]
        random.Random(11).shuffle(calls)
        warmup, calls = calls[:200], calls[200:]
        with ThreadPoolExecutor(max_workers=args.threads) as pool:
            list(pool.map(lambda call: call[0](call[1]), warmup))
        gc.collect()
        if args.tracemalloc and stack is not None:
            tracemalloc.start(25)
            before = tracemalloc.take_snapshot()
        started = time.perf_counter()
        rss_start = rss_mb(pid)
        print(f"after warm-up ({len(warmup)} calls): RSS {rss_start:.0f} MiB", flush=True)
        step = max(1, len(calls) // 10)
        done = 0
        with ThreadPoolExecutor(max_workers=args.threads) as pool:
            for start in range(0, len(calls), step):
                part = calls[start : start + step]
                list(pool.map(lambda call: call[0](call[1]), part))
                done += len(part)
                rate = done / (time.perf_counter() - started)
                print(f"  {done:>6} calls  {rate:6.0f}/s  RSS {rss_mb(pid):6.0f} MiB", flush=True)
        gc.collect()
        rss_end = rss_mb(pid)
        elapsed = time.perf_counter() - started
        print(f"done: {done} calls in {elapsed:.0f} s, RSS {rss_start:.0f} -> {rss_end:.0f} MiB", flush=True)
        print("answers: " + ", ".join(f"{kind}: {count}" for kind, count in sorted(load.outcomes.items())))
        if stack is not None:
            print("stored items: " + ", ".join(f"{name} {count}" for name, count in _tables(stack).items()))
            if stack.sandbox is not None:
                calls = stack.sandbox.calls()
                kept = sum(len(stack.sandbox.accepted_records(method)) for method in {c.method for c in calls})
                print(f"TOP sandbox: {len(calls)} recorded calls, {kept} accepted records kept")
        if args.tracemalloc and stack is not None:
            _print_growth(before, tracemalloc.take_snapshot())
        failed = sum(count for kind, count in load.outcomes.items() if "FAILED" in kind)
        return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
