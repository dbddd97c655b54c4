"""``qimen.taobao.life.fulfillment.create``: the platform asks us to create a local-life (到店/上门) fulfillment
order (本地生活-到店-履约创单, seed 003). Inbound: the request is the platform's, the response is ours.

The seed's table flattens the nesting; its JSON request example shows it: ``fulfillment_order_no``, ``memo``,
``quantity``, ``time_option`` and ``address_info`` belong to ``fulfillment_info``. Field order follows the table.
Amounts are integers in fen (分); ids the seed types ``String`` stay text, so 19-digit ids stay exact.

``fulfillment_order_no``, ``store_id`` and ``item_id`` become DynamoDB keys (the orders table's hash key, the
inventory table's hash and range keys, template.yaml): they are :data:`KeyText`, so a blank or oversized key is a
refused parameter, never a storage failure. :data:`LOG_FIELDS` says which fields may be logged in clear.
"""

from __future__ import annotations

import re
import unicodedata
from datetime import datetime
from typing import Annotated, Final, Literal, Self

from pydantic import AfterValidator, Field, ValidationError, model_validator
from pydantic_core import InitErrorDetails, PydanticCustomError

from ..privacy import LogSpec, Shape
from .common import InboundModel, Int64, OutboundModel, PositiveInt64

__all__ = [
    "LOG_FIELDS",
    "MAX_KEY_CHARS",
    "MAX_USERS",
    "METHOD",
    "AddressInfo",
    "Credentials",
    "DistrictInfo",
    "FulfillmentCreateRequest",
    "FulfillmentCreateResponse",
    "FulfillmentInfo",
    "ItemInfo",
    "KeyText",
    "ShopInfo",
    "TimeOption",
    "TradeInfo",
    "UserInfo",
]

METHOD: Final = "qimen.taobao.life.fulfillment.create"
MAX_USERS: Final = 999
"""最大列表长度 of ``user_info``."""
MAX_KEY_CHARS: Final = 128
"""Longest key text: 128 characters are at most 512 bytes of UTF-8, well inside DynamoDB's 1024-byte range key and
2048-byte hash key, and four times the longest id the seed suggests (32 characters, ``shop_id``)."""


def _key_text(value: str) -> str:
    # A blank key cannot be stored (DynamoDB refuses empty key values); padding or invisible characters would make
    # a second, untracked inventory record for the same store or item, bypassing its capacity.
    if len(value) > MAX_KEY_CHARS:
        raise PydanticCustomError(
            "key_too_long",
            "must be at most {limit} characters, got {length}",
            {"limit": MAX_KEY_CHARS, "length": len(value)},
        )
    if not value.strip():
        raise PydanticCustomError("key_blank", "must not be empty or blank")
    if value != value.strip():
        raise PydanticCustomError("key_padded", "must not start or end with whitespace")
    if any(unicodedata.category(ch) in ("Cc", "Cf", "Cs") for ch in value):
        raise PydanticCustomError("key_control", "must not contain control or format characters")
    return value


KeyText = Annotated[str, AfterValidator(_key_text)]
"""Text that becomes a DynamoDB key: not blank, no surrounding whitespace, no control characters, at most
:data:`MAX_KEY_CHARS` characters."""


class TradeInfo(InboundModel):
    """交易数据: order numbers, amounts in fen (分), number of copies bought."""

    quantity: Int64
    real_amount: Int64
    """商户实收金额 (what the merchant receives), fen."""
    total_amount: Int64
    """订单原始金额 (original amount of the order, or of the sub-order), fen."""
    tp_sub_order_no: str
    tp_order_no: str


class ItemInfo(InboundModel):
    """商品数据."""

    service_mode: Literal["TO_SHOP", "TO_HOME"]
    """TO_SHOP: 到店 (at the store); TO_HOME: 上门 (at the customer's home)."""
    item_name: str
    category_name: str
    partner_item_id: str | None = None
    item_id: KeyText


class ShopInfo(InboundModel):
    """门店信息: ``store_id`` is the Taobao store id; ``shop_id`` (口碑 shopId) only in some scenarios."""

    shop_id: str | None = None
    store_id: KeyText


class Credentials(InboundModel):
    """身份证件: an identity document (``credential_type`` ``idCard`` = 身份证)."""

    credential_no: str | None = None
    credential_type: str | None = None


class UserInfo(InboundModel):
    """预约人信息: one person the booking is for."""

    ext_info: str | None = None
    """用户扩展信息: JSON text, content per business scenario."""
    credentials: Credentials | None = None
    mobile: str
    name: str


class DistrictInfo(InboundModel):
    """One region (区域), ids from the Cainiao address library."""

    district_name: str | None = None
    district_id: str | None = None


class AddressInfo(InboundModel):
    """地址信息 for home services."""

    address_detail: str | None = None
    district_list: list[DistrictInfo] | None = None
    """Province, city, district (sometimes street), in that order."""
    contact_phone: str | None = None
    contact_name: str | None = None
    type: Literal["DEFAULT", "OBTAIN", "GIVE_BACK"] | None = None
    """DEFAULT: 默认; OBTAIN: 取件地址 (pick-up); GIVE_BACK: 送件地址 (return)."""


