"""DynamoDB request units, Lambda GB-seconds and dollars, computed the way AWS bills them (pure arithmetic).

The benchmark feeds every DynamoDB request a function sends (its parameters and the parsed answer) to a
``CapacityLedger``, which prices it as on-demand DynamoDB does:

- writes: 1 write request unit per 1 KB of item, rounded up per item; an item that is replaced or updated is
  billed at the larger of its size before and after; items in ``TransactWriteItems`` cost twice; a write whose
  condition failed is billed all the same;
- global secondary indexes: each index entry added or removed is one more write (an entry of a ``KEYS_ONLY``
  index is the keys plus 100 bytes, so one unit); an entry whose index key changes is removed and added (two);
- reads: 1 read request unit per 4 KB, strongly consistent; eventually consistent (every index Query) costs half;
  ``GetItem`` and each key of a ``BatchGetItem`` are rounded up per item (a missing item still costs the minimum);
  a ``Query`` page is rounded up as a whole.

Item sizes before a write come from what the ledger saw earlier (an item read back or written); an item it never
saw counts as new. ``UpdateItem`` cannot be sized from the request alone: it is billed at the item's known size
plus the attributes the update SETs (an upper bound).
"""

from __future__ import annotations

import math
import re
import threading
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from taobao_bridge.dynamo import item_size

__all__ = [
    "PRICES",
    "CapacityLedger",
    "IndexSpec",
    "Prices",
    "TableSpec",
    "dollars_per_million",
    "lambda_gb_seconds",
    "read_units",
    "write_units",
]

WRITE_UNIT_BYTES = 1024
READ_UNIT_BYTES = 4096
INDEX_ENTRY_OVERHEAD_BYTES = 100  # DynamoDB's per-entry overhead in a secondary index
_RANGE_KEY_GUESS_BYTES = 16  # an index key attribute the ledger never saw (name + a 13-digit number)


@dataclass(frozen=True)
class Prices:
    """Published on-demand prices the dollar figures assume."""

    region: str = "us-east-1"
    as_of: str = "2024-11 (DynamoDB on-demand price cut of 2024-11-01; Lambda arm64 prices unchanged)"
    dynamodb_write_per_million: float = 0.625  # USD per million write request units
    dynamodb_read_per_million: float = 0.125  # USD per million read request units
    lambda_gb_second: float = 0.0000133334  # USD per GB-second, arm64
    lambda_requests_per_million: float = 0.20  # USD per million invocations

    def lines(self) -> list[str]:
        return [
            f"DynamoDB on-demand, {self.region}: ${self.dynamodb_write_per_million} per million write request units, "
            f"${self.dynamodb_read_per_million} per million read request units",
            f"Lambda arm64, {self.region}: ${self.lambda_gb_second:.10f} per GB-second, "
            f"${self.lambda_requests_per_million:.2f} per million requests",
            f"prices as published {self.as_of}",
        ]


PRICES = Prices()


def write_units(size_bytes: int) -> int:
    """Write request units for one item of ``size_bytes`` (1 KB each, rounded up, at least one)."""
    return max(1, math.ceil(size_bytes / WRITE_UNIT_BYTES))


def read_units(size_bytes: int, *, consistent: bool) -> float:
    """Read request units for ``size_bytes`` read at once (4 KB each, rounded up, at least one); half for an
    eventually consistent read."""
    units = max(1, math.ceil(size_bytes / READ_UNIT_BYTES))
    return float(units) if consistent else units / 2


def lambda_gb_seconds(durations_ms: Iterable[float], memory_mb: int) -> float:
    """GB-seconds billed for invocations of these durations (each rounded up to the millisecond)."""
    return sum(math.ceil(ms) for ms in durations_ms) / 1000 * memory_mb / 1024


def dollars_per_million(
    *,
    write_units_per_record: float,
    read_units_per_record: float,
    gb_seconds_per_record: float,
    invocations_per_record: float,
    prices: Prices = PRICES,
) -> dict[str, float]:
    """Dollars per million records: DynamoDB writes, reads, Lambda duration, Lambda requests and the total."""
    parts = {
        "dynamodb_writes": write_units_per_record * prices.dynamodb_write_per_million,
        "dynamodb_reads": read_units_per_record * prices.dynamodb_read_per_million,
        "lambda_duration": gb_seconds_per_record * 1_000_000 * prices.lambda_gb_second,
        "lambda_requests": invocations_per_record * prices.lambda_requests_per_million,
    }
    parts["total"] = sum(parts.values())
    return parts


