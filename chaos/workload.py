"""The merchant side: seeded records of the three kinds, the requests that carry them (with duplicates, a few
conflicting re-sends, and some requests with invalid records), and a merchant that posts them through the real
intake HTTP API the way the README tells merchants to (resend the same request on 503 or a dropped connection;
drop the records a 400 names and send the rest again). What the API answered is kept in a ``Ledger``.
"""

from __future__ import annotations

import random
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

from taobao_bridge.jsonutil import dumps
from taobao_bridge.kinds import KINDS, Kind

__all__ = ["MIX", "Ledger", "Merchant", "Request", "Workload", "build_workload"]

MIX = {Kind.WRITEOFF: 0.5, Kind.RISK: 0.3, Kind.EXTERNAL_ORDER: 0.2}  # share of the records per kind
_MAX_REQUEST = {Kind.WRITEOFF: 300, Kind.RISK: 150, Kind.EXTERNAL_ORDER: 60}
_DUPLICATE_RATE = 0.05  # records sent a second time, same content
_CONFLICT_RATE = 0.005  # records sent a second time with different content (refused: conflict)
_INVALID_REQUESTS = 0.1  # requests that carry one or two invalid records (refused whole, then sent without them)
_POISON_RATE = 0.01  # valid records the platform refuses (sandbox refuse fault), with the platform class


def _writeoff(n: int) -> dict[str, Any]:
    return {
        "biz_type": 2,
        "service_sku_name": "洗车",
        "verify_time": "2026-11-23 10:00:00",
        "tb_store_id": 2343432,
        "service_status": 3,
        "service_id": 1111,
        "service_detail_id": 100000 + n,
        "tb_biz_order_id": 4_000_000_000_000_000_000 + n,
        "verify_batch_no": f"B{n}",
    }


def _risk(n: int) -> dict[str, Any]:
    return {
        "install_type": 1,
        "buyer_phone": "13012345678",
        "tc_order_id": 3882527336184474047,
        "tc_sub_order_id": 3_882_527_336_100_000_000 + n,
        "service_use_time": "2026-11-23 10:00:00",
        "buyer_name": "王五",
    }


def _external_order(n: int) -> dict[str, Any]:
    return {
        "buyer_info": {"user_nick": "张三", "user_phone": "13912340000", "user_id": 23432},
        "order_info": {"biz_type": 200, "out_order_id": f"ABC{n}", "total_fee": 10000},
        "idempotent_id": f"CHAOS-{n:07d}",
    }


_MAKE = {Kind.WRITEOFF: _writeoff, Kind.RISK: _risk, Kind.EXTERNAL_ORDER: _external_order}
# One field each whose change is a conflict (a different record under the same key) and one whose damage makes
# the record invalid.
_CHANGE: dict[Kind, tuple[str, Any]] = {
    Kind.WRITEOFF: ("service_sku_name", "洗车 (改)"),
    Kind.RISK: ("buyer_name", "王六"),
    Kind.EXTERNAL_ORDER: ("source", "X"),
}
_BREAK: dict[Kind, tuple[str, Any]] = {
    Kind.WRITEOFF: ("verify_time", "2026-13-01 00:00:00"),
    Kind.RISK: ("install_type", 7),
}
_BREAK_DROP = {Kind.EXTERNAL_ORDER: "idempotent_id"}
# The field the sandbox's refuse fault matches (bridge_local/top_sandbox/apis.py, record_key).
_REFUSE_KEY = {Kind.WRITEOFF: "tb_biz_order_id", Kind.RISK: "tc_sub_order_id", Kind.EXTERNAL_ORDER: "idempotent_id"}


def _broken(kind: Kind, record: dict[str, Any]) -> dict[str, Any]:
    """A copy of ``record`` that the intake refuses (a bad date, a value out of range, or a missing key)."""
    broken = dict(record)
    if kind in _BREAK:
        name, value = _BREAK[kind]
        broken[name] = value
    else:
        broken.pop(_BREAK_DROP[kind])
    return broken


def record_id(kind: Kind, payload: dict[str, Any]) -> str:
    """The natural key the intake gives a valid record (its wire payload's ``KindSpec.record_id``)."""
    spec = KINDS[kind]
    return spec.record_id(spec.payload_of(spec.dto.model_validate(payload)))


@dataclass
class Request:
    kind: Kind
    records: list[dict[str, Any]]


