"""What a process spends on DynamoDB and on TOP calls: request counts and busy time by operation, from botocore's
own events on the client the functions use, and from the TOP client's HTTP transport.

Busy time is the sum of the requests' own durations: with requests in parallel it can exceed the wall time, and
each operation's share of the wall time says where a run waits.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from typing import Any

import httpx

__all__ = ["DynamoRecorder", "TimedTransport"]


class DynamoRecorder:
    """Counts and busy milliseconds of a boto3 DynamoDB client's requests, by operation."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()
        self.busy_ms: Counter[str] = Counter()
        self._lock = threading.Lock()

    def attach(self, client: Any) -> Any:
        events = client.meta.events
        events.register("before-call.dynamodb", self._started)
        events.register("after-call.dynamodb", self._answered)
        return client

    def reset(self) -> None:
        with self._lock:
            self.counts.clear()
            self.busy_ms.clear()

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {"counts": dict(self.counts), "busy_ms": dict(self.busy_ms)}

    # botocore passes one ``context`` dict through every event of one API call.
    def _started(self, context: dict[str, Any], **_: Any) -> None:
        context["bench_started"] = time.perf_counter()

    def _answered(self, model: Any, parsed: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
        elapsed_ms = (time.perf_counter() - context.get("bench_started", time.perf_counter())) * 1000
        with self._lock:
            self.counts[model.name] += 1
            self.busy_ms[model.name] += elapsed_ms


class TimedTransport(httpx.BaseTransport):
    """An HTTP transport that notes how many requests it carried and how long each took, body included."""

    def __init__(self, inner: httpx.BaseTransport) -> None:
        self._inner = inner
        self._lock = threading.Lock()
        self.requests = 0
        self.busy_ms = 0.0

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        started = time.perf_counter()
        try:
            response = self._inner.handle_request(request)
            response.read()
            return response
        finally:
            with self._lock:
                self.requests += 1
                self.busy_ms += (time.perf_counter() - started) * 1000

    def close(self) -> None:
        self._inner.close()
