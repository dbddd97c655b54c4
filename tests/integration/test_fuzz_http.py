"""Generated bad input against every route of the HTTP API, through the local stack's API Gateway + Lambda
path (``stack.invoke_http``: the real handlers, moto behind them): never a 5xx, never SYSTEM_ERROR while storage
is healthy, and every refusal one the OpenAPI description (bridge_local/openapi.py) documents.

``FUZZ_EXAMPLES`` sets the cases per route (default 100 in ``make test``; ``make fuzz`` runs 1,000).
"""

from __future__ import annotations

import json
import os
import random
from typing import Any
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bridge_local.openapi import INTAKE_ERRORS, QIMEN_CODES, build
from bridge_local.qimen_client import signed_query
from taobao_bridge.kinds import KINDS
from taobao_bridge.outbox import AcceptStatus
from taobao_bridge.settings import ENV, LOCAL_DEFAULTS

pytestmark = pytest.mark.integration

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "100"))
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=os.environ.get("FUZZ_RANDOM") is None,  # CI runs the same cases every time
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large],
)
JSON_HEADERS = [("content-type", "application/json;charset=utf-8")]

scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=30)
    | st.sampled_from(["", " ", "2026-11-23 10:00:00", "0001-01-01 00:00:00", "9" * 25, "\u0000", "洗车"])
)
json_values = st.recursive(
    scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4)
)

VALID: dict[str, dict[str, Any]] = {
    "writeoffs": {
        "biz_type": 2,
        "verify_time": "2026-11-23 10:00:00",
        "tb_store_id": 2343432,
        "service_status": 3,
        "service_id": 1111,
        "service_detail_id": 111223,
        "tb_biz_order_id": 4000000000000000001,
        "verify_batch_no": "B1",
    },
    "risk-records": {
        "install_type": 1,
        "buyer_phone": "13012345678",
        "tc_order_id": 3882527336184474047,
        "tc_sub_order_id": 3882527336184474048,
        "buyer_name": "王五",
    },
    "external-orders": {"idempotent_id": "FUZZ-1", "order_info": {"total_fee": 100}},
}


@st.composite
def mutated(draw: st.DrawFn, valid: dict[str, Any]) -> dict[str, Any]:
    """A valid record with some fields replaced by anything, some dropped, some unknown ones added."""
    record = dict(valid)
    for name in draw(st.lists(st.sampled_from(sorted(valid)), max_size=3, unique=True)):
        if draw(st.booleans()):
            record[name] = draw(json_values)
        else:
            del record[name]
    record.update(draw(st.dictionaries(st.text(max_size=12), json_values, max_size=2)))
    return record


def bodies(valid: dict[str, Any]) -> st.SearchStrategy[bytes]:
    as_json = st.one_of(
        mutated(valid),
        st.lists(mutated(valid), min_size=0, max_size=3),
        json_values,
    ).map(lambda value: json.dumps(value, ensure_ascii=False).encode("utf-8", errors="surrogatepass"))
    odd = st.sampled_from(
        [
            b"[" * 5000 + b"]" * 5000,
            b'{"a":"\\ud800"}',
            '{"a": 1}'.encode("utf-16"),
            b"\xef\xbb\xbf{}",
            b'{"a":1,"a":2}',
            b"",
            b"null",
            b"NaN",
        ]
    )
    return st.one_of(as_json, st.binary(max_size=300), odd)


def answer(stack: Any, method: str, target: str, body: bytes, headers: list[tuple[str, str]]) -> tuple[int, Any]:
    status, _, out = stack.invoke_http(method, target, headers, body)
    assert status < 500, (status, target, body[:200], out[:300])
    try:
        return status, json.loads(out)
    except ValueError:
        raise AssertionError(f"not JSON: {status} {out[:200]!r} for {body[:200]!r}") from None


def test_the_openapi_document_lists_every_route_and_the_stack_serves_it(stack: Any) -> None:
    status, served = answer(stack, "GET", "/openapi.json", b"", [])
    assert status == 200 and served == json.loads(json.dumps(build()))
    # Every route of template.yaml, "/v1/{kind}…" once per kind's path, and nothing else.
    documented = {(method.upper(), path) for path, item in served["paths"].items() for method in item}
    routed = set()
    for route in stack.routes:
        if route.path.startswith("/v1/{kind}"):
            routed |= {(route.method, route.path.replace("{kind}", s.path, 1)) for s in KINDS.values()}
        else:
            routed.add((route.method, route.path))
    assert documented == routed


@pytest.mark.parametrize("path", sorted(VALID))
def test_intake_answers_anything_with_a_documented_answer(stack: Any, path: str) -> None:
    @FUZZ
    @given(body=bodies(VALID[path]))
    def check(body: bytes) -> None:
        status, payload = answer(stack, "POST", f"/v1/{path}", body, JSON_HEADERS)
        assert status in (202, *INTAKE_ERRORS), status
        if status == 503:
            raise AssertionError(f"storage is healthy, yet 503: {payload}")
        if status != 202:
            assert payload["error"] in INTAKE_ERRORS[status], payload
        if status in (202, 409):
            assert {r["status"] for r in payload["records"]} <= {s.value for s in AcceptStatus}

    check()


@pytest.mark.parametrize("path", sorted(VALID))
def test_record_lookups_answer_any_id_with_a_record_or_not_found(stack: Any, path: str) -> None:
    @FUZZ
    @given(record_id=st.text(min_size=1, max_size=300))
    def check(record_id: str) -> None:
        target = f"/v1/{path}/{quote(record_id.encode('utf-8', errors='surrogatepass'), safe='')}"
        status, payload = answer(stack, "GET", target, b"", [])
        assert status in (200, 404), (status, payload)
        if status == 404:
            assert payload["error"] == "not_found"

    check()


SEED_ORDER: dict[str, Any] = {
    "trade_info": {
        "quantity": 1,
        "real_amount": 100,
        "total_amount": 100,
        "tp_sub_order_no": "S1",
        "tp_order_no": "T1",
    },
    "item_info": {"service_mode": "TO_SHOP", "item_name": "洗车", "category_name": "洗车", "item_id": "I1"},
    "shop_info": {"store_id": "ST1"},
    "user_info": [{"mobile": "13012345678", "name": "王五"}],
    "fulfillment_info": {"time_option": {"start": "2026-11-23", "type": "DAY"}, "fulfillment_order_no": "F1"},
}


def test_qimen_answers_anything_in_the_documented_shape_and_never_system_error(stack: Any) -> None:
    secret = LOCAL_DEFAULTS[ENV.QIMEN_APP_SECRET]
    rng = random.Random(7)

    @FUZZ
    @given(body=bodies(SEED_ORDER), signed=st.booleans())
    def check(body: bytes, signed: bool) -> None:
        if signed:
            body = body.replace(b'"F1"', f'"FZ{rng.randrange(10**12)}"'.encode())  # mostly new orders
        query = signed_query(body, secret) if signed else "method=qimen.taobao.life.fulfillment.create"
        status, payload = answer(stack, "POST", f"/qimen?{query}", body, JSON_HEADERS)
        assert status == 200
        code = payload.get("biz_error_code")
        assert payload.get("biz_result") == "success" or code in QIMEN_CODES, payload
        assert code != "SYSTEM_ERROR", payload

    check()