@dataclass
class Workload:
    requests: list[Request]
    unique: dict[Kind, int]  # distinct valid records per kind
    poison: dict[Kind, dict[str, Any]]  # record id -> its refuse-key value, for records the platform refuses

    def refuse_fault(self) -> dict[str, list[Any]]:
        """The sandbox's ``refuse`` fault for the poison records."""
        return {KINDS[kind].method: sorted(ids.values()) for kind, ids in self.poison.items() if ids}

    def waves(self, count: int) -> list[list[Request]]:
        """The requests in ``count`` consecutive waves; each kind's records are spread evenly over the waves, so
        every wave brings work of every kind."""
        waves: list[list[Request]] = [[] for _ in range(max(1, count))]
        for kind in Kind:
            requests = [request for request in self.requests if request.kind is kind]
            total = sum(len(request.records) for request in requests)
            posted = 0
            for request in requests:
                waves[min(len(waves) - 1, posted * len(waves) // max(1, total))].append(request)
                posted += len(request.records)
        order = {id(request): position for position, request in enumerate(self.requests)}
        return [sorted(wave, key=lambda request: order[id(request)]) for wave in waves]


def build_workload(total: int, seed: int, *, poison: bool) -> Workload:
    """``total`` distinct valid records split by ``MIX``, in shuffled requests of one kind each."""
    rng = random.Random(f"chaos-{seed}-workload")
    requests: list[Request] = []
    unique: dict[Kind, int] = {}
    poisoned: dict[Kind, dict[str, Any]] = {kind: {} for kind in Kind}
    for kind, share in MIX.items():
        count = max(1, round(total * share))
        unique[kind] = count
        records = [_MAKE[kind](n) for n in range(count)]
        extra: list[dict[str, Any]] = []
        for record in records:
            if poison and rng.random() < _POISON_RATE:
                poisoned[kind][record_id(kind, record)] = record[_REFUSE_KEY[kind]]
            if rng.random() < _DUPLICATE_RATE:
                extra.append(dict(record))
            if rng.random() < _CONFLICT_RATE:
                name, value = _CHANGE[kind]
                extra.append({**record, name: value})
        stream = records + extra
        rng.shuffle(stream)  # a re-send may come before the original: the first to arrive is stored
        start = 0
        largest = max(1, min(_MAX_REQUEST[kind], len(stream) // 8))  # a small workload still makes many requests
        while start < len(stream):
            size = rng.randint(1, largest)
            chunk = stream[start : start + size]
            if rng.random() < _INVALID_REQUESTS:
                for _ in range(rng.randint(1, 2)):
                    chunk.insert(rng.randrange(len(chunk) + 1), _broken(kind, rng.choice(records)))
            requests.append(Request(kind, chunk))
            start += size
    rng.shuffle(requests)
    return Workload(requests, unique, poisoned)


@dataclass
class Ledger:
    """What the intake API answered. A record is acknowledged once an answer named it accepted or duplicate."""

    acknowledged: dict[Kind, dict[str, str]] = field(default_factory=lambda: {kind: {} for kind in Kind})
    unacknowledged: dict[Kind, set[str]] = field(default_factory=lambda: {kind: set() for kind in Kind})
    conflicts: Counter[Kind] = field(default_factory=Counter)
    invalid: Counter[Kind] = field(default_factory=Counter)  # records dropped after a 400 named them
    statuses: Counter[int] = field(default_factory=Counter)  # HTTP statuses answered (0: no answer)
    requests: int = 0
    elapsed_s: float = 0.0  # spent posting, all waves together
    partial_503: int = 0  # 503 answers after which some records of the request were stored
    partial_503_records: int = 0
    errors: list[str] = field(default_factory=list)


class Merchant:
    """Posts requests in the background, one wave at a time (``post``, then ``wait``); ``ledger`` accumulates."""

    def __init__(self, base_url: str, *, stored: Callable[[Kind, str], bool], retries: int = 8) -> None:
        self.base_url = base_url.rstrip("/")
        self.retries = retries
        self._stored = stored  # whether a record is in the outbox, read past the faults
        self.ledger = Ledger()
        self._http = httpx.Client(timeout=30.0)
        self._thread: threading.Thread | None = None

    def post(self, requests: list[Request]) -> None:
        """Start posting ``requests`` in a background thread (after the previous wave has finished)."""
        self.wait()
        self._thread = threading.Thread(target=self._run, args=(requests,), name="chaos-merchant", daemon=True)
        self._thread.start()

    def wait(self) -> Ledger:
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        return self.ledger

    def close(self) -> None:
        self.wait()
        self._http.close()

    def _run(self, requests: list[Request]) -> None:
        started = time.monotonic()
        for request in requests:
            self._submit(self._http, request.kind, list(request.records))
        self.ledger.elapsed_s += time.monotonic() - started

    def _submit(self, http: httpx.Client, kind: Kind, records: list[dict[str, Any]]) -> None:
        ledger = self.ledger
        url = f"{self.base_url}/v1/{KINDS[kind].path}"
        attempt = 0
        while records:
            ledger.requests += 1
            try:
                response = http.post(
                    url, content=dumps(records).encode("utf-8"), headers={"content-type": "application/json"}
                )
                status = response.status_code
            except httpx.HTTPError:
                status = 0
            ledger.statuses[status] += 1
            if status in (202, 409):
                for answer in response.json()["records"]:
                    if answer["status"] in ("accepted", "duplicate"):
                        ledger.acknowledged[kind].setdefault(str(answer["id"]), answer["status"])
                    else:
                        ledger.conflicts[kind] += 1
                return
            if status == 400 and response.json().get("error") == "invalid_records":
                named = {int(problem["index"]) for problem in response.json()["problems"]}
                if not named:
                    break
                ledger.invalid[kind] += len(named)
                records = [record for index, record in enumerate(records) if index not in named]
                continue
            if status == 503:
                self._count_partial(kind, records)
            if status in (0, 500, 502, 503, 504) and attempt < self.retries:
                attempt += 1  # accepting is idempotent: the same request again is safe
                time.sleep(min(1.0, 0.05 * 2**attempt))
                continue
            ledger.errors.append(f"{kind}: HTTP {status} after {attempt} retries")
            break
        self._unacknowledged(kind, records)

    def _count_partial(self, kind: Kind, records: list[dict[str, Any]]) -> None:
        """After a 503: were some of the request's records stored anyway (not yet acknowledged before)?"""
        ids = {_valid_id(kind, record) for record in records} - {None} - set(self.ledger.acknowledged[kind])
        stored = sum(self._stored(kind, str(rid)) for rid in ids)
        if stored:
            self.ledger.partial_503 += 1
            self.ledger.partial_503_records += stored

    def _unacknowledged(self, kind: Kind, records: list[dict[str, Any]]) -> None:
        for record in records:  # never acknowledged: the merchant knows they may or may not be stored
            rid = _valid_id(kind, record)
            if rid is not None:
                self.ledger.unacknowledged[kind].add(rid)


def _valid_id(kind: Kind, record: dict[str, Any]) -> str | None:
    try:
        return record_id(kind, record)
    except (ValueError, KeyError):
        return None
