"""The three kinds of outbound record: their DTO, TOP API, batch limit and natural key (DESIGN.md)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from pydantic import BaseModel

from .models import external_order, risk, writeoff

__all__ = ["KINDS", "Kind", "KindSpec", "Verdict", "kind_for_path"]


class Kind(StrEnum):
    WRITEOFF = "writeoff"
    RISK = "risk"
    EXTERNAL_ORDER = "external_order"


def _compact_time(value: str | None) -> str:
    """``2020-11-11 12:00:00`` -> ``20201111120000``: ids stay URL-safe."""
    return "".join(ch for ch in (value or "") if ch.isdigit())


def _writeoff_id(p: dict[str, Any]) -> str:
    # verify_batch_no is optional in the seed: a writeoff without one is identified by its verify_time.
    batch = p.get("verify_batch_no") or f"t{_compact_time(p.get('verify_time'))}"
    return f"{p['tb_biz_order_id']}-{p['service_detail_id']}-{batch}"


def _risk_id(p: dict[str, Any]) -> str:
    return f"{p['tc_sub_order_id']}-{_compact_time(p.get('service_use_time')) or 'none'}"


def _external_order_id(p: dict[str, Any]) -> str:
    return str(p["idempotent_id"])


@dataclass(frozen=True)
class Verdict:
    """What an accepted call's business result says: refused (with the platform's code and message) or not,
    and the platform's order id where the API gives one."""

    refusal: str | None = None
    platform_order_id: int | None = None


def _writeoff_verdict(body: dict[str, Any]) -> Verdict:
    result = writeoff.WriteoffSyncResponse.model_validate(body).result
    if result is not None and result.success is False:
        return Verdict(refusal=f"{result.error_code or 'refused'}: {result.error_msg or ''}".strip())
    return Verdict()


def _risk_verdict(body: dict[str, Any]) -> Verdict:
    risk.RiskSyncResponse.model_validate(body)  # the seed documents no business result: accepted is synced
    return Verdict()


def _external_order_verdict(body: dict[str, Any]) -> Verdict:
    result = external_order.ExternalOrderSyncResponse.model_validate(body).result
    if result is None:
        return Verdict(refusal="no result in the answer")
    if result.success is False:
        return Verdict(refusal=f"{result.msg_code or 'refused'}: {result.msg_info or ''}".strip())
    order_id = result.data.order_id if result.data else None
    return Verdict(platform_order_id=order_id)


def _writeoff_params(payloads: list[dict[str, Any]]) -> dict[str, Any]:
    return {"local_order_write_off_d_t_o_list": payloads}


def _risk_params(payloads: list[dict[str, Any]]) -> dict[str, Any]:
    return {"risk_info_sync_request": {"contents": payloads}}


def _external_order_params(payloads: list[dict[str, Any]]) -> dict[str, Any]:
    (only,) = payloads  # one order per call: the API takes a single object
    return {"sync_single_order_req": only}


@dataclass(frozen=True)
class KindSpec:
    kind: Kind
    path: str  # the intake path segment: /v1/<path>
    dto: type[BaseModel]  # one record, as merchants hand it in
    method: str  # the TOP API
    max_batch: int  # records per TOP call
    needs_session: bool
    record_id: Callable[[dict[str, Any]], str]  # natural key from the JSON-mode payload
    api_params: Callable[[list[dict[str, Any]]], dict[str, Any]]  # top-level API parameters for a batch
    verdict: Callable[[dict[str, Any]], Verdict]  # the business result of an accepted call

    def payload_of(self, record: BaseModel) -> dict[str, Any]:
        """The wire form of one validated record: JSON types, nulls omitted, field order kept."""
        return record.model_dump(mode="json", exclude_none=True)


KINDS: dict[Kind, KindSpec] = {
    Kind.WRITEOFF: KindSpec(
        Kind.WRITEOFF,
        "writeoffs",
        writeoff.LocalOrderWriteOffDto,
        writeoff.METHOD,
        writeoff.MAX_BATCH,
        False,
        _writeoff_id,
        _writeoff_params,
        _writeoff_verdict,
    ),
    Kind.RISK: KindSpec(
        Kind.RISK,
        "risk-records",
        risk.RiskInfoSyncDTO,
        risk.METHOD,
        risk.MAX_BATCH,
        risk.NEEDS_SESSION,
        _risk_id,
        _risk_params,
        _risk_verdict,
    ),
    Kind.EXTERNAL_ORDER: KindSpec(
        Kind.EXTERNAL_ORDER,
        "external-orders",
        external_order.SyncSingleOrderReq,
        external_order.METHOD,
        1,
        False,
        _external_order_id,
        _external_order_params,
        _external_order_verdict,
    ),
}


def kind_for_path(path: str) -> KindSpec | None:
    """The spec whose intake path segment is ``path`` (``writeoffs``, ``risk-records``, ``external-orders``)."""
    return next((spec for spec in KINDS.values() if spec.path == path), None)
