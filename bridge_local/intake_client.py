"""A client of the intake API: submit many records in chunks of up to 1000, and read one record's state.

``IntakeClient`` speaks HTTP (the local stack, or a deployed stage through an ``httpx.Client`` that signs
with SigV4). ``read_records`` reads the ``.jsonl`` and ``.csv`` files the ``intake`` command takes; CSV cells
become JSON types by the DTO's field annotations. From Python without HTTP, use
``taobao_bridge.intake.Intake(store).submit(kind, records)``.
"""

from __future__ import annotations

import csv
import sys
import time
import types
import typing
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
from pydantic import BaseModel
from tqdm import tqdm

from taobao_bridge.intake import MAX_RECORDS_PER_REQUEST
from taobao_bridge.jsonutil import dumps, loads_strict
from taobao_bridge.kinds import KINDS, Kind, KindSpec, kind_for_path

__all__ = ["IntakeClient", "IntakeSummary", "ReadError", "read_records", "resolve_kind"]

_RETRY_STATUSES = frozenset({429, 502, 503, 504})


class ReadError(ValueError):
    """Raised when a records file cannot be read; the message names the file and line."""


@dataclass
class IntakeSummary:
    """What happened to the records of one ``submit``. ``problems`` carry indexes into all records sent."""

    total: int = 0
    accepted: int = 0
    duplicate: int = 0
    replaced: int = 0  # a dead record sent again with corrected content: stored and due again
    conflict: int = 0
    invalid: int = 0  # records in chunks refused as invalid (nothing of such a chunk is stored)
    failed: int = 0  # records in chunks refused for another reason (too large, storage, transport)
    problems: list[dict[str, Any]] = field(default_factory=list)
    conflict_ids: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """Every record is stored: accepted now or before (duplicate), or replacing a dead one (replaced)."""
        return self.accepted + self.duplicate + self.replaced == self.total

    def lines(self) -> list[str]:
        out = [
            f"{self.total} records: {self.accepted} accepted, {self.duplicate} duplicate, {self.replaced} replaced, "
            f"{self.conflict} conflict, {self.invalid} in invalid chunks, {self.failed} failed"
        ]
        out += [f"  record {p['index']} field {p['field']}: {p['rule']}" for p in self.problems[:50]]
        if len(self.problems) > 50:
            out.append(f"  … and {len(self.problems) - 50} more problems")
        out += [
            f"  conflict: {record_id} was received before with different content" for record_id in self.conflict_ids
        ]
        out += [f"  error: {error}" for error in self.errors]
        return out


def resolve_kind(name: str | Kind) -> KindSpec:
    """A kind by its value (``writeoff``) or its path (``writeoffs``)."""
    if isinstance(name, Kind):
        return KINDS[name]
    spec = kind_for_path(name)
    if spec is not None:
        return spec
    try:
        return KINDS[Kind(name)]
    except ValueError:
        known = ", ".join(spec.path for spec in KINDS.values())
        raise ValueError(f"unknown kind {name!r}: expected one of {known}") from None


