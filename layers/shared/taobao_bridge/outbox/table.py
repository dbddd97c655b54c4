"""What every reader and writer of the outbox table starts from: its name, the clock, and the container's shared
DynamoDB client, made on first use (tests pass their own)."""

from __future__ import annotations

from typing import Any, Self

from ..clock import Clock, system_clock
from ..dynamo import dynamodb_client

__all__ = ["OutboxTable"]


class OutboxTable:
    """The base of ``OutboxStore``, ``RunControl`` and ``RecordOperations``. Thread-compatible."""

    def __init__(self, table_name: str, *, client: Any | None = None, clock: Clock = system_clock) -> None:
        self.table_name = table_name
        self.clock = clock
        self._client = client

    @classmethod
    def from_settings(cls, settings: Any) -> Self:
        """On the table named by ``OUTBOX_TABLE``."""
        return cls(settings.require("outbox_table"))

    @property
    def client(self) -> Any:
        if self._client is None:
            self._client = dynamodb_client()
        return self._client
