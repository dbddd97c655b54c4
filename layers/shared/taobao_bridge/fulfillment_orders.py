"""Fulfillment orders for merchant systems: one order by number, and every order in the order received, with a
cursor (``GET /v1/fulfillment-orders[/{fulfillment_order_no}]``, docs in README.md, "Fulfillment orders").

**Personal data.** An order's stored request holds the customer's name, mobile and ID number (``user_info``), the
service address with its contact name, phone and district (``fulfillment_info.address_info``) and the note the
customer wrote (``fulfillment_info.memo``). The view's ``order`` holds only the fields of
:data:`NON_PERSONAL_FIELDS` unless the caller asks for ``include=personal``; then it is the stored request as
received. The allow-list is the one that decides what may be logged in clear (``models.fulfillment.LOG_FIELDS``:
trade amounts and numbers, item, store, booked time, enumerations), so a field the platform adds tomorrow is left
out until someone decides it is not personal.

**Listing.** Orders are read from the ``received-index`` (``fulfillment_store``), one UTC day per partition, walked
forward from the cursor's day. An order's receipt time is stamped before its write, which may take up to
``fulfillment_store.CREATE_BUDGET_S`` (3 s), and an index is updated a moment after its table: an order received
at 12:00:00.000 may become visible at 12:00:03.5. Reading up to "now" would let a poller's cursor pass such an
order before it appears, and the poller would never see it. So a page only holds orders received more than
``settle_lag_s`` (:data:`SETTLE_LAG_S`, 10 s) before the request: by then every order received earlier is
stored and indexed, and the cursor (the last returned position) never passes one still on its way. The price: a
poller sees an order 10 s after it arrived (the ``FulfillmentOrderReceived`` event comes at once).
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any, Final, Protocol

from .clock import Clock, system_clock
from .errors import BridgeError, ConfigurationError
from .fulfillment_store import day_after, received_day, time_key
from .jsonutil import dumps
from .models.fulfillment import LOG_FIELDS, MAX_KEY_CHARS
from .privacy import LogSpec, Shape

__all__ = [
    "DEFAULT_LIMIT",
    "MAX_DAYS_PER_PAGE",
    "MAX_LIMIT",
    "MAX_PAGE_BYTES",
    "NON_PERSONAL_FIELDS",
    "SETTLE_LAG_ENV",
    "SETTLE_LAG_S",
    "Cursor",
    "FulfillmentOrders",
    "InvalidParameter",
    "OrderNotFound",
    "OrderReader",
    "Page",
    "order_view",
    "parse_include",
    "parse_limit",
    "settle_lag_from_env",
]

SETTLE_LAG_S: Final = 10.0
"""Orders received less than this many seconds ago are not listed yet (module docstring): the store's 3 s budget
plus the index's lag, with room to spare."""
SETTLE_LAG_ENV: Final = "FULFILLMENT_SETTLE_LAG_S"
"""Environment variable that overrides :data:`SETTLE_LAG_S` (tests set 0; never lower it in AWS)."""
DEFAULT_LIMIT: Final = 100
MAX_LIMIT: Final = 1000
MAX_DAYS_PER_PAGE: Final = 31
"""Days (index partitions) one page walks at most, so a request over a long empty stretch stays short; the cursor
then points past the empty days and ``has_more`` is true."""
MAX_PAGE_BYTES: Final = 4_000_000
"""A page stops growing past this much JSON (Lambda answers at most 6 MB, the body escaped inside its JSON)."""
_MAX_CURSOR_CHARS: Final = 2048
_KEY = re.compile(r"(\d{4}-\d{2}-\d{2})T\d{2}:\d{2}:\d{2}\.\d{3}Z#.+", re.DOTALL)


def _allowed(spec: LogSpec) -> dict[str, Any]:
    # The log allow-list without its shapes: its leaves name fields that are not personal.
    return {name: True if isinstance(rule, Shape) else _allowed(rule) for name, rule in spec.items()}


NON_PERSONAL_FIELDS: Final[Mapping[str, Any]] = _allowed(LOG_FIELDS)
"""The stored request's fields returned without ``include=personal``: field -> True, or the allowed fields of the
object (or of each object of the list) it holds."""


