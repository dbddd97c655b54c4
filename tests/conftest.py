"""Shared fixtures. The local stack (moto over HTTP, TOP sandbox, HTTP API) starts once per test process."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

FIXTURES = Path(__file__).parent / "fixtures"

# As template.yaml sets it. Powertools names the package's child loggers after the service when their module is
# first imported (at collection, here): without it they would be orphans of "service_undefined".
os.environ.setdefault("POWERTOOLS_SERVICE_NAME", "taobao-bridge")


@pytest.fixture(scope="session")
def seed_003_body() -> bytes:
    """Seed 003's request example, byte for byte."""
    return (FIXTURES / "seed_003_request.json").read_bytes().strip()


@pytest.fixture(scope="session")
def stack() -> Iterator[Any]:
    from bridge_local.stack import LocalStack, StackConfig

    config = StackConfig(port=0, dynamodb_port=0, sandbox_port=0, run_schedules=False)
    with LocalStack(config) as running:
        yield running


def with_order_no(body: bytes, order_no: str, **changes: Any) -> bytes:
    """The seed body with another fulfillment_order_no (and optional top-level section changes), compact."""
    from taobao_bridge.jsonutil import dumps

    payload = json.loads(body)
    payload["fulfillment_info"]["fulfillment_order_no"] = order_no
    for section, values in changes.items():
        payload[section].update(values)
    return dumps(payload).encode("utf-8")
