"""The external order sync (``METHOD``): create one external (store) order on the platform, idempotent by
``idempotent_id`` (汽车外部订单创建接口, seed 002).

The seed's table flattens the nesting; its Java example shows the real classes: ``hide``, ``source``,
``idempotent_id`` and ``ext_info`` belong to ``SyncSingleOrderReq`` itself, ``channel`` and ``pay_order_id`` to
``PayOrderInfo``. Field order follows the seed: it is the key order of the JSON text that is signed and sent.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from pydantic import Field

from .api import OutboundApi, Verdict, read_flag, read_id, read_text
from .common import InboundModel, Int64, OutboundModel, PlatformDateTime

__all__ = [
    "API",
    "MAX_BATCH",
    "METHOD",
    "NEEDS_SESSION",
    "PARAM",
    "AliAutoResult",
    "ExternalOrderSyncRequest",
    "ExternalOrderSyncResponse",
    "ItemInfo",
    "OrderInfo",
    "PayOrderInfo",
    "SingleOrderResult",
    "SyncSingleOrderReq",
    "UserInfo",
    "verdict",
]

# "sycn" is the platform's own misspelling of "sync": the gateway knows the API only by this name.
METHOD: Final = "tmall.aliauto.trade.external.order.sycn"
MAX_BATCH: Final = 1
"""The API takes a single order object per call."""
NEEDS_SESSION: Final = False
PARAM: Final = "sync_single_order_req"
"""The one API parameter: the order object itself."""


class UserInfo(OutboundModel):
    """A buyer (买家信息) or a seller (卖家信息)."""

    user_nick: str | None = None
    user_phone: str | None = None
    user_id: Int64 | None = None


class OrderInfo(OutboundModel):
    """订单信息. ``total_fee`` is in fen (分)."""

    biz_type: Int64 | None = None
    pay_time: PlatformDateTime | None = None
    out_order_id: str | None = None
    end_time: PlatformDateTime | None = None
    gmt_create: PlatformDateTime | None = None
    total_fee: Int64 | None = None


class ItemInfo(OutboundModel):
    """商品信息. ``item_price`` is in fen (分)."""

    item_id: Int64 | None = None
    item_title: str | None = None
    root_cat: Int64 | None = None
    item_price: Int64 | None = None
    category_id: Int64 | None = None
    buy_amount: Int64 | None = None


class PayOrderInfo(OutboundModel):
    """支付单信息: payment channel (e.g. ``alipay``) and payment serial number."""

    channel: str | None = None
    pay_order_id: str | None = None


class SyncSingleOrderReq(OutboundModel):
    """订单同步入参: one external order. Only ``idempotent_id`` (幂等id) is required."""

    buyer_info: UserInfo | None = None
    hide: bool | None = None
    """是否买卖双方订单列表不可见: hide the order from both parties' order lists."""
    order_info: OrderInfo | None = None
    source: str | None = None
    item_info: ItemInfo | None = None
    seller_info: UserInfo | None = None
    pay_order_info: PayOrderInfo | None = None
    idempotent_id: str = Field(min_length=1, pattern=r"\S")
    ext_info: str | None = None
    """扩展信息: free JSON text, sent as a string inside the object."""


class ExternalOrderSyncRequest(OutboundModel):
    """The API parameters: one ``sync_single_order_req``."""

    # The seed marks it optional, but the call without it creates nothing and its idempotent_id is required:
    # refuse here rather than spend a call on a certain platform error.
    sync_single_order_req: SyncSingleOrderReq


class SingleOrderResult(InboundModel):
    """订单同步结果: the platform's order id (淘系订单号)."""

    order_id: Int64 | None = None


class AliAutoResult(InboundModel):
    """The business result. ``success=false`` with ``msg_code`` (e.g. ``SELLER_NOT_EXIST``) is a refusal."""

    data: SingleOrderResult | None = None
    success: bool | None = None
    msg_info: str | None = None
    msg_code: str | None = None


class ExternalOrderSyncResponse(InboundModel):
    """The content of the response wrapper (``METHOD`` with dots as underscores, plus ``_response``)."""

    result: AliAutoResult | None = None
    request_id: str | None = None


def verdict(body: Mapping[str, Any]) -> Verdict:
    """``result.success``: true is taken (with ``result.data.order_id``, the platform's order id, when it is a
    readable id), false a refusal with ``msg_code``/``msg_info``. Read leniently, like the writeoff verdict; an
    answer that says neither is unreadable."""
    result = body.get("result")
    holder = result if isinstance(result, Mapping) else body
    success = read_flag(holder.get("success"))
    if success is True:
        data = holder.get("data")
        return Verdict(platform_order_id=read_id(data.get("order_id")) if isinstance(data, Mapping) else None)
    if success is False:
        code = read_text(holder.get("msg_code")) or "refused"
        return Verdict(refusal=f"{code}: {read_text(holder.get('msg_info'))}".strip())
    return Verdict(unreadable=f"no readable result.success in the answer (keys: {sorted(body)[:10]})")


def _single(payloads: list[dict[str, Any]]) -> dict[str, Any]:
    (only,) = payloads  # one order per call: the API takes a single object
    return only


API: Final = OutboundApi(
    method=METHOD,
    max_batch=MAX_BATCH,
    needs_session=NEEDS_SESSION,
    param=PARAM,
    record=SyncSingleOrderReq,
    request=ExternalOrderSyncRequest,
    wrap=_single,
    verdict=verdict,
    idempotent=True,  # the platform dedupes on idempotent_id
    answers_order_id=True,  # result.data.order_id
)
