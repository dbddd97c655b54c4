"""``taobao.aliauto.risk.info.tmall.yc.service.sync``: service and writeoff information for Tmall car-care
risk control (天猫养车服务风控, seed 001). The call needs the seller's session key.

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
    "INSTALL_TYPE",
    "MAX_BATCH",
    "METHOD",
    "NEEDS_SESSION",
    "PARAM",
    "RiskInfoSyncDTO",
    "RiskInfoSyncRequest",
    "RiskSyncRequest",
    "RiskSyncResponse",
    "verdict",
]

METHOD: Final = "taobao.aliauto.risk.info.tmall.yc.service.sync"
MAX_BATCH: Final = 100
"""一批次最大100条: contents per call."""
NEEDS_SESSION: Final = True
"""The seed's Java example calls ``client.execute(req, sessionKey)``: the seller's session is required."""
PARAM: Final = "risk_info_sync_request"
"""The one API parameter: an object whose ``contents`` is the list of records."""

INSTALL_TYPE: Final = MappingProxyType({0: "无需安装, no installation", 1: "到店安装, installed at the store"})
"""Allowed ``install_type`` values (安装类型)."""


class RiskInfoSyncDTO(OutboundModel):
    """One consumer service record (消费者服务核销信息)."""

    service_code: str | None = None
    """安装服务编码, several joined by commas."""
    install_type: Annotated[Int64, AfterValidator(one_of(INSTALL_TYPE))]
    buyer_phone: str
    tc_order_id: Int64
    tc_sub_order_id: Int64
    car_license_num: str | None = None
    service_use_time: PlatformDateTime | None = None
    buyer_name: str
    work_order_submit_time: PlatformDateTime | None = None


class RiskInfoSyncRequest(OutboundModel):
    """风控同步请求: the list of 1..100 records."""

    contents: list[RiskInfoSyncDTO] = Field(min_length=1, max_length=MAX_BATCH)


class RiskSyncRequest(OutboundModel):
    """The API parameters: one ``risk_info_sync_request`` object."""

    risk_info_sync_request: RiskInfoSyncRequest


class RiskSyncResponse(InboundModel):
    """The content of ``aliauto_risk_info_tmall_yc_service_sync_response``; the seed documents no fields."""

    request_id: str | None = None


def verdict(body: Mapping[str, Any]) -> Verdict:
    """The seed documents no business result: a call the gateway accepted is taken, unless the answer says
    ``success: false`` (in a ``result`` or at the top), which is read as a refusal."""
    result = body.get("result")
    holder = result if isinstance(result, Mapping) else body
    if read_flag(holder.get("success")) is False:
        code = read_text(holder.get("error_code") or holder.get("msg_code")) or "refused"
        message = read_text(holder.get("error_msg") or holder.get("msg_info"))
        return Verdict(refusal=f"{code}: {message}".strip())
    return Verdict()


API: Final = OutboundApi(
    method=METHOD,
    max_batch=MAX_BATCH,
    needs_session=NEEDS_SESSION,
    param=PARAM,
    record=RiskInfoSyncDTO,
    request=RiskSyncRequest,
    wrap=lambda payloads: {"contents": payloads},
    verdict=verdict,
)
