"""DynamoDB plumbing shared by the stores (``outbox``, ``fulfillment_store``): one client per container with
timeouts that fit the callers' budgets, (de)serialisation of plain values, DynamoDB's limits (moto, the local
server, does not enforce them, so the stores do), item sizes as DynamoDB counts them, and one way to turn boto
errors into ``StorageError``.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from decimal import Decimal
from typing import Any, TypeVar

import boto3
from boto3.dynamodb.types import TypeDeserializer, TypeSerializer
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from .errors import StorageError

__all__ = [
    "MAX_BATCH_GET_KEYS",
    "MAX_BATCH_WRITE_ITEMS",
    "MAX_ITEM_BYTES",
    "MAX_KEY_BYTES",
    "MAX_POOL_CONNECTIONS",
    "MAX_QUERY_LIMIT",
    "MAX_TRANSACT_BYTES",
    "MAX_TRANSACT_ITEMS",
    "RETRYABLE_CODES",
    "RETRYABLE_REASONS",
    "backoff",
    "chunks",
    "describe_error",
    "dynamodb_client",
    "error_code",
    "from_item",
    "is_retryable",
    "is_transaction_conflict",
    "item_size",
    "maybe_applied",
    "storage_errors",
    "to_item",
    "truncate_utf8",
]

# DynamoDB's limits (moto accepts more of each).
MAX_ITEM_BYTES = 400 * 1024
MAX_TRANSACT_ITEMS = 100
MAX_TRANSACT_BYTES = 4_000_000  # aggregate item size per transaction: 4 MB, less a margin for the request
MAX_BATCH_WRITE_ITEMS = 25
MAX_BATCH_GET_KEYS = 100
MAX_QUERY_LIMIT = 1000
MAX_KEY_BYTES = 2048  # a partition key value

# Error codes (and transaction cancellation reasons) that say "try again", not "you are wrong".
RETRYABLE_CODES = frozenset(
    {
        "TransactionConflictException",
        "TransactionInProgressException",
        "ThrottlingException",
        "ProvisionedThroughputExceededException",
        "RequestLimitExceeded",
        "InternalServerError",
    }
)
RETRYABLE_REASONS = frozenset({"TransactionConflict", "ThrottlingError", "ProvisionedThroughputExceeded"})

# botocore logs whole requests and answers at DEBUG, and ours carry merchants' records and orders (names, phone
# numbers): keep that out of the logs whatever level a function or a test runs at.
_botocore_log = logging.getLogger("botocore")
_botocore_log.setLevel(max(logging.INFO, _botocore_log.getEffectiveLevel()))

_serializer = TypeSerializer()
_deserializer = TypeDeserializer()
_clients: dict[str, Any] = {}

# Connections the client keeps open: an accept puts 16 records at once (outbox.accept.PARALLEL_PUTS) and a sync
# run keeps up to 8 batch requests in flight; beyond the pool, urllib3 opens and discards a connection per request.
MAX_POOL_CONNECTIONS = 24
# The Qimen caller gives up after a few seconds: short timeouts and one retry keep the worst case near 3 s.
_CONFIG = Config(
    connect_timeout=1,
    read_timeout=2,
    retries={"mode": "standard", "total_max_attempts": 2},
    max_pool_connections=MAX_POOL_CONNECTIONS,
)


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


# ------------------------------------------------------------------------------------------------- sizes
def item_size(item: Mapping[str, Any]) -> int:
    """The size DynamoDB counts for an item (DynamoDB JSON): attribute names plus values, UTF-8.

    Numbers count 1 byte per two significant digits plus 1; lists and maps 3 bytes plus 1 per element.
    """
    return sum(len(name.encode("utf-8")) + _value_size(value) for name, value in item.items())


def _value_size(value: Mapping[str, Any]) -> int:
    ((kind, content),) = value.items()
    if kind == "S":
        return len(content.encode("utf-8"))
    if kind == "N":
        return _number_size(content)
    if kind == "B":
        return len(content)
    if kind in ("BOOL", "NULL"):
        return 1
    if kind == "SS":
        return sum(len(text.encode("utf-8")) for text in content)
    if kind == "NS":
        return sum(_number_size(text) for text in content)
    if kind == "BS":
        return sum(len(blob) for blob in content)
    if kind == "L":
        return 3 + sum(1 + _value_size(element) for element in content)
    if kind == "M":
        return 3 + sum(1 + len(key.encode("utf-8")) + _value_size(element) for key, element in content.items())
    raise ValueError(f"unknown DynamoDB type {kind!r}")


def _number_size(text: str) -> int:
    mantissa = text.lstrip("+-").lower().split("e", 1)[0].replace(".", "")
    significant = mantissa.strip("0") or "0"
    return (len(significant) + 1) // 2 + 1


def truncate_utf8(text: str, max_bytes: int) -> str:
    """``text`` cut to at most ``max_bytes`` of UTF-8 (with a marker), so a stored message cannot outgrow an item."""
    encoded = text.encode("utf-8")
    if len(encoded) <= max_bytes:
        return text
    marker = "…[truncated]"
    keep = max_bytes - len(marker.encode("utf-8"))
    return encoded[:keep].decode("utf-8", errors="ignore") + marker


_T = TypeVar("_T")


def chunks(
    values: Sequence[_T], max_count: int, max_bytes: int | None = None, *, size: Callable[[_T], int] | None = None
) -> Iterator[list[_T]]:
    """Consecutive runs of at most ``max_count`` values and (with ``size``) at most ``max_bytes`` in all."""
    chunk: list[_T] = []
    total = 0
    for value in values:
        weight = size(value) if size is not None else 0
        if chunk and (len(chunk) >= max_count or (max_bytes is not None and total + weight > max_bytes)):
            yield chunk
            chunk, total = [], 0
        chunk.append(value)
        total += weight
    if chunk:
        yield chunk


# ------------------------------------------------------------------------------------------------ errors
def error_code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def describe_error(exc: ClientError) -> str:
    """``Code: Message`` of a boto ClientError, for messages that name what failed."""
    error = exc.response.get("Error", {})
    return f"{error.get('Code', 'unknown')}: {error.get('Message', '')}".strip()


def is_retryable(exc: ClientError) -> bool:
    """Whether trying again may succeed: throttling, conflicts, and any 5xx (DynamoDB's own failure, whatever
    its body says; a local server may answer one without a code)."""
    return error_code(exc) in RETRYABLE_CODES or _http_status(exc) >= 500


def maybe_applied(exc: ClientError) -> bool:
    """Whether a write answered with this error may still have taken effect: only a 5xx leaves it open; any
    other error answer means DynamoDB refused the request."""
    return error_code(exc) in ("InternalServerError", "ServiceUnavailable") or _http_status(exc) >= 500


def _http_status(exc: ClientError) -> int:
    status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    return status if isinstance(status, int) else 0


def is_transaction_conflict(exc: ClientError) -> bool:
    """Whether a transaction failed only because another writer touched one of its keys at the same moment."""
    reasons = exc.response.get("CancellationReasons") or []
    return error_code(exc) == "TransactionConflictException" or any(
        reason.get("Code") == "TransactionConflict" for reason in reasons
    )


@contextmanager
def storage_errors(operation: str) -> Iterator[None]:
    """Every boto error inside becomes ``StorageError`` naming ``operation``."""
    try:
        yield
    except ClientError as exc:
        raise StorageError(f"{operation} failed: {describe_error(exc)}") from exc
    except BotoCoreError as exc:
        raise StorageError(f"{operation} failed: {exc}") from exc


def backoff(attempt: int) -> None:
    """Sleep before retry ``attempt`` (1, 2, ...): exponential from 50 ms, capped at 2 s, jittered."""
    time.sleep(min(2.0, 0.05 * 2 ** (attempt - 1)) * random.uniform(0.5, 1.0))
