"""Lambda's DynamoDB event source mapping, emulated: every ``Type: DynamoDB`` event of template.yaml polls its
table's stream on moto and invokes the function with the event Lambda would send.

What is emulated, from the event's properties: ``BatchSize`` (records per invocation), ``FilterCriteria`` (records
whose pattern does not match are dropped before the function sees them, as Lambda does; equality lists and nested
objects, the only pattern forms the template uses; anything else is refused at start), ``FunctionResponseTypes:
[ReportBatchItemFailures]`` (the function's ``batchItemFailures`` make the batch retried from the oldest failed
record) and ``MaximumRetryAttempts`` (then the batch is logged as given up where AWS would send its stream
positions to the on-failure destination). A function that raises has its whole batch retried; ``Bisect...`` is
not emulated (a batch is retried whole). Records are delivered in order, one batch at a time per stream.

The poller starts at the stream's end (``LATEST``) when the stack starts: the tables restored from
``.local/dynamodb.json`` are written into moto again at start (through ``put_item``, which records them in the
stream, when a table's definition changed in template.yaml), and those writes are not new orders.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from botocore.exceptions import ClientError

from taobao_bridge.dynamo import error_code

from .template import _DEFAULT_MEMORY_MB, _DEFAULT_TIMEOUT_S, _functions

__all__ = ["StreamPoller", "StreamSource", "UnsupportedPattern", "matches", "stream_sources"]

log = logging.getLogger("bridge_local")

Invoke = Callable[[str, dict[str, Any], float, int], Any]
_RETRY_PAUSE_S = 0.2


class UnsupportedPattern(ValueError):
    """Raised when a FilterCriteria pattern uses a form the local emulation does not evaluate."""


@dataclass
class StreamSource:
    """One ``Type: DynamoDB`` event of one function."""

    function_id: str
    code_uri: str
    handler: str
    table: str
    environment: dict[str, str] = field(default_factory=dict)
    timeout_s: int = _DEFAULT_TIMEOUT_S
    memory_mb: int = _DEFAULT_MEMORY_MB
    reserved_concurrency: int | None = None
    batch_size: int = 100
    maximum_retry_attempts: int = -1
    """-1: until the record leaves the stream (Lambda's default); locally, until the stack stops."""
    report_batch_item_failures: bool = False
    filters: list[dict[str, Any]] = field(default_factory=list)


def _check_pattern(pattern: Any, where: str) -> None:
    if not isinstance(pattern, dict):
        raise UnsupportedPattern(f"{where}: a filter pattern must be a JSON object")
    for key, rule in pattern.items():
        if isinstance(rule, dict):
            _check_pattern(rule, f"{where}.{key}")
        elif not isinstance(rule, list) or any(isinstance(value, dict | list) for value in rule):
            raise UnsupportedPattern(f"{where}.{key}: only lists of values and nested objects are emulated locally")


def matches(pattern: Mapping[str, Any], data: Any) -> bool:
    """Whether ``data`` matches an EventBridge-style ``pattern`` of value lists and nested objects."""
    if not isinstance(data, Mapping):
        return False
    for key, rule in pattern.items():
        value = data.get(key)
        if isinstance(rule, Mapping):
            if not matches(rule, value):
                return False
        elif isinstance(value, list):
            if not any(item in rule for item in value):
                return False
        elif value not in rule:
            return False
    return True


def _stream_table(value: Any) -> str | None:
    # Stream: !GetAtt Table.StreamArn -> the table's logical id (= its local name).
    if isinstance(value, dict) and "Fn::GetAtt" in value:
        resource, attribute = value["Fn::GetAtt"]
        if attribute == "StreamArn":
            return str(resource)
    return None


def stream_sources(template: Mapping[str, Any]) -> list[StreamSource]:
    """Every ``Type: DynamoDB`` event of every function. Raises ``ValueError`` for one the stack cannot emulate."""
    sources = []
    for logical_id, settings, events in _functions(template):
        for name, event in events.items():
            if not isinstance(event, dict) or event.get("Type") != "DynamoDB":
                continue
            properties = event.get("Properties") or {}
            table = _stream_table(properties.get("Stream"))
            if table is None:
                raise ValueError(f"{logical_id}/{name}: Stream must be !GetAtt <table>.StreamArn locally")
            filters = []
            for index, entry in enumerate((properties.get("FilterCriteria") or {}).get("Filters") or []):
                pattern = json.loads(entry["Pattern"]) if isinstance(entry["Pattern"], str) else entry["Pattern"]
                _check_pattern(pattern, f"{logical_id}/{name} filter {index}")
                filters.append(pattern)
            sources.append(
                StreamSource(
                    table=table,
                    batch_size=int(properties.get("BatchSize", 100)),
                    maximum_retry_attempts=int(properties.get("MaximumRetryAttempts", -1)),
                    report_batch_item_failures="ReportBatchItemFailures"
                    in (properties.get("FunctionResponseTypes") or []),
                    filters=filters,
                    **settings,
                )
            )
    return sources


def lambda_record(record: Mapping[str, Any], stream_arn: str) -> dict[str, Any]:
    """A ``GetRecords`` record as Lambda hands it to the function (creation time in epoch seconds)."""
    change = dict(record.get("dynamodb") or {})
    created = change.get("ApproximateCreationDateTime")
    if isinstance(created, datetime):
        change["ApproximateCreationDateTime"] = created.timestamp()
    shaped = {key: value for key, value in record.items() if key != "dynamodb"}
    shaped["dynamodb"] = change
    shaped["eventSourceARN"] = stream_arn
    return shaped


@dataclass
class _Shard:
    source: StreamSource
    stream_arn: str
    shard_id: str
    iterator: str | None
    last_sequence: str | None = None  # of the last record read: where a lost iterator resumes


class StreamPoller:
    """Polls every source's stream on moto and invokes its function, in order, with retries."""

    def __init__(
        self,
        sources: list[StreamSource],
        dynamodb: Any,
        streams: Any,
        invoke: Invoke,
        *,
        interval_s: float = 0.2,
        retry_pause_s: float = _RETRY_PAUSE_S,
    ) -> None:
        self.sources = sources
        self.dynamodb = dynamodb
        self.streams = streams
        self.invoke = invoke
        self.interval_s = interval_s
        self.retry_pause_s = retry_pause_s
        self.given_up: list[dict[str, Any]] = []  # what AWS would send to the on-failure destination
        self._shards: list[_Shard] = []

    def start_at_end(self) -> None:
        """Position every source at the end of its stream: only writes from now on are delivered."""
        self._shards = []
        for source in self.sources:
            arn = self.dynamodb.describe_table(TableName=source.table)["Table"].get("LatestStreamArn")
            if not arn:
                raise ValueError(f"{source.function_id}: table {source.table} has no stream (StreamSpecification)")
            for shard in self.streams.describe_stream(StreamArn=arn)["StreamDescription"]["Shards"]:
                iterator = self.streams.get_shard_iterator(
                    StreamArn=arn, ShardId=shard["ShardId"], ShardIteratorType="LATEST"
                )["ShardIterator"]
                self._shards.append(_Shard(source, arn, shard["ShardId"], iterator))

    def run(self, stopping: threading.Event) -> None:
        while not stopping.is_set():
            try:
                delivered = self.poll_once(stopping)
            except Exception:  # a stopped moto, a bug: say it and keep polling, as Lambda's poller would
                if stopping.is_set():
                    return
                log.exception("stream polling failed")
                delivered = 0
            if not delivered:
                stopping.wait(self.interval_s)

    def poll_once(self, stopping: threading.Event | None = None) -> int:
        """Read every shard once and deliver what is new; returns how many records were read."""
        read = 0
        for shard in self._shards:
            if shard.iterator is None:
                continue
            try:
                answer = self.streams.get_records(ShardIterator=shard.iterator, Limit=1000)
            except ClientError as exc:
                # An iterator expires (AWS: ExpiredIteratorException) or is forgotten (moto, when its backends are
                # reset in this process): like Lambda's poller, take a new one where the last read ended.
                self._reposition(shard, exc)
                continue
            shard.iterator = answer.get("NextShardIterator")
            raw = answer.get("Records", [])
            if raw:
                shard.last_sequence = str(raw[-1]["dynamodb"].get("SequenceNumber"))
            records = [lambda_record(record, shard.stream_arn) for record in raw]
            read += len(records)
            source = shard.source
            if source.filters:
                records = [r for r in records if any(matches(pattern, r) for pattern in source.filters)]
            for start in range(0, len(records), source.batch_size):
                self._deliver(source, records[start : start + source.batch_size], stopping)
        return read

    def _reposition(self, shard: _Shard, error: ClientError) -> None:
        log.warning("%s: stream iterator lost (%s); taking a new one", shard.source.function_id, error_code(error))
        position: dict[str, str] = {"ShardIteratorType": "LATEST"}
        if shard.last_sequence is not None:
            position = {"ShardIteratorType": "AFTER_SEQUENCE_NUMBER", "SequenceNumber": shard.last_sequence}
        try:
            shard.iterator = self.streams.get_shard_iterator(
                StreamArn=shard.stream_arn, ShardId=shard.shard_id, **position
            )["ShardIterator"]
        except ClientError:  # the stream itself is gone (its table was created again): start at its new end
            self.start_at_end()

    def _deliver(self, source: StreamSource, batch: list[dict[str, Any]], stopping: threading.Event | None) -> None:
        attempts = 0
        while batch:
            failed_from = self._invoke(source, batch)
            if failed_from is None:
                return
            attempts += 1
            if 0 <= source.maximum_retry_attempts < attempts or (stopping is not None and stopping.is_set()):
                sequences = [r["dynamodb"].get("SequenceNumber") for r in batch[failed_from:]]
                log.error("%s: gave up on stream records %s", source.function_id, sequences)
                self.given_up.append({"function": source.function_id, "sequence_numbers": sequences})
                return
            batch = batch[failed_from:]
            time.sleep(self.retry_pause_s * min(attempts, 10))

    def _invoke(self, source: StreamSource, batch: list[dict[str, Any]]) -> int | None:
        """Invoke once; None when the batch is done, else the index of the first record to retry."""
        try:
            result = self.invoke(source.function_id, {"Records": batch}, source.timeout_s, source.memory_mb)
        except Exception:
            log.exception("%s raised; its batch of %d record(s) is retried", source.function_id, len(batch))
            return 0
        if not source.report_batch_item_failures:
            return None
        failures = (result or {}).get("batchItemFailures") if isinstance(result, dict) else None
        if not failures:
            return None
        positions = {str(r["dynamodb"].get("SequenceNumber")): index for index, r in enumerate(batch)}
        indexes = [positions.get(str((failure or {}).get("itemIdentifier"))) for failure in failures]
        # Lambda: an identifier that is empty or not in the batch fails the whole batch.
        first = 0 if any(index is None for index in indexes) else min(i for i in indexes if i is not None)
        log.warning("%s reported %d failed record(s); retrying from the oldest", source.function_id, len(failures))
        return first
