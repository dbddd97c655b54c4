"""Pydantic models of the four platform APIs, one module per API, each with its ``METHOD`` constant.

Outbound TOP calls: ``writeoff``, ``risk``, ``external_order``, each declaring its ``API`` (``api.OutboundApi``).
Inbound Qimen call: ``fulfillment``. Several modules define a class of the same name (``UserInfo``,
``ItemInfo``), so import them through their module.

The API modules are imported on first use, not here: the Qimen callback needs one of the four, and each costs
milliseconds of every cold start.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from .common import InboundModel, Int64, OutboundModel, PlatformDateTime

_MODULES = frozenset({"api", "common", "external_order", "fulfillment", "risk", "writeoff"})


def __getattr__(name: str) -> ModuleType:
    if name in _MODULES:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


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