# --------------------------------------------------------------------------------------------- table shapes
@dataclass(frozen=True)
class IndexSpec:
    name: str
    keys: tuple[str, ...]  # hash key, then range key if any
    projection: str = "KEYS_ONLY"


@dataclass(frozen=True)
class TableSpec:
    name: str
    keys: tuple[str, ...]
    indexes: tuple[IndexSpec, ...] = ()

    @classmethod
    def from_create_table(cls, kwargs: Mapping[str, Any]) -> TableSpec:
        """From ``create_table`` keyword arguments (``bridge_local.template.dynamodb_tables``)."""

        def keys(schema: Iterable[Mapping[str, str]]) -> tuple[str, ...]:
            ordered = sorted(schema, key=lambda k: 0 if k["KeyType"] == "HASH" else 1)
            return tuple(k["AttributeName"] for k in ordered)

        indexes = tuple(
            IndexSpec(gsi["IndexName"], keys(gsi["KeySchema"]), gsi.get("Projection", {}).get("ProjectionType", "ALL"))
            for gsi in kwargs.get("GlobalSecondaryIndexes", [])
        )
        return cls(kwargs["TableName"], keys(kwargs["KeySchema"]), indexes)


@dataclass
class _Known:
    """What the ledger knows of one stored item: its size and, per index, its index key (None: no entry)."""

    size: int
    index_keys: dict[str, tuple[str, ...] | None]