# type -> (format as the seed writes it, pattern, strptime format to refuse impossible dates)
_TIME_FORMATS: Final = {
    "DAY": ("yyyy-MM-dd", re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}"), "%Y-%m-%d"),
    "DAY_TIME": ("yyyy-MM-dd HH:mm", re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2} [0-9]{2}:[0-9]{2}"), "%Y-%m-%d %H:%M"),
}


def _matches(text: str, pattern: re.Pattern[str], strptime_format: str) -> bool:
    if pattern.fullmatch(text) is None:
        return False
    try:
        datetime.strptime(text, strptime_format)
    except ValueError:
        return False
    return True


class TimeOption(InboundModel):
    """时间信息: the booked day (``DAY``: ``yyyy-MM-dd``) or slot (``DAY_TIME``: ``yyyy-MM-dd HH:mm``)."""

    end: str | None = None
    start: str
    type: Literal["DAY", "DAY_TIME"]

    @model_validator(mode="after")
    def _times_match_type(self) -> Self:
        # ``type`` comes after ``start``/``end`` in the seed's order, so this check runs on the whole object; it
        # raises a ValidationError of its own so that the error's loc still names ``start`` or ``end``.
        expected, pattern, strptime_format = _TIME_FORMATS[self.type]
        errors: list[InitErrorDetails] = []
        for name, value in (("end", self.end), ("start", self.start)):
            if value is not None and not _matches(value, pattern, strptime_format):
                message = "{field} must be {expected} for type {kind}, got '{value}'"
                context = {"field": name, "expected": expected, "kind": self.type, "value": value}
                errors.append(
                    {"type": PydanticCustomError("time_format", message, context), "loc": (name,), "input": value}
                )
        if errors:
            raise ValidationError.from_exception_data(type(self).__name__, errors)
        return self


class FulfillmentInfo(InboundModel):
    """履约信息: where and when, and the fulfillment order number we must store."""

    address_info: list[AddressInfo] | None = None
    time_option: TimeOption
    memo: str | None = None
    """用户填写的备注 (the user's note)."""
    quantity: PositiveInt64 = 1
    """预约份数 (copies booked), default 1."""
    fulfillment_order_no: KeyText
    """履约单号: the platform's key for every later call about this fulfillment; our idempotency key."""


class FulfillmentCreateRequest(InboundModel):
    """The business payload the platform posts (the JSON body Qimen signs)."""

    trade_info: TradeInfo
    item_info: ItemInfo
    shop_info: ShopInfo
    user_info: list[UserInfo] = Field(min_length=1, max_length=MAX_USERS)
    fulfillment_info: FulfillmentInfo


# What may be logged in clear, and why (privacy.py: everything else is masked, unknown fields included):
# - amounts, counts and the platform's order, item and store numbers identify a trade, not a person, and support
#   needs them (the fulfillment order number is already the logs' correlation id);
# - item and category names are the merchant's catalogue; service mode, address type, time type and credential
#   type are enumerations;
# - the booked day or slot (time_option) says when, not who.
# Masked: everything in user_info but the credential type (names, mobiles, ID numbers, ext_info), the address
# (detail, contact name and phone, and district_list: the customer's city and district), and memo, which the
# user writes freely.
LOG_FIELDS: Final[LogSpec] = {
    "trade_info": {
        "quantity": Shape.NUMBER,
        "real_amount": Shape.NUMBER,
        "total_amount": Shape.NUMBER,
        "tp_sub_order_no": Shape.ID,
        "tp_order_no": Shape.ID,
    },
    "item_info": {
        "service_mode": Shape.CODE,
        "item_name": Shape.TEXT,
        "category_name": Shape.TEXT,
        "partner_item_id": Shape.ID,
        "item_id": Shape.ID,
    },
    "shop_info": {"shop_id": Shape.ID, "store_id": Shape.ID},
    "user_info": {"credentials": {"credential_type": Shape.CODE}},
    "fulfillment_info": {
        "address_info": {"type": Shape.CODE},
        "time_option": {"start": Shape.TIME, "end": Shape.TIME, "type": Shape.CODE},
        "quantity": Shape.NUMBER,
        "fulfillment_order_no": Shape.ID,
    },
}


class FulfillmentCreateResponse(OutboundModel):
    """Our answer. ``success`` says we received the call; ``biz_result`` says whether we created the order.

    This is what we send, so it refuses unknown fields like every outbound model. The answer to a bad signature
    has another shape (``success`` as the text ``"false"``) and is not built from this model.
    """

    success: bool
    biz_result: Literal["success", "fail"]
    biz_error_code: str | None = None
    """业务错误码, e.g. ``NO_INVENTORY``."""
    biz_error_msg: str | None = None
    partner_order_id: str | None = None
    """外部履约单号: our fulfillment order id."""
