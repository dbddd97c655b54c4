"""Every DynamoDB request the local moto server answers, kept while the tap is open and priced afterwards.

The tap sits where ``bridge_local.moto_fixes`` already hooks moto (``DynamoHandler.call_action``, the one method
every DynamoDB request goes through), so it sees the requests of every process that talks to the stack: the
intake function in this process and the sync functions in their own. While open it only keeps the request and
answer texts (the drain being timed does not wait for any bookkeeping); ``priced`` parses them afterwards
into a ``cost.CapacityLedger``.
"""

from __future__ import annotations

import functools
import json
import threading
from collections.abc import Callable
from typing import Any

from .cost import CapacityLedger

__all__ = ["DynamoTap"]

_lock = threading.Lock()
_captured: list[tuple[str, str, int, str]] | None = None  # (operation, request JSON, HTTP status, answer JSON)
_installed = False


def _install() -> None:
    global _installed
    with _lock:
        if _installed:
            return
        from moto.dynamodb.responses import DynamoHandler

        from bridge_local import moto_fixes

        moto_fixes.apply()  # first, so that the tap sees each request as the serialised server answers it
        original: Callable[[Any], Any] = DynamoHandler.call_action

        @functools.wraps(original)
        def call_action(self: Any) -> Any:
            request = self.body if isinstance(self.body, str) else ""
            answer = original(self)
            if _captured is not None:
                try:
                    status, _, body = answer
                    entry = (str(self._get_action() or ""), request, int(status), body if isinstance(body, str) else "")
                except (TypeError, ValueError):
                    return answer
                _captured.append(entry)  # list.append is atomic: no lock on the request path
            return answer

        DynamoHandler.call_action = call_action
        _installed = True


class DynamoTap:
    """``open()`` before a phase, ``close()`` after it; ``priced(ledger)`` counts what it saw."""

    def __init__(self) -> None:
        _install()
        self._entries: list[tuple[str, str, int, str]] = []

    def open(self) -> None:
        global _captured
        _captured = self._entries = []

    def close(self) -> int:
        global _captured
        _captured = None
        return len(self._entries)

    def priced(self, ledger: CapacityLedger) -> None:
        """Feed what the tap saw to ``ledger``, in the order moto answered it."""
        for operation, request, status, body in self._entries:
            try:
                params = json.loads(request) if request else {}
                answer = json.loads(body) if body else {}
            except ValueError:
                continue
            if status >= 400:
                code = str(answer.get("__type", "")).rpartition("#")[2]
                answer = {**answer, "Error": {"Code": code}}
            ledger.observe(operation, params, answer)
        self._entries = []
