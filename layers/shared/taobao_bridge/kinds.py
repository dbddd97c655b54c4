"""The three kinds of outbound record. Each is one API module's ``API`` (method, batch limit, session, wire
parameter, verdict: see ``models.api``) plus what the bridge adds: its intake path and its natural key
(docs/ARCHITECTURE.md, "Outbound flow")."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from pydantic import BaseModel

from .models import external_order, risk, writeoff
from .models.api import OutboundApi, Verdict

__all__ = ["KINDS", "Kind", "KindSpec", "Verdict", "kind_for_path"]


class Kind(StrEnum):
    WRITEOFF = "writeoff"
    RISK = "risk"
    EXTERNAL_ORDER = "external_order"


def _compact_time(value: str | None) -> str:
    """``2020-11-11 12:00:00`` -> ``20201111120000``: ids stay URL-safe."""
    return "".join(ch for ch in (value or "") if ch.isdigit())


def _writeoff_id(p: dict[str, Any]) -> str:
    # verify_batch_no is optional in the seed: a writeoff without one is identified by its verify_time. The
    # prefixes keep the two apart (a batch number "t20261123100000" must not be the batchless writeoff of
    # 2026-11-23 10:00:00), and the two numbers before them are digits only, so the id reads back one way.
    batch = str(p.get("verify_batch_no") or "").strip()
    tail = f"b{batch}" if batch else f"t{_compact_time(p.get('verify_time'))}"
    return f"{p['tb_biz_order_id']}-{p['service_detail_id']}-{tail}"


def _risk_id(p: dict[str, Any]) -> str:
    return f"{p['tc_sub_order_id']}-{_compact_time(p.get('service_use_time')) or 'none'}"


def _external_order_id(p: dict[str, Any]) -> str:
    return str(p["idempotent_id"])


@dataclass(frozen=True)
class KindSpec:
    kind: Kind
    path: str  # the intake path segment: /v1/<path>
    api: OutboundApi  # the TOP API the records go to, as its model module declares it
    record_id: Callable[[dict[str, Any]], str]  # natural key from the JSON-mode payload

    @property
    def dto(self) -> type[BaseModel]:
        """One record, as merchants hand it in."""
        return self.api.record

    @property
    def method(self) -> str:
        return self.api.method

    @property
    def max_batch(self) -> int:
        return self.api.max_batch

    @property
    def needs_session(self) -> bool:
        return self.api.needs_session

    def verdict(self, body: Mapping[str, Any]) -> Verdict:
        return self.api.verdict(body)

    def payload_of(self, record: BaseModel) -> dict[str, Any]:
        """The wire form of one validated record: JSON types, nulls omitted, field order kept."""
        return record.model_dump(mode="json", exclude_none=True)


KINDS: dict[Kind, KindSpec] = {
    Kind.WRITEOFF: KindSpec(Kind.WRITEOFF, "writeoffs", writeoff.API, _writeoff_id),
    Kind.RISK: KindSpec(Kind.RISK, "risk-records", risk.API, _risk_id),
    Kind.EXTERNAL_ORDER: KindSpec(Kind.EXTERNAL_ORDER, "external-orders", external_order.API, _external_order_id),
}


def kind_for_path(path: str) -> KindSpec | None:
    """The spec whose intake path segment is ``path`` (``writeoffs``, ``risk-records``, ``external-orders``)."""
    return next((spec for spec in KINDS.values() if spec.path == path), None)
