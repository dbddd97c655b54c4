"""Accept N writeoffs through the intake HTTP API and drain them with the scheduled sync function, on the
local stack (moto DynamoDB over HTTP, TOP sandbox over HTTP).

    .venv/bin/python -m bench.drain_writeoffs [--records 10000]

Prints the DynamoDB requests per record (counted on the functions' own client, by operation), the signed TOP
calls, and the wall time to accept and to drain. moto is far slower than DynamoDB and its Query cost grows
with table size, so the request counts are the portable figures; the times describe this machine and moto.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time

from bridge_local.intake_client import IntakeClient
from bridge_local.request_counter import RequestCounter
from bridge_local.stack import LocalStack, StackConfig
from taobao_bridge import dynamo
from taobao_bridge.kinds import KINDS, Kind


def writeoff(n: int) -> dict:
    return {
        "biz_type": 2,
        "service_sku_name": "洗车",
        "verify_time": "2026-11-23 10:00:00",
        "tb_store_id": 2343432,
        "service_status": 3,
        "service_id": 1111,
        "service_detail_id": 200000 + n,
        "tb_biz_order_id": 6_000_000_000_000_000_000 + n,
        "verify_batch_no": f"BENCH{n}",
    }


def per_record(counts: dict[str, int], records: int) -> str:
    total = sum(counts.values())
    detail = ", ".join(f"{name} {count}" for name, count in sorted(counts.items()))
    return f"{total} requests = {total / records:.4f} per record ({detail})"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=10_000)
    args = parser.parse_args(argv)
    logging.getLogger("taobao-bridge").setLevel(logging.WARNING)

    config = StackConfig(port=0, dynamodb_port=0, sandbox_port=0, run_schedules=False)
    with LocalStack(config) as stack:
        counter = RequestCounter()
        counter.attach(dynamo.dynamodb_client())  # the client every function in this process uses
        records = [writeoff(n) for n in range(args.records)]

        started = time.perf_counter()
        summary = IntakeClient(stack.url).submit(Kind.WRITEOFF, records, progress=False)
        accept_s = time.perf_counter() - started
        accept_counts = dict(counter.counts)
        if summary.accepted != args.records:
            raise SystemExit(f"intake did not accept everything: {summary}")

        counter.reset()
        (writeoffs,) = [s for s in stack.schedules if s.function_id == "SyncWriteoffsFunction"]
        started = time.perf_counter()
        runs, synced = 0, 0
        while synced < args.records:
            result = stack.run_schedule_once(writeoffs)
            runs += 1
            if not result or result["synced"] == 0:
                raise SystemExit(f"sync stalled after {synced} records: {result}")
            synced += result["synced"]
        drain_s = time.perf_counter() - started
        sync_counts = dict(counter.counts)
        calls = stack.sandbox.calls(KINDS[Kind.WRITEOFF].method)
        accepted_by_platform = len(stack.sandbox.accepted_records(KINDS[Kind.WRITEOFF].method))

    both = {k: accept_counts.get(k, 0) + sync_counts.get(k, 0) for k in set(accept_counts) | set(sync_counts)}
    print(f"records                 {args.records} writeoffs")
    print(f"accept (HTTP intake)    {accept_s:.1f} s; DynamoDB {per_record(accept_counts, args.records)}")
    print(f"drain (scheduled sync)  {drain_s:.1f} s in {runs} run(s); DynamoDB {per_record(sync_counts, args.records)}")
    print(f"accept + sync           DynamoDB {per_record(both, args.records)}")
    print(f"TOP calls               {len(calls)} signed calls (batch sizes {sorted({c.records for c in calls})});")
    print(f"                        platform accepted {accepted_by_platform} records")
    print("reproduce: .venv/bin/python -m bench.drain_writeoffs " + " ".join(sys.argv[1:] if argv is None else argv))
    return 0


if __name__ == "__main__":
    sys.exit(main())
