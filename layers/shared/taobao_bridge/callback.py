"""Assembly of the Qimen callback: the dispatcher with every Qimen method we serve (each with its request model),
from settings."""

from __future__ import annotations

from .apigw import raw_body
from .clock import Clock, system_clock
from .fulfillment_service import FulfillmentCreate
from .fulfillment_store import FulfillmentStore
from .models.fulfillment import METHOD as FULFILLMENT_CREATE
from .models.fulfillment import FulfillmentCreateRequest
from .qimen import QimenDispatcher
from .settings import Settings, load_settings

__all__ = ["build_qimen_dispatcher", "raw_body"]


def build_qimen_dispatcher(settings: Settings | None = None, clock: Clock = system_clock) -> QimenDispatcher:
    """A dispatcher for every Qimen method this deployment serves. Cheap: build one per invocation so a
    rotated secret (cached by Powertools parameters for its max age) is picked up without a cold start."""
    settings = settings or load_settings()
    dispatcher = QimenDispatcher(
        settings.require("qimen_app_secret"),
        timestamp_window_s=settings.qimen_timestamp_window_s,
        max_body_bytes=settings.qimen_max_body_bytes,
        clock=clock,
    )
    store = FulfillmentStore(
        settings.require("fulfillment_table"),
        settings.require("inventory_table"),
        retention_days=settings.order_retention_days,
    )
    dispatcher.register(FULFILLMENT_CREATE, FulfillmentCreateRequest, FulfillmentCreate(store, clock))
    return dispatcher