@dataclass
class CapacityLedger:
    """Request units of the DynamoDB requests it is shown, by cause. Thread-safe (parallel requests)."""

    tables: Iterable[TableSpec]
    remember: bool = True  # keep item sizes seen; off: every write counts as a new item, every index entry as new
    writes: Counter[str] = field(default_factory=Counter)
    reads: Counter[str] = field(default_factory=Counter)
    requests: Counter[str] = field(default_factory=Counter)  # every request seen, by operation

    def __post_init__(self) -> None:
        self._tables = {spec.name: spec for spec in self.tables}
        self._known: dict[str, _Known] = {}
        self._lock = threading.Lock()

    @property
    def write_total(self) -> float:
        return float(sum(self.writes.values()))

    @property
    def read_total(self) -> float:
        return float(sum(self.reads.values()))

    def reset_counts(self) -> None:
        """Forget the units counted so far (not the item sizes seen)."""
        with self._lock:
            self.writes.clear()
            self.reads.clear()
            self.requests.clear()

    def snapshot(self) -> dict[str, dict[str, float]]:
        with self._lock:
            return {"writes": dict(self.writes), "reads": dict(self.reads), "requests": dict(self.requests)}

    # ------------------------------------------------------------------------------------------- requests
    def observe(self, operation: str, params: Mapping[str, Any], answer: Mapping[str, Any] | None) -> None:
        """Count one request: ``params`` as the client was called, ``answer`` the parsed response (with an
        ``Error`` when it failed). Throttled and failed-by-server requests cost nothing and change nothing."""
        with self._lock:
            self.requests[operation] += 1
        error = ((answer or {}).get("Error") or {}).get("Code")
        if error and error not in ("ConditionalCheckFailedException", "TransactionCanceledException"):
            return
        applied = not error
        handler = getattr(self, f"_{operation}", None)
        if handler is None:
            return  # DescribeTable and the like: control plane, not billed per request
        with self._lock:
            handler(params, answer or {}, applied)

    def _PutItem(self, params: Mapping[str, Any], answer: Mapping[str, Any], applied: bool) -> None:
        self._put(params["TableName"], params["Item"], applied, cause="PutItem")

    def _DeleteItem(self, params: Mapping[str, Any], answer: Mapping[str, Any], applied: bool) -> None:
        self._delete(params["TableName"], params["Key"], applied, cause="DeleteItem")

    def _UpdateItem(self, params: Mapping[str, Any], answer: Mapping[str, Any], applied: bool) -> None:
        self._update(params, applied, cause="UpdateItem", factor=1)

    def _BatchWriteItem(self, params: Mapping[str, Any], answer: Mapping[str, Any], applied: bool) -> None:
        unprocessed = answer.get("UnprocessedItems") or {}
        for table, requests in params["RequestItems"].items():
            left = unprocessed.get(table) or []
            for request in requests:
                if request in left:  # not applied: sent again (and counted then)
                    continue
                if "PutRequest" in request:
                    self._put(table, request["PutRequest"]["Item"], applied, cause="BatchWriteItem")
                else:
                    self._delete(table, request["DeleteRequest"]["Key"], applied, cause="BatchWriteItem")

    def _TransactWriteItems(self, params: Mapping[str, Any], answer: Mapping[str, Any], applied: bool) -> None:
        for action in params["TransactItems"]:
            ((kind, body),) = action.items()
            if kind == "Put":
                self._put(body["TableName"], body["Item"], applied, cause="TransactWriteItems", factor=2)
            elif kind == "Delete":
                self._delete(body["TableName"], body["Key"], applied, cause="TransactWriteItems", factor=2)
            elif kind == "Update":
                self._update(body, applied, cause="TransactWriteItems", factor=2)
            else:  # ConditionCheck: billed as a write of the item it checks
                known = self._known.get(self._key(body["TableName"], body["Key"]))
                self.writes["TransactWriteItems"] += 2 * write_units(known.size if known else 0)

    def _GetItem(self, params: Mapping[str, Any], answer: Mapping[str, Any], applied: bool) -> None:
        item = answer.get("Item")
        size = item_size(item) if item else 0
        self.reads["GetItem"] += read_units(size, consistent=bool(params.get("ConsistentRead")))
        if item and "ProjectionExpression" not in params:
            self._remember(params["TableName"], item, size)

    def _BatchGetItem(self, params: Mapping[str, Any], answer: Mapping[str, Any], applied: bool) -> None:
        responses = answer.get("Responses") or {}
        unprocessed = answer.get("UnprocessedKeys") or {}
        for table, request in params["RequestItems"].items():
            consistent = bool(request.get("ConsistentRead"))
            found = responses.get(table) or []
            for item in found:
                size = item_size(item)
                self.reads["BatchGetItem"] += read_units(size, consistent=consistent)
                if "ProjectionExpression" not in request:
                    self._remember(table, item, size)
            missing = len(request["Keys"]) - len(found) - len((unprocessed.get(table) or {}).get("Keys") or [])
            self.reads["BatchGetItem"] += max(0, missing) * read_units(0, consistent=consistent)

    def _Query(self, params: Mapping[str, Any], answer: Mapping[str, Any], applied: bool) -> None:
        table = self._tables.get(params["TableName"])
        index = next((i for i in table.indexes if i.name == params.get("IndexName")), None) if table else None
        total = 0
        for item in answer.get("Items") or []:
            total += item_size(item)
            if index is not None:  # what travels back may be less than the entry that is read: add its index keys
                known = self._known.get(self._key(params["TableName"], item)) if table else None
                missing = [k for k in index.keys if k not in item]
                total += self._index_key_bytes(known, index, missing)
        consistent = index is None and bool(params.get("ConsistentRead"))
        self.reads["Query"] += read_units(total, consistent=consistent)

    # ---------------------------------------------------------------------------------------------- writes
    def _put(self, table: str, item: Mapping[str, Any], applied: bool, *, cause: str, factor: int = 1) -> None:
        key = self._key(table, item)
        known = self._known.get(key)
        size = item_size(item)
        self.writes[cause] += factor * write_units(max(size, known.size if known else 0))
        if applied:
            after = {i.name: _index_key(item, i) for i in self._indexes(table)}
            self._index_writes(table, known, after)
            self._store(key, _Known(size, after))

    def _delete(self, table: str, key_values: Mapping[str, Any], applied: bool, *, cause: str, factor: int = 1) -> None:
        key = self._key(table, key_values)
        known = self._known.get(key)
        self.writes[cause] += factor * write_units(known.size if known else 0)
        if applied:
            self._index_writes(table, known, {i.name: None for i in self._indexes(table)})
            self._known.pop(key, None)

    def _update(self, params: Mapping[str, Any], applied: bool, *, cause: str, factor: int) -> None:
        table = params["TableName"]
        key = self._key(table, params["Key"])
        known = self._known.get(key)
        sets, removes = _update_clauses(params)
        base = known.size if known else item_size(params["Key"])
        added = sum(len(name.encode("utf-8")) + size for name, (size, _) in sets.items())
        self.writes[cause] += factor * write_units(base + added)
        if not applied:
            return
        after: dict[str, tuple[str, ...] | None] = {}
        for index in self._indexes(table):
            before = known.index_keys.get(index.name) if known else None
            values = dict(zip(index.keys, before or (), strict=False))
            for name in index.keys:
                if name in sets:
                    values[name] = sets[name][1]
                if name in removes:
                    values.pop(name, None)
            after[index.name] = tuple(values[k] for k in index.keys) if all(k in values for k in index.keys) else None
        self._index_writes(table, known, after)
        self._store(key, _Known(max(base, item_size(params["Key"]) + added), after))

    def _index_writes(self, table: str, known: _Known | None, after: Mapping[str, tuple[str, ...] | None]) -> None:
        for index in self._indexes(table):
            old = known.index_keys.get(index.name) if known else None
            new = after.get(index.name)
            changes = (old is not None) + (new is not None) if old != new else 0
            # A KEYS_ONLY entry is the keys plus 100 bytes: one unit. Other projections are not used here.
            self.writes[f"index {index.name}"] += changes * write_units(INDEX_ENTRY_OVERHEAD_BYTES)

    # --------------------------------------------------------------------------------------------- helpers
    def _indexes(self, table: str) -> tuple[IndexSpec, ...]:
        spec = self._tables.get(table)
        return spec.indexes if spec else ()

    def _key(self, table: str, values: Mapping[str, Any]) -> str:
        spec = self._tables.get(table)
        names = spec.keys if spec else tuple(sorted(values))
        return table + "|" + "|".join(_scalar(values.get(name)) for name in names)

    def _remember(self, table: str, item: Mapping[str, Any], size: int) -> None:
        self._store(self._key(table, item), _Known(size, {i.name: _index_key(item, i) for i in self._indexes(table)}))

    def _store(self, key: str, known: _Known) -> None:
        if self.remember:
            self._known[key] = known

    @staticmethod
    def _index_key_bytes(known: _Known | None, index: IndexSpec, names: list[str]) -> int:
        if known is not None and known.index_keys.get(index.name) is not None:
            values = dict(zip(index.keys, known.index_keys[index.name] or (), strict=True))
            return sum(len(name) + len(values[name]) - 2 for name in names)  # less the "S:" type prefix
        return _RANGE_KEY_GUESS_BYTES * len(names)


