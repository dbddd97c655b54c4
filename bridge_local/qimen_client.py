"""Send a Qimen call as the platform would: system parameters in the query, JSON body, MD5 sign over both."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import httpx

from taobao_bridge.clock import Clock, format_platform_time, system_clock
from taobao_bridge.jsonutil import dumps
from taobao_bridge.signing import qimen_sign

__all__ = ["QimenCaller", "new_order_no", "signed_query"]

FULFILLMENT_CREATE = "qimen.taobao.life.fulfillment.create"


def new_order_no() -> str:
    """A fresh 19-digit fulfillment order number, like the platform's."""
    return str(10**18 + secrets.randbelow(9 * 10**18))


def signed_query(
    body: bytes,
    secret: str,
    *,
    method: str = FULFILLMENT_CREATE,
    app_key: str = "23456789",
    sign_method: str = "md5",
    clock: Clock = system_clock,
    extra: dict[str, str] | None = None,
) -> str:
    """The raw query string of a signed Qimen call for ``body``."""
    params = {
        "method": method,
        "app_key": app_key,
        "target_app_key": "34567890",
        "sign_method": sign_method,
        "timestamp": format_platform_time(clock()),
        "format": "json",
        "v": "2.0",
        "customerId": "c1716172200000",
        **(extra or {}),
    }
    query = urlencode(params)
    return f"{query}&sign={qimen_sign(query, body, secret)}"


@dataclass
class QimenCaller:
    """Signs and posts Qimen calls to a callback URL (the local stack's ``/qimen`` or a deployed stage)."""

    url: str
    secret: str
    client: httpx.Client | None = None

    def send(self, payload: dict[str, Any] | bytes, *, method: str = FULFILLMENT_CREATE) -> httpx.Response:
        body = payload if isinstance(payload, bytes) else dumps(payload).encode("utf-8")
        query = signed_query(body, self.secret, method=method)
        client = self.client or httpx.Client(timeout=10)
        try:
            return client.post(
                f"{self.url}?{query}", content=body, headers={"content-type": "application/json;charset=utf-8"}
            )
        finally:
            if self.client is None:
                client.close()
