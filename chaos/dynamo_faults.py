"""DynamoDB faults injected on a boto3 client, the one the functions use (``taobao_bridge.dynamo.dynamodb_client()``).

Botocore emits ``before-call.dynamodb.<Operation>`` before it sends a request and ``after-call.dynamodb.<Operation>``
once the answer is parsed; handlers registered on ``client.meta.events`` run inside the functions' own calls, so
the code under test meets the faults exactly where DynamoDB would put them:

- ``throttle``: before the request, a ``ThrottlingException`` ``ClientError`` (the SDK's own retries spent);
- ``connection``: before the request, ``EndpointConnectionError`` (nothing reached DynamoDB);
- ``applied_timeout``: the request IS applied, then ``ReadTimeoutError`` (the caller cannot tell it was applied);
- ``slow``: the request waits ``slow_s`` before it goes (a latency spike);
- a stall: every request of an operation in ``stall_ops`` waits ``stall_s`` (used to make a worker overrun its
  Lambda deadline while settling, right after a platform call).

A handler raising from ``before-call`` skips the SDK's retry loop (which runs inside the send), so one injected
fault is one failed call as the caller sees it. Decisions come from a seeded ``random.Random``.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from botocore.exceptions import ClientError, EndpointConnectionError, ReadTimeoutError

__all__ = ["MODES", "DynamoFaultSettings", "DynamoFaults"]

MODES = ("throttle", "connection", "applied_timeout", "slow")
_CONTEXT_KEY = "chaos_applied_timeout"  # botocore hands the same request context to both events


@dataclass(frozen=True)
class DynamoFaultSettings:
    """What to inject; plain data, so the harness can send it to a worker process as JSON."""

    rate: float = 0.0  # chance that one request meets a fault
    seed: int = 0
    modes: tuple[str, ...] = MODES
    slow_s: float = 0.3
    stall_ops: tuple[str, ...] = ()
    stall_s: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> DynamoFaultSettings:
        values = dict(data)
        for name in ("modes", "stall_ops"):
            values[name] = tuple(values.get(name, ()))
        unknown = set(values) - {f.name for f in fields(cls)}
        if unknown or not set(values["modes"]) <= set(MODES) or not 0 <= float(values.get("rate", 0)) <= 1:
            raise ValueError(f"bad DynamoDB fault settings: {data!r}")
        return cls(**values)


@dataclass
class DynamoFaults:
    """The handlers and what they injected (``injected``: ``"<Operation>:<mode>"``, in order). Thread-safe."""

    settings: DynamoFaultSettings = field(default_factory=DynamoFaultSettings)
    injected: list[str] = field(default_factory=list)
    _rng: random.Random = field(default_factory=random.Random)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def configure(self, settings: DynamoFaultSettings) -> None:
        """New settings; the random sequence restarts from their seed and ``injected`` is emptied."""
        with self._lock:
            self.settings = settings
            self._rng = random.Random(settings.seed)
            self.injected = []

    def taken(self) -> list[str]:
        """What was injected since the last ``configure``."""
        with self._lock:
            return list(self.injected)

    def install(self, client: Any) -> None:
        """Register the handlers on ``client`` (only that client: botocore copies the emitter per client)."""
        client.meta.events.register("before-call.dynamodb", self._before_call, unique_id="chaos-before-call")
        client.meta.events.register("after-call.dynamodb", self._after_call, unique_id="chaos-after-call")

    def _draw(self, operation: str) -> str | None:
        with self._lock:
            settings = self.settings
            if settings.rate <= 0 or self._rng.random() >= settings.rate:
                return None
            mode = self._rng.choice(settings.modes)
            self.injected.append(f"{operation}:{mode}")
            return mode

    def _before_call(self, model: Any, context: dict[str, Any], **_: Any) -> None:
        operation = str(model.name)
        settings = self.settings
        if operation in settings.stall_ops and settings.stall_s > 0:
            with self._lock:
                self.injected.append(f"{operation}:stall")
            time.sleep(settings.stall_s)
        mode = self._draw(operation)
        if mode == "throttle":
            error = {"Code": "ThrottlingException", "Message": "chaos: rate of requests exceeds the allowed throughput"}
            raise ClientError({"Error": error, "ResponseMetadata": {"HTTPStatusCode": 400}}, operation)
        if mode == "connection":
            raise EndpointConnectionError(endpoint_url="chaos://dynamodb")
        if mode == "applied_timeout":
            context[_CONTEXT_KEY] = True
        elif mode == "slow":
            time.sleep(settings.slow_s)
        # Returning None matters: a value returned from before-call would stand in for DynamoDB's answer.

    def _after_call(self, http_response: Any, context: dict[str, Any], **_: Any) -> None:
        # Only a request DynamoDB carried out counts as applied: an error answer stays what it was.
        if context.pop(_CONTEXT_KEY, False) and getattr(http_response, "status_code", 500) < 300:
            raise ReadTimeoutError(endpoint_url="chaos://dynamodb (answer lost after the request was applied)")
