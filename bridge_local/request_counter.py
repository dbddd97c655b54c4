"""Counting the DynamoDB requests a boto3 client sends (benchmarks and cost tests report counted figures).

Development tooling: it lives here, not in the Lambda layer, because no function needs it.
"""

from __future__ import annotations

from typing import Any

__all__ = ["RequestCounter"]


class RequestCounter:
    """Counts the DynamoDB requests a client sends, by operation."""

    def __init__(self) -> None:
        self.counts: dict[str, int] = {}

    def attach(self, client: Any) -> Any:
        client.meta.events.register("before-call.dynamodb", self._count)
        return client

    def _count(self, model: Any, **_: Any) -> None:
        self.counts[model.name] = self.counts.get(model.name, 0) + 1

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def reset(self) -> None:
        self.counts.clear()
