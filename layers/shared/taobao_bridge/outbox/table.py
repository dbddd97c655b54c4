"""What every reader and writer of the outbox table starts from: its name, the clock, and the container's shared
DynamoDB client, made on first use (tests pass their own)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Self

from ..clock import Clock, system_clock
from ..dynamo import backoff, dynamodb_client, storage_errors, to_item
from ..errors import StorageError

UNPROCESSED_RETRIES = 8  # rounds of UnprocessedItems / UnprocessedKeys before giving up

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

    def get_items(self, pks: Sequence[str], operation: str) -> dict[str, dict[str, Any]]:
        """The stored items of ``pks`` (one ``BatchGetItem``'s worth, strongly consistent) by ``pk``, unprocessed
        keys asked again with backoff. ``operation`` names the read in a ``StorageError``."""
        found: dict[str, dict[str, Any]] = {}
        request: dict[str, Any] = {"Keys": [to_item({"pk": pk}) for pk in pks], "ConsistentRead": True}
        rounds = 0
        while True:
            with storage_errors(operation):
                answer = self.client.batch_get_item(RequestItems={self.table_name: request})
            for item in answer.get("Responses", {}).get(self.table_name, []):
                found[item["pk"]["S"]] = item
            unprocessed = (answer.get("UnprocessedKeys") or {}).get(self.table_name)
            if not unprocessed or not unprocessed.get("Keys"):
                return found
            rounds += 1
            if rounds > UNPROCESSED_RETRIES:
                raise StorageError(
                    f"{operation} failed: {len(unprocessed['Keys'])} keys stayed unprocessed after {rounds} rounds"
                )
            backoff(rounds)
            request = {**unprocessed, "ConsistentRead": True}