class InvalidParameter(BridgeError):
    """Raised when a query parameter is malformed; ``field`` names it, the message says the rule."""

    def __init__(self, field: str, message: str) -> None:
        self.field = field
        super().__init__(f"{field}: {message}")


class OrderNotFound(BridgeError):
    """Raised when no fulfillment order with the asked number is stored."""


@dataclass(frozen=True)
class Cursor:
    """A position in received order: after the order whose index key is ``key`` on ``day`` (``key`` empty:
    before the first order of ``day``)."""

    day: str
    key: str = ""

    def encode(self) -> str:
        """Opaque to callers: URL-safe base64 of a small JSON object, without padding."""
        text = json.dumps({"d": self.day, "k": self.key}, separators=(",", ":"), ensure_ascii=False)
        return base64.urlsafe_b64encode(text.encode("utf-8")).decode("ascii").rstrip("=")

    @classmethod
    def decode(cls, text: str) -> Cursor:
        """The cursor a previous page returned as ``next``; ``InvalidParameter`` (``after``) for anything else."""
        if not text or len(text) > _MAX_CURSOR_CHARS:
            raise InvalidParameter("after", "must be the 'next' value of a previous page")
        try:
            raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
            data = json.loads(raw.decode("utf-8"))
        except (binascii.Error, ValueError, UnicodeDecodeError):
            raise InvalidParameter("after", "is not a cursor this API returned (not base64url JSON)") from None
        if not isinstance(data, dict) or set(data) != {"d", "k"}:
            raise InvalidParameter("after", "is not a cursor this API returned (unexpected content)")
        day, key = data["d"], data["k"]
        if not isinstance(day, str) or not isinstance(key, str):
            raise InvalidParameter("after", "is not a cursor this API returned (unexpected content)")
        try:
            date.fromisoformat(day)
        except ValueError:
            raise InvalidParameter("after", "is not a cursor this API returned (bad day)") from None
        if len(day) != 10 or (key and not ((match := _KEY.fullmatch(key)) and match.group(1) == day)):
            raise InvalidParameter("after", "is not a cursor this API returned (bad position)")
        return cls(day, key)


@dataclass(frozen=True)
class Page:
    orders: list[dict[str, Any]]
    next: Cursor
    has_more: bool

    def to_dict(self) -> dict[str, Any]:
        return {"orders": self.orders, "next": self.next.encode(), "has_more": self.has_more}


class OrderReader(Protocol):
    """What the views need of :class:`~taobao_bridge.fulfillment_store.FulfillmentStore`."""

    def get(self, fulfillment_order_no: str) -> dict[str, Any] | None: ...

    def received_on(
        self, day: str, *, after_key: str, before_key: str, limit: int, start: dict[str, Any] | None = None
    ) -> tuple[list[dict[str, Any]], dict[str, Any] | None]: ...


def parse_limit(text: str | None) -> int:
    if text is None or text == "":
        return DEFAULT_LIMIT
    if not text.isascii() or not text.isdigit() or not 1 <= int(text) <= MAX_LIMIT:
        raise InvalidParameter("limit", f"must be a whole number from 1 to {MAX_LIMIT}, got {text[:20]!r}")
    return int(text)


def parse_include(text: str | None) -> bool:
    """Whether personal fields were asked for (``include=personal``)."""
    if text is None or text == "":
        return False
    if text != "personal":
        raise InvalidParameter("include", f"the only value is 'personal', got {text[:40]!r}")
    return True


def settle_lag_from_env(environ: Mapping[str, str]) -> float:
    raw = environ.get(SETTLE_LAG_ENV, "").strip()
    if not raw:
        return SETTLE_LAG_S
    try:
        value = float(raw)
    except ValueError:
        raise ConfigurationError(f"{SETTLE_LAG_ENV} must be a number of seconds, got {raw!r}") from None
    if not 0 <= value <= 3600:
        raise ConfigurationError(f"{SETTLE_LAG_ENV} must be from 0 to 3600, got {value}")
    return value


def _project(data: Any, allowed: Mapping[str, Any]) -> Any:
    if isinstance(data, list):
        return [_project(item, allowed) for item in data]
    if not isinstance(data, Mapping):
        return None
    out = {}
    for name, value in data.items():
        rule = allowed.get(name)
        if rule is True:
            out[name] = value
        elif isinstance(rule, Mapping) and isinstance(value, Mapping | list):
            out[name] = _project(value, rule)
    return out


