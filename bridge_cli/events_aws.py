"""``events tail --stack``: FulfillmentOrderReceived events from the stack's event log group (output
``FulfillmentEventLogGroupName``), where an EventBridge rule copies every event (CloudWatch Logs
``FilterLogEvents``)."""

from __future__ import annotations

import json
import time
from collections import deque
from collections.abc import Iterator
from typing import Any

from .target import EVENTS_LOG_GROUP_OUTPUT, DeployedStack, aws_call

__all__ = ["CloudWatchEvents"]


class CloudWatchEvents:
    """The latest events of the log group, then the ones written after them (``newer``)."""

    def __init__(self, stack: DeployedStack, *, since_s: float) -> None:
        self.group = stack.output(EVENTS_LOG_GROUP_OUTPUT)
        self.logs = stack.client("logs")
        self.start_ms = int((time.time() - since_s) * 1000)
        self._seen: set[str] = set()  # event ids at start_ms: FilterLogEvents' startTime is inclusive

    def latest(self, limit: int) -> list[dict[str, Any]]:
        return list(deque(self._read(), maxlen=limit))

    def newer(self) -> list[dict[str, Any]]:
        return list(self._read())

    def _read(self) -> Iterator[dict[str, Any]]:
        request: dict[str, Any] = {"logGroupName": self.group, "startTime": self.start_ms}
        while True:
            page = aws_call(lambda: self.logs.filter_log_events(**request), f"reading log group {self.group}")
            for entry in page.get("events") or []:
                if entry.get("eventId") in self._seen:
                    continue
                millis = int(entry["timestamp"])  # an int in AWS; moto may answer a float
                if millis > self.start_ms:
                    self.start_ms, self._seen = millis, set()
                self._seen.add(entry.get("eventId", ""))
                yield _event_of(entry)
            if not page.get("nextToken"):
                return
            request["nextToken"] = page["nextToken"]


def _event_of(entry: dict[str, Any]) -> dict[str, Any]:
    try:
        event = json.loads(entry.get("message") or "")
    except ValueError:
        return {"time": None, "detail-type": "unreadable log line", "detail": entry.get("message")}
    return event if isinstance(event, dict) else {"detail": event}
