"""``orders get``, ``orders list`` and ``events tail``: what merchant systems read about fulfillment orders."""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Iterator, Mapping
from typing import Any

from .api import OpsApi
from .errors import UsageError
from .output import Column, emit, emit_json, key_values, progress, respond, table

__all__ = ["event_line", "events_tail", "get", "list_orders", "order_line", "render_orders"]

ORDER_COLUMNS: list[Column] = [
    ("received_at", lambda o: o.get("received_at")),
    ("fulfillment_order_no", lambda o: o.get("fulfillment_order_no")),
    ("partner_order_id", lambda o: o.get("partner_order_id")),
    ("state", lambda o: o.get("state")),
    ("store_id", lambda o: o.get("store_id")),
    ("item_id", lambda o: o.get("item_id")),
    ("quantity", lambda o: o.get("quantity")),
]


def get(args: argparse.Namespace, api: OpsApi) -> int:
    order = api.order(args.order_no, include_personal=args.include_personal)
    if args.json:
        emit_json(order)
        return 0
    emit(key_values((key, value) for key, value in order.items() if key != "order"))
    if isinstance(order.get("order"), Mapping):
        emit("order:")
        emit("\n".join(f"  {line}" for line in key_values(order["order"].items()).splitlines()))
    return 0


def list_orders(args: argparse.Namespace, api: OpsApi) -> int:
    if args.follow:
        return _follow_orders(args, api)
    if not args.all:
        # One page with orders: a page over days without any is empty but has_more, and says nothing to a reader.
        page = api.orders(after=args.after, limit=args.limit)
        while not page.get("orders") and page.get("has_more") and page.get("next"):
            page = api.orders(after=page["next"], limit=args.limit)
        respond(args.json, page, lambda: render_orders(page.get("orders") or [], page))
        return 0
    orders: list[dict[str, Any]] = []
    page = {"next": args.after}
    with progress(None, "orders", enabled=not args.json, unit="order") as bar:
        for page in _pages(api, args.after, args.limit):
            orders += page.get("orders") or []
            bar.update(len(page.get("orders") or []))
    whole = {"orders": orders, "next": page.get("next"), "has_more": False}
    respond(args.json, whole, lambda: render_orders(orders, whole))
    return 0


def render_orders(orders: list[dict[str, Any]], page: Mapping[str, Any]) -> str:
    """The orders as a table, then the cursor to poll from next."""
    lines = [table(orders, ORDER_COLUMNS, empty="(no orders)"), f"next: {page.get('next')}"]
    if page.get("has_more"):
        lines.append(f"more: yes (orders list --after {page.get('next')}, or --all)")
    return "\n".join(lines)


def order_line(order: Mapping[str, Any]) -> str:
    """One order as one line (``--follow``)."""
    return "  ".join(str(read(order)) for _, read in ORDER_COLUMNS)


def _pages(api: OpsApi, after: str | None, limit: int | None) -> Iterator[dict[str, Any]]:
    cursor = after
    while True:
        page = api.orders(after=cursor, limit=limit)
        yield page
        cursor = page.get("next") or cursor
        if not page.get("has_more"):
            return


def _follow_orders(args: argparse.Namespace, api: OpsApi) -> int:
    # A poller as the contract describes it: pass `next` back, never miss or repeat an order.
    cursor = args.after
    try:
        while True:
            page = api.orders(after=cursor, limit=args.limit)
            orders = page.get("orders") or []
            cursor = page.get("next") or cursor
            if orders:
                if args.json:
                    emit_json(page, lines=True)
                else:
                    for order in orders:
                        emit(order_line(order))
            if not page.get("has_more"):
                time.sleep(args.interval)
    except KeyboardInterrupt:
        if not args.json:
            emit(f"next: {cursor}")
        return 0


# ----------------------------------------------------------------------------------------------------- events
def events_tail(args: argparse.Namespace, api: OpsApi) -> int:
    target = api.target
    if target.stack is not None:
        from .events_aws import CloudWatchEvents

        source: Any = CloudWatchEvents(target.stack, since_s=args.since)
    elif target.local:
        from .events_local import LocalEvents

        source = LocalEvents(args.endpoint)
    else:
        raise UsageError("events tail reads the local stack's event log or a stack's log group: use --stack")
    seen = 0
    for event in source.latest(args.limit):
        _print_event(args, event)
        seen += 1
    if not args.follow:
        if seen == 0 and not args.json:
            emit("(no events)")
        return 0
    try:
        while True:
            time.sleep(args.interval)
            for event in source.newer():
                _print_event(args, event)
    except KeyboardInterrupt:
        return 0


def _print_event(args: argparse.Namespace, event: Mapping[str, Any]) -> None:
    respond(args.json, event, lambda: event_line(event), lines=True)


def event_line(event: Mapping[str, Any]) -> str:
    """``time  detail-type  key=value …`` of one EventBridge event."""
    detail = event.get("detail")
    if isinstance(detail, str):
        try:
            detail = json.loads(detail)
        except ValueError:
            pass
    if isinstance(detail, Mapping):
        fields = " ".join(f"{key}={value}" for key, value in detail.items())
    else:
        fields = str(detail)
    return f"{event.get('time', '-')}  {event.get('detail-type', event.get('detail_type', '-'))}  {fields}"
