"""A warm Lambda container for the sync functions: ``python -m chaos.worker``, driven by ``chaos.runs``.

It loads ``functions/sync/app.py`` (the real handlers, Powertools decorators and all), installs the DynamoDB
faults on the functions' own client (``taobao_bridge.dynamo.dynamodb_client()``), and sends the TOP client's HTTP
through a transport that
- tags every call with the invocation and a request number (``X-Sandbox-Tag: <tag>/<n>``: the sandbox keeps it,
  so each call has a known sender) and notes the numbers it never read an answer to (timeouts, lost connections),
- caps the client's timeouts at ``CHAOS_TOP_TIMEOUT_S`` (a timeout fault then costs one second, not ten) when the
  package has no ``TOP_TIMEOUT_S`` setting of its own (with one, the harness sets that instead), and
- when the invocation says ``kill_after_call``, reports and hangs as soon as a call came back accepted, so the
  harness can SIGKILL the worker between the platform's acceptance and the settlement.

Protocol, one JSON object per line. In: ``{"tag", "kind", "timeout_s", "dynamo": {...}, "kill_after_call",
"env": {...}}``. Out: ``{"event": "ready"}`` once, then per invocation ``{"event": "called"}`` (only before a hang)
or ``{"event": "done", "tag", "result" | "error", "error_type", "dynamo_faults", "unanswered"}``. Whatever the
functions print (logs, metrics) goes to stderr, which the harness sends to its log file.
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO

import httpx

ROOT = Path(__file__).resolve().parent.parent
TAG_HEADER = "X-Sandbox-Tag"
# functions/sync/app.py's entry points, one Lambda function each (template.yaml).
ENTRY_POINTS = {"writeoff": "writeoffs", "risk": "risk", "external_order": "external_orders"}


class ChaosTransport(httpx.BaseTransport):
    """The real HTTP transport, plus the tag, the timeout cap and the hang after an accepted call."""

    def __init__(self, inner: httpx.BaseTransport, timeout_cap_s: float, on_accepted: Callable[[], None]) -> None:
        self._inner = inner
        self._cap = timeout_cap_s
        self._on_accepted = on_accepted
        self._lock = threading.Lock()
        self.tag = ""
        self.kill_after_call = False
        self.sent = 0
        self.unanswered: list[int] = []  # request numbers whose answer never arrived

    def arm(self, tag: str, kill_after_call: bool) -> None:
        """Start an invocation: its tag, its fate, request numbers from 1 again."""
        with self._lock:
            self.tag, self.kill_after_call, self.sent, self.unanswered = tag, kill_after_call, 0, []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        with self._lock:  # external orders are sent from several threads
            self.sent += 1
            number = self.sent
        request.headers[TAG_HEADER] = f"{self.tag}/{number}"
        timeout = request.extensions.get("timeout")
        if isinstance(timeout, dict):
            request.extensions["timeout"] = {
                k: self._cap if v is None else min(v, self._cap) for k, v in timeout.items()
            }
        try:
            response = self._inner.handle_request(request)
            response.read()  # the whole answer, or the failure to get it, happens here where it can be noted
        except httpx.TransportError:
            with self._lock:
                self.unanswered.append(number)
            raise
        if self.kill_after_call and response.status_code == 200 and _accepted(response.content):
            self._on_accepted()
        return response

    def close(self) -> None:
        self._inner.close()


def _accepted(content: bytes) -> bool:
    """A success envelope (whatever its shape), as the worker sees it: the platform took the call."""
    try:
        document = json.loads(content)
    except ValueError:
        return False
    return isinstance(document, dict) and "error_response" not in document


class _Channel:
    """The protocol's output: the original stdout, one line per message, from any thread."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        self._lock = threading.Lock()

    def send(self, message: dict[str, Any]) -> None:
        with self._lock:
            self._stream.write(json.dumps(message, default=str) + "\n")
            self._stream.flush()


def _load_handlers() -> Any:
    spec = importlib.util.spec_from_file_location("chaos_sync_app", ROOT / "functions" / "sync" / "app.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _scheduled_event(kind: str) -> dict[str, Any]:
    return {
        "version": "0",
        "id": f"chaos-{time.time_ns()}",
        "detail-type": "Scheduled Event",
        "source": "aws.scheduler",
        "account": "123456789012",
        "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "region": os.environ.get("AWS_REGION", "us-east-1"),
        "resources": [f"chaos:sync-{kind}"],
        "detail": {},
    }


def main() -> int:
    channel = _Channel(os.fdopen(os.dup(1), "w", encoding="utf-8"))
    os.dup2(2, 1)  # the functions' own output (Powertools logs and metrics) joins stderr

    from bridge_local.apigw import lambda_context
    from taobao_bridge import dynamo, top_client

    from .dynamo_faults import DynamoFaults, DynamoFaultSettings

    handlers = _load_handlers()
    faults = DynamoFaults()
    faults.install(dynamo.dynamodb_client())
    hung = threading.Event()

    def hang_after_accepted_call() -> None:
        if not hung.is_set():
            hung.set()
            channel.send({"event": "called", "tag": transport.tag})
        time.sleep(3600)  # until the harness's SIGKILL

    from taobao_bridge.settings import ENV

    # A package that sets its own TOP timeout (and lengthens it after a timeout) is left to do so.
    cap = math.inf if hasattr(ENV, "TOP_TIMEOUT_S") else float(os.environ.get("CHAOS_TOP_TIMEOUT_S", "1.0"))
    transport = ChaosTransport(httpx.HTTPTransport(), cap, hang_after_accepted_call)
    http = httpx.Client(transport=transport, timeout=10.0, follow_redirects=False)
    # The TOP client takes the container's pooled client from here on every attempt (top_client.py).
    top_client.shared_http_client = lambda: http
    channel.send({"event": "ready", "pid": os.getpid()})

    for line in sys.stdin:
        command = json.loads(line)
        os.environ.update(command.get("env", {}))
        faults.configure(DynamoFaultSettings.from_dict(command["dynamo"]))
        transport.arm(command["tag"], bool(command.get("kill_after_call")))
        kind = command["kind"]
        handler = getattr(handlers, ENTRY_POINTS[kind])
        context = lambda_context(f"taobao-bridge-sync-{kind}", float(command["timeout_s"]))
        answer: dict[str, Any] = {"event": "done", "tag": command["tag"]}
        try:
            answer["result"] = handler(_scheduled_event(kind), context)
        except Exception as exc:  # what Lambda would report as the invocation's error
            answer["error"] = f"{type(exc).__name__}: {exc}"[:400]
            answer["error_type"] = type(exc).__name__
        answer["dynamo_faults"] = faults.taken()
        answer["unanswered"] = list(transport.unanswered)
        channel.send(answer)
    return 0


if __name__ == "__main__":
    sys.exit(main())
