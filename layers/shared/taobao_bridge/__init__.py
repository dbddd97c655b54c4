"""taobao_bridge: the shared package of the taobao-bridge functions (signing, models, TOP client, stores)."""

from __future__ import annotations

__all__: list[str] = []
