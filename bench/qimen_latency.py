"""End-to-end latency of the Qimen callback on the local stack: signed HTTP call -> handler -> moto -> answer.

    .venv/bin/python -m bench.qimen_latency [--calls 300] [--replays 100] [--url http://127.0.0.1:3000/qimen]

Without --url it starts its own local stack (ephemeral ports). Prints p50/p90/p99/max for new orders and for
replays, and the command that reproduced them. A benchmark, not a test: it asserts only that every call
was answered with success.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from contextlib import ExitStack
from pathlib import Path

import httpx

from bridge_local.qimen_client import new_order_no, signed_query
from taobao_bridge.settings import ENV, LOCAL_DEFAULTS

SEED = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "seed_003_request.json"


def percentile(samples: list[float], p: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def measure(client: httpx.Client, url: str, bodies: list[bytes], secret: str) -> list[float]:
    latencies = []
    for body in bodies:
        query = signed_query(body, secret)
        started = time.perf_counter()
        response = client.post(f"{url}?{query}", content=body, headers={"content-type": "application/json"})
        latencies.append((time.perf_counter() - started) * 1000)
        answer = response.json()
        if answer.get("biz_result") != "success":
            raise SystemExit(f"call failed: {answer}")
    return latencies


def report(name: str, samples: list[float]) -> str:
    return (
        f"{name:<12} n={len(samples):<4} p50={percentile(samples, 50):6.1f} ms  p90={percentile(samples, 90):6.1f} ms"
        f"  p99={percentile(samples, 99):6.1f} ms  max={max(samples):6.1f} ms  mean={statistics.fmean(samples):6.1f} ms"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=300, help="new orders to create")
    parser.add_argument("--replays", type=int, default=100, help="replays of already created orders")
    parser.add_argument("--url", help="a running callback (default: start a local stack)")
    parser.add_argument("--secret", default=LOCAL_DEFAULTS[ENV.QIMEN_APP_SECRET])
    args = parser.parse_args(argv)

    seed = json.loads(SEED.read_text(encoding="utf-8"))
    bodies = []
    for _ in range(args.calls):
        seed["fulfillment_info"]["fulfillment_order_no"] = new_order_no()
        bodies.append(json.dumps(seed, ensure_ascii=False, separators=(",", ":")).encode("utf-8"))

    with ExitStack() as stack:
        url = args.url
        if url is None:
            import logging

            from bridge_local.stack import LocalStack, StackConfig

            logging.getLogger("taobao-bridge").setLevel(logging.WARNING)  # keep the figures readable
            local = stack.enter_context(
                LocalStack(StackConfig(port=0, dynamodb_port=0, sandbox_port=0, run_schedules=False))
            )
            url = f"{local.url}/qimen"
        client = stack.enter_context(httpx.Client(timeout=10))
        measure(client, url, bodies[:10], args.secret)  # warm-up: cold imports and connection set-up
        created = measure(client, url, bodies[10:], args.secret)
        replays = measure(client, url, bodies[10 : 10 + args.replays], args.secret)

    print(report("new order", created))
    print(report("replay", replays))
    print("reproduce: .venv/bin/python -m bench.qimen_latency " + " ".join(sys.argv[1:] if argv is None else argv))
    return 0


if __name__ == "__main__":
    sys.exit(main())