def _scalar(value: Any) -> str:
    """A key attribute (DynamoDB JSON) as text: ``{"S": "a"}`` -> ``S:a``."""
    if not isinstance(value, Mapping) or len(value) != 1:
        return repr(value)
    ((kind, content),) = value.items()
    return f"{kind}:{content}"


def _index_key(item: Mapping[str, Any], index: IndexSpec) -> tuple[str, ...] | None:
    """The item's key in ``index``, or None when it has no entry there (a sparse index)."""
    if not all(name in item for name in index.keys):
        return None
    return tuple(_scalar(item[name]) for name in index.keys)


_CLAUSE = re.compile(r"\b(SET|REMOVE|ADD|DELETE)\b", re.IGNORECASE)
_PLACEHOLDER = re.compile(r":[A-Za-z0-9_]+")


def _split_top_level(text: str) -> list[str]:
    parts, depth, start = [], 0, 0
    for position, char in enumerate(text):
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        elif char == "," and depth == 0:
            parts.append(text[start:position])
            start = position + 1
    parts.append(text[start:])
    return [part.strip() for part in parts if part.strip()]


def _update_clauses(params: Mapping[str, Any]) -> tuple[dict[str, tuple[int, str]], set[str]]:
    """The attributes an ``UpdateItem`` sets (name -> (value bytes, value as key text)) and removes."""
    names = params.get("ExpressionAttributeNames") or {}
    values = params.get("ExpressionAttributeValues") or {}
    pieces = _CLAUSE.split(params.get("UpdateExpression") or "")
    sets: dict[str, tuple[int, str]] = {}
    removes: set[str] = set()
    for keyword, body in zip(pieces[1::2], pieces[2::2], strict=True):
        keyword = keyword.upper()
        for clause in _split_top_level(body):
            if keyword == "REMOVE":
                removes.add(names.get(clause, clause))
                continue
            target, _, expression = clause.partition("=") if keyword == "SET" else clause.partition(" ")
            name = names.get(target.strip(), target.strip())
            used = [values[p] for p in _PLACEHOLDER.findall(expression) if p in values]
            size = sum(item_size({"": value}) for value in used)
            sets[name] = (size, _scalar(used[-1]) if used else "")
    return sets, removes
