"""``tmall.car.local.service.order.writeoff.sync``: service-order writeoffs (核销) synced to Tmall (seed 000).

Field order follows the seed's parameter table: it is the key order of the JSON text that is signed and sent.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Annotated, Any, Final

from pydantic import AfterValidator, Field

from .api import OutboundApi, Verdict, read_flag, read_text
from .common import InboundModel, Int64, OutboundModel, PlatformDateTime, one_of

__all__ = [
    "API",
    "BIZ_TYPE",
    "MAX_BATCH",
    "METHOD",
    "NEEDS_SESSION",
    "PARAM",
    "SERVICE_STATUS",
    "LocalOrderWriteOffDto",
    "WriteoffSyncRequest",
    "WriteoffSyncResponse",
    "WriteoffSyncResult",
    "verdict",
]

METHOD: Final = "tmall.car.local.service.order.writeoff.sync"
MAX_BATCH: Final = 999
"""最大列表长度: writeoffs per call."""
NEEDS_SESSION: Final = False
"""The seed's Java example calls ``client.execute(req)``: no seller session."""
PARAM: Final = "local_order_write_off_d_t_o_list"
"""The one API parameter: the list of writeoffs."""

BIZ_TYPE: Final = MappingProxyType({2: "本地化, local service", 3: "安装服务, installation service"})
"""Allowed ``biz_type`` values (业务类型)."""

SERVICE_STATUS: Final = MappingProxyType(
    {1: "待核销, awaiting writeoff", 2: "部分核销, partly written off", 3: "全部核销, fully written off"}
)
"""Allowed ``service_status`` values (服务状态)."""


class LocalOrderWriteOffDto(OutboundModel):
    """One service-order writeoff (服务单核销)."""

    biz_type: Annotated[Int64, AfterValidator(one_of(BIZ_TYPE))]
    service_sku_name: str | None = None
    service_store_id: str | None = None
    apply_refund_num: Int64 | None = None
    verify_time: PlatformDateTime
    tb_store_id: Int64
    port_no: str | None = None
    refund_success_num: Int64 | None = None
    service_status: Annotated[Int64, AfterValidator(one_of(SERVICE_STATUS))]
    service_id: Int64
    verify_num: Int64 | None = None
    service_sku_id: str | None = None
    category_id: Int64 | None = None
    user_name: str | None = None
    sale_num: Int64 | None = None
    appoint_store_id: Int64 | None = None
    maintain_id: Int64 | None = None
    left_num: Int64 | None = None
    verify_batch_no: str | None = None
    tb_store_name: str | None = None
    third_sub_goods_order: str | None = None
    used_num: Int64 | None = None
    service_detail_id: Int64
    tb_biz_order_id: Int64


class WriteoffSyncRequest(OutboundModel):
    """The API parameters: one list of 1..999 writeoffs (服务单核销列表)."""

    local_order_write_off_d_t_o_list: list[LocalOrderWriteOffDto] = Field(min_length=1, max_length=MAX_BATCH)


class WriteoffSyncResult(InboundModel):
    """The business result (接口返回model). ``success=false`` with ``error_code``/``error_msg`` is a refusal."""

    # The seed types ``data`` as Boolean but shows 1234 (返回素材id): accept either, and text.
    data: bool | int | str | None = None
    success: bool | None = None
    # Typed Number in the seed, but its example is "isv.invalid-parameter": always kept as text.
    error_code: str | None = None
    error_msg: str | None = None
    piggyback: str | None = None


class WriteoffSyncResponse(InboundModel):
    """The content of ``tmall_car_local_service_order_writeoff_sync_response``."""

    result: WriteoffSyncResult | None = None
    request_id: str | None = None


def verdict(body: Mapping[str, Any]) -> Verdict:
    """``result.success``: true is taken, false a refusal with ``error_code``/``error_msg``.

    Read leniently: only these fields, booleans also as text. A refusal in another shape (``success: false`` at
    the top, as the sibling refund API answers) is still a refusal; an answer that says neither is unreadable,
    never taken as synced on a guess.
    """
    result = body.get("result")
    holder = result if isinstance(result, Mapping) else body
    success = read_flag(holder.get("success"))
    if success is True:
        return Verdict()
    if success is False:
        code = read_text(holder.get("error_code")) or "refused"
        return Verdict(refusal=f"{code}: {read_text(holder.get('error_msg'))}".strip())
    if holder.get("error_code") not in (None, ""):
        return Verdict(refusal=f"{read_text(holder.get('error_code'))}: {read_text(holder.get('error_msg'))}".strip())
    return Verdict(unreadable=f"no readable result.success in the answer (keys: {sorted(body)[:10]})")


API: Final = OutboundApi(
    method=METHOD,
    max_batch=MAX_BATCH,
    needs_session=NEEDS_SESSION,
    param=PARAM,
    record=LocalOrderWriteOffDto,
    request=WriteoffSyncRequest,
    wrap=lambda payloads: payloads,
    verdict=verdict,
)
