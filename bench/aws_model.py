"""Where the writeoff drain would be with DynamoDB as a network service: a model, not a measurement.

    .venv/bin/python -m bench.aws_model [--records 10000] [--in-flight 4]

The real ``SyncRunner`` (pipeline included) drains writeoffs through in-memory ports that wait as AWS answers
might: a Query page 10 ms, a BatchGetItem of 100 keys 12 ms, a BatchWriteItem of 25 items 10 ms (``--in-flight``
of them at once, as the store sends them), a TOP call 50 ms. A naive sender under the same waits makes one call
and one UpdateItem per record: 1 / (50 ms + 10 ms). On moto, which answers one request at a time and spends CPU on
each, the overlap cannot show (docs/BENCHMARKS.md); this shows what it is for. The ports are the tests' fakes
(``tests/fakes.py``) with waits added; the latencies are assumptions, not DynamoDB's.
"""

from __future__ import annotations

import argparse
import logging
import math
import sys
import time
from collections.abc import Collection, Sequence
from typing import Any

from taobao_bridge.kinds import Kind
from taobao_bridge.outbox.records import OutboxRecord, Settlement
from taobao_bridge.sync import SyncConfig, SyncRunner
from taobao_bridge.top_client import TopResponse
from tests.fakes import FakeTime, MemoryControl, MemoryOutbox

QUERY_S, BATCH_GET_S, BATCH_WRITE_S, TOP_CALL_S, UPDATE_S = 0.010, 0.012, 0.010, 0.050, 0.010


class _WaitingOutbox(MemoryOutbox):
    def __init__(self, in_flight: int) -> None:
        super().__init__()
        self.in_flight = in_flight

    def _wait(self, requests: int, each_s: float) -> None:
        time.sleep(math.ceil(requests / self.in_flight) * each_s)

    def due(self, kind: Kind, *, now_ms: int, limit: int, held: Collection[OutboxRecord] = ()) -> list[OutboxRecord]:
        time.sleep(QUERY_S)
        records = super().due(kind, now_ms=now_ms, limit=limit, held=held)
        self._wait(math.ceil(len(records) / 100), BATCH_GET_S)
        return records

    def settle(self, settlements: Sequence[Settlement]) -> None:
        self._wait(math.ceil(len(settlements) / 25), BATCH_WRITE_S)
        super().settle(settlements)


class _WaitingPlatform:
    def call(self, method: str, api_params: Any, **_: Any) -> TopResponse:
        time.sleep(TOP_CALL_S)
        body = {"result": {"success": True, "data": True}, "request_id": "r"}
        return TopResponse(method, body, "r", TOP_CALL_S * 1000, 1)


def _writeoff(n: int) -> dict[str, Any]:
    return {
        "biz_type": 2,
        "verify_time": "2026-11-23 10:00:00",
        "tb_store_id": 2343432,
        "service_status": 3,
        "service_id": 1111,
        "service_detail_id": 100000 + n,
        "tb_biz_order_id": 4_000_000_000_000_000_000 + n,
        "verify_batch_no": f"B{n}",
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.aws_model", description=__doc__.split("\n")[0])
    parser.add_argument("--records", type=int, default=10_000)
    parser.add_argument("--in-flight", type=int, default=4, help="DynamoDB batch requests at once")
    args = parser.parse_args(argv)
    logging.getLogger("taobao-bridge").setLevel(logging.WARNING)
    clock = FakeTime()
    outbox = _WaitingOutbox(args.in_flight)
    outbox.add(Kind.WRITEOFF, [_writeoff(n) for n in range(args.records)])
    runner = SyncRunner(Kind.WRITEOFF, outbox, MemoryControl(clock), _WaitingPlatform(), config=SyncConfig())
    started = time.perf_counter()
    report = runner.run(lambda: 600_000)
    wall = time.perf_counter() - started
    naive = 1 / (TOP_CALL_S + UPDATE_S)
    rate = report.synced / wall
    print(
        f"{report.synced} writeoffs in {wall:.2f} s = {rate:,.0f} records/s, {report.calls} TOP calls ({report.status})"
    )
    print(f"naive sender under the same waits: {naive:.1f} records/s; ratio {rate / naive:,.0f}x")
    print(f"command: .venv/bin/python -m bench.aws_model --records {args.records} --in-flight {args.in_flight}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