def _received_at(stored: Any) -> str:
    try:
        return time_key(datetime.fromisoformat(str(stored)))
    except (TypeError, ValueError):
        return str(stored)  # written by hand or by an older version: shown as stored rather than refused


def order_view(item: Mapping[str, Any], *, include_personal: bool) -> dict[str, Any]:
    """The public view of one stored order (contract: docs in README.md)."""
    try:
        request = json.loads(str(item.get("payload") or "{}"))
    except ValueError:
        request = {}
    return {
        "fulfillment_order_no": item["fulfillment_order_no"],
        "partner_order_id": item.get("partner_order_id"),
        "state": item.get("status"),
        "received_at": _received_at(item.get("received_at")),
        "store_id": item.get("store_id"),
        "item_id": item.get("item_id"),
        "quantity": item.get("quantity"),
        "order": request if include_personal else (_project(request, NON_PERSONAL_FIELDS) or {}),
    }


class FulfillmentOrders:
    """The two reads, over a store, a clock and the settle lag."""

    def __init__(
        self,
        store: OrderReader,
        *,
        clock: Clock = system_clock,
        settle_lag_s: float = SETTLE_LAG_S,
        retention_days: int = 180,
        max_days: int = MAX_DAYS_PER_PAGE,
        max_page_bytes: int = MAX_PAGE_BYTES,
    ) -> None:
        self.store = store
        self.clock = clock
        self.settle_lag_s = settle_lag_s
        self.retention_days = retention_days
        self.max_days = max_days
        self.max_page_bytes = max_page_bytes

    def get(self, fulfillment_order_no: str, *, include_personal: bool = False) -> dict[str, Any]:
        # No stored order has a longer or empty number (the model refuses them); DynamoDB would refuse the key.
        valid = 0 < len(fulfillment_order_no) <= MAX_KEY_CHARS
        item = self.store.get(fulfillment_order_no) if valid else None
        if item is None:
            raise OrderNotFound(f"fulfillment_order_no: no order {fulfillment_order_no[:140]!r} is stored")
        return order_view(item, include_personal=include_personal)

    def first_cursor(self, now: datetime) -> Cursor:
        """Where a poller without a cursor starts: the oldest day an order may still be stored (retention, plus
        the two days DynamoDB may take to delete an expired item)."""
        return Cursor((now.astimezone(UTC).date() - timedelta(days=self.retention_days + 2)).isoformat())

    def list(self, after: Cursor | None, *, limit: int = DEFAULT_LIMIT, include_personal: bool = False) -> Page:
        """Up to ``limit`` settled orders after ``after``, in received order; see the module docstring."""
        cutoff = self.clock() - timedelta(seconds=self.settle_lag_s)
        last_day, settled_below = received_day(cutoff), time_key(cutoff)
        position = after or self.first_cursor(cutoff)
        orders: list[dict[str, Any]] = []
        size = 0
        day, key = position.day, position.key
        for _ in range(self.max_days):
            if day > last_day:
                return Page(orders, Cursor(day, key), has_more=False)
            # On a past day every order is settled: its keys all sort below the next day's first instant.
            high = settled_below if day == last_day else f"{day_after(day)}T"
            start: dict[str, Any] | None = None
            while key < high:
                items, start = self.store.received_on(
                    day, after_key=key, before_key=high, limit=limit - len(orders), start=start
                )
                for item in items:
                    view = order_view(item, include_personal=include_personal)
                    size += len(dumps(view).encode("utf-8"))
                    if orders and size > self.max_page_bytes:
                        return Page(orders, Cursor(day, key), has_more=True)
                    orders.append(view)
                    key = str(item["received_key"])
                if len(orders) >= limit:
                    more = start is not None or day < last_day
                    return Page(orders, Cursor(day, key), has_more=more)
                if start is None:
                    break
            if day == last_day:
                return Page(orders, Cursor(day, key), has_more=False)
            day, key = day_after(day), ""
        return Page(orders, Cursor(day, key), has_more=True)
