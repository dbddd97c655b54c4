"""DynamoDB plumbing shared by the stores: one client per container, timeouts that fit the callers' budgets,
and (de)serialisation of plain Python values."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import boto3
from boto3.dynamodb.types import TypeDeserializer, TypeSerializer
from botocore.config import Config

__all__ = ["RequestCounter", "dynamodb_client", "from_item", "to_item"]

_serializer = TypeSerializer()
_deserializer = TypeDeserializer()
_clients: dict[str, Any] = {}

# The Qimen caller gives up after a few seconds: short timeouts and one retry keep the worst case near 3 s.
_CONFIG = Config(connect_timeout=1, read_timeout=2, retries={"mode": "standard", "total_max_attempts": 2})


def dynamodb_client() -> Any:
    """The container's DynamoDB client (boto3 honours AWS_ENDPOINT_URL_DYNAMODB for the local server)."""
    client = _clients.get("dynamodb")
    if client is None:
        client = _clients["dynamodb"] = boto3.client("dynamodb", config=_CONFIG)
    return client


def to_item(values: dict[str, Any]) -> dict[str, Any]:
    """Plain values (str, int, bool, dict, list) as a DynamoDB item; ``None`` values are left out."""
    return {k: _serializer.serialize(v) for k, v in values.items() if v is not None}


def from_item(item: dict[str, Any]) -> dict[str, Any]:
    """A DynamoDB item as plain values, whole numbers as ``int`` (exact, also for 19-digit ids)."""

    def plain(value: Any) -> Any:
        if isinstance(value, Decimal):
            return int(value) if value == value.to_integral_value() else float(value)
        if isinstance(value, dict):
            return {k: plain(v) for k, v in value.items()}
        if isinstance(value, list):
            return [plain(v) for v in value]
        return value

    return {k: plain(_deserializer.deserialize(v)) for k, v in item.items()}


class RequestCounter:
    """Counts the DynamoDB requests a client sends, by operation (benchmarks report counted figures)."""

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