class IntakeClient:
    """``submit`` many records; ``get`` one record's public state. ``http`` defaults to a plain client."""

    def __init__(self, base_url: str, http: httpx.Client | None = None, *, retries: int = 3) -> None:
        self.base_url = base_url.rstrip("/")
        self.http = http or httpx.Client(timeout=60)
        self.retries = retries

    def submit(
        self,
        kind: str | Kind,
        records: Sequence[dict[str, Any]],
        chunk_size: int = MAX_RECORDS_PER_REQUEST,
        progress: bool = True,
    ) -> IntakeSummary:
        """POST ``records`` in chunks of at most ``chunk_size`` (<= 1000). Chunks are independent: an invalid
        chunk is refused whole and the others still go. Retries 429/5xx and transport errors (safe: accepting
        is idempotent)."""
        if not 1 <= chunk_size <= MAX_RECORDS_PER_REQUEST:
            raise ValueError(f"chunk_size must be 1..{MAX_RECORDS_PER_REQUEST}")
        spec = resolve_kind(kind)
        summary = IntakeSummary(total=len(records))
        show = progress and sys.stderr.isatty()
        with tqdm(total=len(records), unit="record", desc=spec.path, disable=not show) as bar:
            for start in range(0, len(records), chunk_size):
                chunk = list(records[start : start + chunk_size])
                self._submit_chunk(spec, chunk, start, summary)
                bar.update(len(chunk))
        return summary

    def _submit_chunk(self, spec: KindSpec, chunk: list[dict[str, Any]], start: int, summary: IntakeSummary) -> None:
        where = f"records {start}..{start + len(chunk) - 1}"
        try:
            response = self._post(f"/v1/{spec.path}", dumps(chunk).encode("utf-8"))
        except httpx.HTTPError as exc:
            summary.failed += len(chunk)
            summary.errors.append(f"{where}: {type(exc).__name__}: {exc}")
            return
        body = _json_or_none(response)
        if response.status_code in (202, 409) and isinstance(body, dict) and "records" in body:
            for record in body["records"]:
                status = record.get("status")
                if status == "accepted":
                    summary.accepted += 1
                elif status == "duplicate":
                    summary.duplicate += 1
                elif status == "replaced":
                    summary.replaced += 1
                else:
                    summary.conflict += 1
                    summary.conflict_ids.append(str(record.get("id")))
            return
        if response.status_code == 400 and isinstance(body, dict) and body.get("error") == "invalid_records":
            summary.invalid += len(chunk)
            for problem in body.get("problems", []):
                summary.problems.append({**problem, "index": start + int(problem.get("index", 0))})
            return
        summary.failed += len(chunk)
        message = body.get("message") if isinstance(body, dict) else None
        summary.errors.append(f"{where}: HTTP {response.status_code}: {message or response.text[:300]}")

    def _post(self, path: str, content: bytes) -> httpx.Response:
        headers = {"content-type": "application/json;charset=utf-8"}
        for attempt in range(self.retries + 1):
            try:
                response = self.http.post(self.base_url + path, content=content, headers=headers)
            except httpx.TransportError:
                if attempt == self.retries:
                    raise
            else:
                if response.status_code not in _RETRY_STATUSES or attempt == self.retries:
                    return response
            time.sleep(0.5 * 2**attempt)
        raise AssertionError("unreachable")  # the loop returns or raises

    def get(self, kind: str | Kind, record_id: str) -> dict[str, Any] | None:
        """A record's public state (``state``, ``attempts``, ``last_error``…), or None when unknown."""
        spec = resolve_kind(kind)
        response = self.http.get(f"{self.base_url}/v1/{spec.path}/{quote(record_id, safe='')}")
        if response.status_code == 404:
            return None
        response.raise_for_status()
        found: dict[str, Any] = response.json()
        return found


def _json_or_none(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None


# ------------------------------------------------------------------------------------------------- files
def read_records(path: str | Path, kind: str | Kind) -> list[dict[str, Any]]:
    """Records from a ``.jsonl`` file (one JSON object per line; blank lines skipped) or a ``.csv`` file
    (header = field names, ``a.b`` for nested objects; empty cells omitted; integer and boolean fields
    converted by the DTO's annotations, everything else kept as text)."""
    file = Path(path)
    suffix = file.suffix.lower()
    if suffix == ".jsonl":
        return list(_read_jsonl(file))
    if suffix == ".csv":
        return list(_read_csv(file, resolve_kind(kind).dto))
    raise ReadError(f"{file}: expected a .jsonl or .csv file")


def _read_jsonl(file: Path) -> Iterator[dict[str, Any]]:
    with file.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                record = loads_strict(line)
            except ValueError as exc:
                raise ReadError(f"{file}:{number}: not valid JSON: {exc}") from None
            if not isinstance(record, dict):
                raise ReadError(f"{file}:{number}: expected a JSON object per line")
            yield record


def _read_csv(file: Path, model: type[BaseModel]) -> Iterator[dict[str, Any]]:
    with file.open(encoding="utf-8-sig", newline="") as handle:
        reader = csv.DictReader(handle)
        for number, row in enumerate(reader, start=2):
            if None in row:
                raise ReadError(f"{file}:{number}: more cells than header fields")
            record: dict[str, Any] = {}
            for header, cell in row.items():
                if cell is None or cell == "":
                    continue
                names = header.strip().split(".")
                target = record
                for name in names[:-1]:
                    target = target.setdefault(name, {})
                target[names[-1]] = _convert(cell, _field_type(model, names))
            if record:
                yield record


def _convert(cell: str, kind: type | None) -> Any:
    text = cell.strip()
    if kind is int and text.isascii() and text.isdigit():
        return int(text)
    if kind is bool and text.lower() in ("true", "false"):
        return text.lower() == "true"
    return cell  # left as text: validation names the field if it is wrong


def _field_type(model: type[BaseModel], names: Sequence[str]) -> type | None:
    """``int``, ``bool``, ``str`` or a model class for a dotted field path, from the annotations."""
    current: type | None = model
    for name in names:
        if not (isinstance(current, type) and issubclass(current, BaseModel)):
            return None
        info = current.model_fields.get(name)
        if info is None:
            return None
        current = _base_type(info.annotation)
    return current


def _base_type(annotation: Any) -> type | None:
    """Unwrap ``Annotated[...]`` and ``X | None`` down to one class (None when it is not one)."""
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _base_type(typing.get_args(annotation)[0])
    if origin in (typing.Union, types.UnionType):
        choices = [arg for arg in typing.get_args(annotation) if arg is not type(None)]
        return _base_type(choices[0]) if len(choices) == 1 else None
    return annotation if isinstance(annotation, type) else None
