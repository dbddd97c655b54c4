"""Pydantic models of the four platform APIs, one module per API, each with its ``METHOD`` constant.

Outbound TOP calls: ``writeoff``, ``risk``, ``external_order``, each declaring its ``API`` (``api.OutboundApi``).
Inbound Qimen call: ``fulfillment``. Several
modules define a class of the same name (``UserInfo``, ``ItemInfo``), so import them through their module.
"""

from __future__ import annotations

from . import api, common, external_order, fulfillment, risk, writeoff
from .common import InboundModel, Int64, OutboundModel, PlatformDateTime

__all__ = [
    "InboundModel",
    "Int64",
    "OutboundModel",
    "PlatformDateTime",
    "api",
    "common",
    "external_order",
    "fulfillment",
    "risk",
    "writeoff",
]
